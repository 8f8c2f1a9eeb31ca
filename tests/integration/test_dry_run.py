"""`--dry-run`: every input checked as the run checks it, a plan that matches what the run then does, a
peak-memory estimate within 30 % of the peak a real run reaches (on the digits and the speech demo: the whole
runs of test_resume.py go through planned_and_measured), and nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PEAK = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)")


def orthograd(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orthograd_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def peak_rss(*args) -> int:
    """The peak RSS (bytes) of `orthograd ARGS` run alone in a fresh process."""
    done = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "orthograd_cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def planned_and_measured(args: list, out: Path) -> tuple[dict, dict]:
    """`orthograd ARGS --out OUT --dry-run --json` (nothing may be written), then the real run into OUT, alone in
    a fresh process: (the plan, the run's report). The plan's peak-memory estimate must be within 30 % of the
    peak RSS the run reached; the resume tests (test_resume.py) run their whole runs through here."""
    planned = orthograd(*args, "--out", out, "--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))  # nothing written
    plan = json.loads(planned.stdout)
    measured = peak_rss(*args, "--out", out)
    estimate = plan["memory"]["estimate_mib"] * 2**20
    print(f"\npeak RSS of {plan['task']} forget: estimate {estimate / 2**20:.0f} MiB {plan['memory']['parts_mib']}, "
          f"measured {measured / 2**20:.0f} MiB")
    assert abs(estimate - measured) <= 0.3 * measured
    report = json.loads((out / "report.json").read_text())
    assert plan["trainable_parameters"] == report["trainable_parameters"]  # counted without peft, as peft builds
    assert plan["batches"]["retain_k"] == report["retain_batch_size"]
    assert plan["steps"]["max_steps"] == report["recipe"]["method"]["max_steps"]
    assert plan["sets"]["forget"] == report["metrics"]["before"]["forget_acc"]["n"]
    assert plan["per_sample_backend"]["runs"] == "hooks"  # what `auto` picks, or the recipe names
    return plan, report


def test_a_manifest_listing_a_missing_file_fails_before_anything_loads(cli, digits, tmp_path):
    header, first, *_ = (digits / "sample" / "forget.csv").read_text().splitlines()
    manifest = tmp_path / "forget.csv"
    manifest.write_text(f"{header}\n{first.replace('.png', '-gone.png')}\n")
    unreadable = tmp_path / "model.safetensors"
    unreadable.write_bytes(b"not a checkpoint")  # reading it would be exit 3: it is never read
    for command in ("forget", "compare"):
        result = cli(command, unreadable, "--forget", manifest, "--retain", digits / "sample/retain.csv",
                     "--out", tmp_path / "out", "--dry-run")
        assert result.code == 2 and "row 2: file not found" in result.err and "-gone.png" in result.err, result.err
    result = cli("evaluate", unreadable, "--forget", manifest, "--dry-run")
    assert result.code == 2 and "row 2: file not found" in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forget.csv", "model.safetensors"]


def test_compare_and_evaluate_plan_too(cli, trained_model, digits, tmp_path):
    sets = ["--forget", digits / "sample/forget.csv", "--retain", digits / "sample/retain.csv", "--test",
            digits / "test.csv"]
    compared = cli("compare", trained_model, *sets, "--methods", "orthograd,scrub", "--seeds", "2", "--out",
                   tmp_path / "cmp", "--dry-run", "--json")
    assert compared.code == 0, compared.err
    assert json.loads(compared.out)["runs"] == {"methods": ["orthograd", "scrub"], "seeds": 2, "count": 4}
    evaluated = cli("evaluate", trained_model, *sets, "--dry-run")
    assert evaluated.code == 0 and "nothing was written" in evaluated.out and "peak memory" in evaluated.out
    refused = cli("forget", trained_model, *sets, "--out", tmp_path / "run", "--dry-run", "--set",
                  "lora.target_modules=[fc9]")
    assert refused.code == 2 and "no module named 'fc9'" in refused.err  # checked as the run checks it
    assert not list(tmp_path.iterdir())
