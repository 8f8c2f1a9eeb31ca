"""Wall time of `orthograd --help` (must stay well under 0.3 s: torch is imported only inside commands)
and of `orthograd demo` with its model cached. Run: python benchmarks/cli_latency.py [--demo]"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "orthograd"


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([str(BIN), *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    runs = [timed(["--help"]) for _ in range(10)]
    print(f"orthograd --help: median {statistics.median(runs):.3f} s, max {max(runs):.3f} s over {len(runs)} runs")
    imports = subprocess.run([sys.executable, "-X", "importtime", "-c", "import orthograd_cli.cli.app"],
                             capture_output=True, text=True).stderr
    print("torch imported by `--help`:", "yes" if "| torch\n" in imports else "no")
    if "--demo" in sys.argv:
        timed(["demo", "--quiet", "--out", "/tmp/orthograd-bench-demo"])  # warm the cached model
        print(f"orthograd demo (model cached): {timed(['demo', '--quiet', '--out', '/tmp/orthograd-bench-demo']):.1f} s")


if __name__ == "__main__":
    main()
