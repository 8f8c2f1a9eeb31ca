"""The paper's central claim on real digits: per-sample projection against its mean-gradient and
no-projection ablations, as the retain set shrinks to 1 %, 5 % and 10 % of the training data.

Class-wise (digit 7) with the shipped recipe; k = min(64, retain size); mean ± std over seeds.
Run: python benchmarks/retain_sweep.py [--seeds 3]
"""

import argparse
import statistics

from orthograd_cli.data.digits import build_digits
from orthograd_cli.jobs.demo import cache_dir, demo_checkpoint
from orthograd_cli.jobs.forget import run_forget
from orthograd_cli.recipe import load_recipe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    checkpoint = demo_checkpoint(build_digits(cache_dir() / "digits"))
    print(f"{'retain':>7} {'k':>4} {'retain_grads':>12} {'forget acc':>15} {'test acc (others)':>18} {'UIS':>15}")
    for share in (0.01, 0.05, 0.10):
        data = build_digits(cache_dir() / f"digits_retain{int(share * 100)}", retain_share=share)
        folder = data / "class7"
        retain_size = len((folder / "retain.csv").read_text().splitlines()) - 1
        k = min(64, retain_size)
        for variant in ("per_sample", "mean", "none"):
            rows = []
            for seed in range(args.seeds):
                recipe, _ = load_recipe("resnet18_digits_class", [
                    f"method.projection.retain_grads={variant}", f"method.retain_batch_size={k}", f"seed={seed}"])
                report = run_forget(str(checkpoint), {"forget": folder / "forget.csv", "retain": folder / "retain.csv",
                                                      "test": folder / "test.csv"}, recipe,
                                    str(cache_dir() / "sweep_run"), overwrite=True).model_dump(mode="json")
                after = report["metrics"]["after"]
                rows.append((after["forget_acc"]["value"], after["test_acc"]["value"], after["uis"]["value"]))
            cells = []
            for column in zip(*rows):
                spread = statistics.pstdev(column) if len(column) > 1 else 0.0
                cells.append(f"{statistics.fmean(column):.4f} ± {spread:.4f}")
            print(f"{share:>6.0%} {k:>4} {variant:>12} {cells[0]:>15} {cells[1]:>18} {cells[2]:>15}", flush=True)


if __name__ == "__main__":
    main()
