"""What the resumable state costs a run: the digits demo's class-wise forget (resnet18, LoRA, 25 steps) with a state
written after every step, at the default (`run.checkpoint_every_steps: 25`), and never, side by side in one run;
the per-step difference is one state write. Run: python benchmarks/resume_overhead.py DIGITS_FOLDER
(a folder `orthograd demo` or the tests built: class7/, test.csv and resnet18_digits_seed0.safetensors)."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent / "orthograd"


def seconds_per_step(digits: Path, out: Path, every: int) -> float:
    folder = digits / "class7"
    done = subprocess.run([str(BIN), "forget", digits / "resnet18_digits_seed0.safetensors", "--forget",
                           folder / "forget.csv", "--retain", folder / "retain.csv", "--test", digits / "test.csv",
                           "--recipe", "resnet18_digits_class", "--set", "method.max_steps=25", "--set",
                           "method.lr=0.001", "--set", "method.stop.check_every=25", "--set",
                           f"run.checkpoint_every_steps={every}", "--require", "!target_reached", "--out", out,
                           "--json", "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # the time from the first check's end to the last check's end, less one check (the first one's duration), per
    # step: the steps and their state writes
    first, last = report["history"][0]["wall_s"], report["history"][-1]["wall_s"]
    return (last - 2 * first) / report["steps"]


def main() -> None:
    digits = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as scratch:
        runs = {every: [] for every in (1, 25, 10**9)}
        for repeat in range(2):  # interleaved, so that a slower moment of the machine hits every setting
            for every in runs:
                runs[every].append(seconds_per_step(digits, Path(scratch) / f"run-{every}-{repeat}", every))
    never, each, default = (min(runs[every]) for every in (10**9, 1, 25))
    write = max(0.0, each - never)
    print(f"step without states: {never:.3f} s; with a state every step: {each:.3f} s "
          f"(one write ≈ {write * 1000:.1f} ms, {write / never:.1%} of a step)")
    print(f"default (every 25 steps): {default:.3f} s per step; expected overhead {write / 25 / never:.2%} of a step")


if __name__ == "__main__":
    main()
