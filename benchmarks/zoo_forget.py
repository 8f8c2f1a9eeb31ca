"""The zoo: forgetting on models trained by code other than the tool's, with the shipped recipes' defaults, with
`--tune`, and NegGrad+ (the same recipe, method.name=neggrad_plus), each against the member's model retrained
without the forgotten group.

Per run: the forgotten group's unseen samples (class-wise: the class's test images) — how much their error rose,
and how much the retrained reference's did; the others' accuracy change (class-wise test accuracy covers the
other classes only); steps; the command's wall time; its exit code under the default requirements. A member
passes when the group's error rose at least as much as the reference's (to one sample), the others fell by at
most 0.02 and the run exited 0.

Run: python benchmarks/zoo_forget.py [--split held_out|tune|all] [--cache DIR]   (builds the zoo on first use:
benchmarks/zoo/, about 4 minutes for the image members on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.zoo import images  # noqa: E402
from orthograd_cli.jobs.tune import label  # noqa: E402

BIN = Path(sys.executable).parent / "orthograd"
RUNS = {"orthograd": [], "orthograd --tune": ["--tune"], "neggrad_plus": ["--set", "method.name=neggrad_plus"]}


def forget(member: dict, out: Path, extra: list[str]) -> tuple[int, dict, float]:
    sets = [arg for assignment in member["sets"] for arg in ("--set", assignment)]
    started = time.perf_counter()
    done = subprocess.run([str(BIN), "forget", member["model"], "--forget", member["forget"], "--retain",
                           member["retain"], "--test", member["test"], "--reference", member["reference"],
                           "--recipe", member["recipe"], *sets, *extra, "--out", str(out), "--json", "--quiet"],
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 5):
        raise SystemExit(f"{member['name']}: exit {done.returncode}: {done.stderr.strip()}")
    return done.returncode, json.loads(done.stdout), wall


def row(member: dict, label: str, code: int, report: dict, wall: float) -> dict:
    before, after, reference = report["metrics"]["before"], report["metrics"]["after"], report["reference_metrics"]
    unseen = after["forget_test_acc"]
    rise = before["forget_test_acc"]["value"] - unseen["value"]  # error rise = accuracy fall
    reference_rise = before["forget_test_acc"]["value"] - reference["forget_test_acc"]["value"]
    others = after["test_acc"]["value"] - before["test_acc"]["value"]
    passed = rise >= reference_rise - 1 / unseen["n"] - 1e-9 and others >= -0.02 - 1e-9 and code == 0
    chosen = report["tuning"]["chosen"] if report.get("tuning") else None
    return {"member": member["name"], "run": label, "exit": code, "rise": rise, "reference_rise": reference_rise,
            "others": others, "steps": report["steps"], "wall_s": wall, "passed": passed,
            "chosen": chosen, "stop": report["stop_reason"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="held_out", choices=["held_out", "tune", "all"])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "orthograd" / "zoo")
    args = parser.parse_args()
    from orthograd_cli.data.digits import build_digits

    digits = build_digits(args.cache / "digits", seed=0)
    members = [images.build(name, args.cache, digits) for name, spec in images.MEMBERS.items()
               if args.split in ("all", spec["split"])]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for member in members:
            print(f"{member['name']} ({member['split']}): test accuracy {member['test_acc']:.3f}, built in "
                  f"{member['build_s']:.0f} s", flush=True)
            for i, (run, extra) in enumerate(RUNS.items()):
                rows.append(row(member, run, *forget(member, Path(scratch) / f"{member['name']}{i}", extra)))
                print("  " + json.dumps(rows[-1]), flush=True)
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    print("\n| member (split) | run | forgotten group's error rise (reference) | others' accuracy change | steps | "
          "time | exit | passes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        chosen = f" (chose {label(r['chosen'])})" if r["chosen"] else ""
        split = images.MEMBERS[r["member"]]["split"].replace("_", "-")
        print(f"| {r['member']} ({split}) | {r['run']}{chosen} | {r['rise']:+.3f} ({r['reference_rise']:+.3f}) | "
              f"{r['others']:+.3f} | {r['steps']} | {r['wall_s']:.0f} s | {r['exit']} | "
              f"{'yes' if r['passed'] else 'NO'} |")


if __name__ == "__main__":
    main()
