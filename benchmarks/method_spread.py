"""How much each method's outcome on the digits varies across seeds and CPU kernel levels.

The test suite's outcome bounds (tests/integration/test_methods.py) are set from these figures. The
fixture model is trained in the test process, so its weights depend on the CPU kernels PyTorch
dispatches to (AVX-512, AVX2 or none): run this once per level, e.g.

    for cap in default avx2 ""; do ATEN_CPU_CAPABILITY=$cap python benchmarks/method_spread.py; done

Each row: a method and mode with the suite's step budget, seeds 0..N-1, min and max of forget,
retain and test accuracy after the run (before: the original model's values).
"""

import argparse
import os
import tempfile
from pathlib import Path

from orthograd_cli.data.digits import build_digits
from orthograd_cli.jobs.demo import demo_checkpoint
from orthograd_cli.jobs.forget import run_forget
from orthograd_cli.methods import METHODS
from orthograd_cli.recipe import load_recipe

SCENARIOS = {"class": ("class7/forget.csv", "class7/retain.csv", "class7/test.csv"),
             "sample": ("sample/forget.csv", "sample/retain.csv", "test.csv")}


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--steps", type=int, default=40, help="max steps (finetune gets --finetune-steps)")
    parser.add_argument("--finetune-steps", type=int, default=150)
    args = parser.parse_args()
    level = os.environ.get("ATEN_CPU_CAPABILITY") or "unset"
    print(f"CPU capability: {torch.backends.cpu.get_cpu_capability()} (ATEN_CPU_CAPABILITY={level})")
    with tempfile.TemporaryDirectory() as tmp:
        data = build_digits(Path(tmp) / "digits")  # a fresh model per level: no cache across levels
        checkpoint = demo_checkpoint(data)
        print(f"{'method':>13} {'mode':>6} {'steps':>9} {'forget acc':>23} {'retain acc':>23} {'test acc':>23}")
        for method in args.methods.split(","):
            for mode, (forget, retain, test) in SCENARIOS.items():
                rows, before = [], None
                steps = args.finetune_steps if method == "finetune" else args.steps
                for seed in range(args.seeds):
                    recipe, _ = load_recipe(None, [f"method.name={method}", f"eval.mode={mode}", f"seed={seed}",
                                                     f"method.max_steps={steps}"])
                    report = run_forget(str(checkpoint), {"forget": data / forget, "retain": data / retain,
                                                          "test": data / test}, recipe, str(Path(tmp) / "run"),
                                        overwrite=True).model_dump(mode="json")
                    before = report["metrics"]["before"]
                    after = report["metrics"]["after"]
                    rows.append((report["steps"], *(after[f"{s}_acc"]["value"] for s in ("forget", "retain", "test"))))

                def span(column: int, name: str) -> str:
                    values = [r[column] for r in rows]
                    return f"{before[f'{name}_acc']['value']:.3f}→{min(values):.3f}..{max(values):.3f}"

                steps_seen = [r[0] for r in rows]
                print(f"{method:>13} {mode:>6} {min(steps_seen):>4}..{max(steps_seen):<4} {span(1, 'forget'):>23} "
                      f"{span(2, 'retain'):>23} {span(3, 'test'):>23}", flush=True)


if __name__ == "__main__":
    main()
