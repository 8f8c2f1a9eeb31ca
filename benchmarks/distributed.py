"""Data-parallel OrthoGrad on this machine: step time and bytes communicated per step with 1 and 2 processes.

`orthograd forget` class-wise on the digits demo (resnet18 32 px, LoRA r=8: 291,560 trainable parameters),
a fixed number of steps with the stop rule checked only at the end, k retain samples and 32 forget images
per step, run as 1 process and as `--nproc 2` (gloo), for each projection setting. Step time is the
unlearning loop's wall time divided by its steps (it includes the two stop-rule checks, measured on rank 0);
bytes are what rank 0 put into collectives per step (report: provenance.communicated_bytes_per_step).
On a 2-core machine 2 processes share the same cores, so the time shows the overhead, not a speed-up.

Run: python benchmarks/distributed.py [--steps 20] [--k 64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from orthograd_cli.data.digits import build_digits
from orthograd_cli.jobs.demo import cache_dir, demo_checkpoint

SETTINGS = {
    "per_tensor, hooks": [],
    "global, hooks": ["method.projection.scope=global"],
    "global, gram backend": ["method.projection.scope=global", "method.per_sample.backend=gram"],
}


def run(checkpoint: Path, data: Path, out: Path, nproc: int, steps: int, k: int, settings: list[str]) -> dict:
    args = [sys.executable, "-m", "orthograd_cli", "forget", str(checkpoint), "--forget",
            str(data / "class7/forget.csv"), "--retain", str(data / "class7/retain.csv"), "--recipe",
            "resnet18_digits_class", "--out", str(out), "--json", "--quiet", "--nproc", str(nproc),
            "--set", f"method.max_steps={steps}", "--set", f"method.stop.check_every={steps}",
            "--set", "method.stop.target_forget_acc=0", "--set", f"method.retain_batch_size={k}",
            "--set", "method.unlearn_batch_size=32", *[a for s in settings for a in ("--set", s)]]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {done.stderr[-1000:]}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--k", type=int, default=64)
    args = parser.parse_args()
    data = build_digits(cache_dir() / "digits")
    checkpoint = demo_checkpoint(data)
    print(f"{'setting':>22} {'processes':>9} {'steps':>5} {'s/step':>7} {'MB sent/step':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, settings in SETTINGS.items():
            for nproc in (1, 2):
                report = run(checkpoint, data, Path(tmp) / f"{nproc}-{len(settings)}", nproc, args.steps, args.k,
                             settings)
                sent = report["provenance"].get("communicated_bytes_per_step") or 0
                print(f"{label:>22} {nproc:>9} {report['steps']:>5} {report['wall_s'] / report['steps']:>7.3f} "
                      f"{sent / 1e6:>12.2f}", flush=True)


if __name__ == "__main__":
    main()
