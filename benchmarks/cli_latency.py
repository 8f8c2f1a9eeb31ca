"""Wall time of `orthograd --help` (must stay well under 0.3 s: torch is imported only inside commands), of the
mistakes that need no model (an existing --out, a missing manifest, a bad --require: reported before torch is
imported, so the same order as --help), of `forget --dry-run` on the digits demo (target: under 5 s), and of
`orthograd demo` with its model cached.
Run: python benchmarks/cli_latency.py [--demo] [--dry-run DIGITS_FOLDER]"""

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "orthograd"


def timed(args: list[str], expect: int = 0) -> float:
    start = time.perf_counter()
    done = subprocess.run([str(BIN), *map(str, args)], capture_output=True)
    elapsed = time.perf_counter() - start
    assert done.returncode == expect, done.stderr
    return elapsed


def mistakes(folder: Path) -> dict[str, list]:
    """Commands that fail on a user's mistake; the model file is never read, so its content does not matter."""
    model = folder / "model.safetensors"
    model.write_bytes(b"\0" * 1024)
    for name in ("forget", "retain", "test"):
        (folder / f"{name}.csv").write_text("path,label\n")
    (folder / "exists").mkdir()
    (folder / "exists" / "keep.txt").write_text("mine")
    base = ["forget", model, "--forget", folder / "forget.csv", "--retain", folder / "retain.csv", "--test",
            folder / "test.csv"]
    return {"existing --out": [*base, "--out", folder / "exists"],
            "missing manifest": [*base[:3], folder / "missing.csv", *base[4:], "--out", folder / "new"],
            "bad --require": [*base, "--require", "forget_acc=<1", "--out", folder / "new"]}


def main() -> None:
    runs = [timed(["--help"]) for _ in range(10)]
    print(f"orthograd --help: median {statistics.median(runs):.3f} s, max {max(runs):.3f} s over {len(runs)} runs")
    imports = subprocess.run([sys.executable, "-X", "importtime", "-c", "import orthograd_cli.cli.app"],
                             capture_output=True, text=True).stderr
    print("torch imported by `--help`:", "yes" if "| torch\n" in imports else "no")
    help_median = statistics.median(runs)
    with tempfile.TemporaryDirectory() as folder:
        for name, args in mistakes(Path(folder)).items():
            times = [timed(args, expect=2) for _ in range(5)]
            print(f"forget with {name}: median {statistics.median(times):.3f} s = "
                  f"{statistics.median(times) / help_median:.1f}x --help")
    if "--dry-run" in sys.argv:  # python benchmarks/cli_latency.py --dry-run DIGITS_FOLDER
        digits = Path(sys.argv[sys.argv.index("--dry-run") + 1])
        args = ["forget", digits / "resnet18_digits_seed0.safetensors", "--forget", digits / "class7/forget.csv",
                "--retain", digits / "class7/retain.csv", "--test", digits / "test.csv", "--recipe",
                "resnet18_digits_class", "--out", "/tmp/orthograd-bench-dry-run", "--dry-run"]
        times = [timed(args) for _ in range(3)]
        print(f"forget --dry-run on the digits demo: median {statistics.median(times):.2f} s, max {max(times):.2f} s")
        imported = subprocess.run(
            [sys.executable, "-c", "import time; t = time.perf_counter(); import torch, torchvision; "
             "print(time.perf_counter() - t)"], capture_output=True, text=True).stdout
        print(f"  of which importing torch and torchvision alone: {float(imported):.2f} s")
    if "--demo" in sys.argv:
        timed(["demo", "--quiet", "--out", "/tmp/orthograd-bench-demo"])  # warm the cached model
        print(f"orthograd demo (model cached): {timed(['demo', '--quiet', '--out', '/tmp/orthograd-bench-demo']):.1f} s")


if __name__ == "__main__":
    main()
