"""Long runs as a pipeline sees them: a time budget that ends a run with what it reached, progress a log
file shows while the run goes, JSON lines a scheduler parses, and user mistakes reported before torch loads."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import FORGET_CLASS


def class_args(digits):
    folder = digits / f"class{FORGET_CLASS}"
    return ["--forget", folder / "forget.csv", "--retain", folder / "retain.csv", "--test", digits / "test.csv",
            "--recipe", "resnet18_digits_class"]


@pytest.mark.slow
def test_a_time_budget_ends_the_run_at_the_next_check_and_json_lines_tell_a_scheduler(cli, trained_model, digits,
                                                                                      tmp_path):
    budget = ["--max-minutes", "0.001", "--set", "method.stop.check_every=1", "--set", "method.max_steps=50"]
    result = cli("forget", trained_model, *class_args(digits), *budget, "--out", tmp_path / "run", "--json",
                 "--log-format", "jsonl")
    assert result.code == 5, result.err  # the target was not reached in 0.06 s
    report = json.loads(result.out)
    assert report["stop_reason"] == "time_budget" and report["steps"] == 1 and not report["target_reached"]
    assert report["recipe"]["method"]["stop"]["max_minutes"] == 0.001
    assert "time budget (0.001 min) used at step 1" in report["stop_message"]
    assert all(row["wall_s"] >= 0 for row in report["history"]) and report["history"][-1]["wall_s"] >= 0.06
    assert (tmp_path / "run" / "model.safetensors").is_file()  # what it reached is kept
    # stderr is JSON lines, one object each: start, a check per step, end, the notes, warnings and the hint
    events = [json.loads(line) for line in result.err.splitlines()]
    kinds = [event["event"] for event in events]
    assert kinds[0] == "start" and kinds.count("check") == 2 and "end" in kinds and "note" in kinds
    check = next(event for event in events if event["event"] == "check" and event["step"] == 1)
    assert set(check["metrics"]) >= {"forget_acc", "test_acc"} and check["max_steps"] == 50
    assert any(e["event"] == "warning" and "--max-minutes" in e["message"] for e in events)  # the hint
    failed = cli("forget", trained_model, *class_args(digits), "--set", "method.lrr=1", "--log-format", "jsonl",
                 "--out", tmp_path / "bad")
    assert failed.code == 2 and json.loads(failed.err)["event"] == "error"


@pytest.mark.slow
def test_progress_goes_to_a_log_file_line_by_line_while_the_run_goes(trained_model, digits, tmp_path):
    """stderr to a file (not a terminal): a line per check appears while the run is still going."""
    import contextlib
    import io
    import threading

    from orthograd_cli.cli.app import main

    log = tmp_path / "stderr.log"
    seen = {}

    def watch() -> None:  # the main thread runs the CLI (signal handlers live there); this one reads the log
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and "finished" not in seen:
            text = log.read_text() if log.exists() else ""
            if "step 4/12" in text and "line" not in seen:
                seen["line"], seen["ended_by_then"] = text, "after 12 steps" in text or "reached target" in text
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        args = ["forget", trained_model, *class_args(digits), "--set", "method.max_steps=12", "--set",
                "method.stop.check_every=2", "--set", "method.lr=0.0001", "--require", "!target_reached",
                "--out", tmp_path / "run"]
        with open(log, "w") as stderr, contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as done:
                code = int(done.code or 0)
    finally:
        seen["finished"] = True
        watcher.join()
    assert code == 0, log.read_text()
    assert "line" in seen and not seen["ended_by_then"], log.read_text()
    text = log.read_text()
    assert "unlearning: up to 12 steps" in text and "after 12 steps" in text
    line = next(line for line in text.splitlines() if "step 4/12" in line)
    assert "forget acc" in line and "test acc" in line and "steps/s" in line and "left" in line


@pytest.mark.parametrize("mistake, code, fragment", [
    ("existing_out", 2, "output folder exists"),
    ("missing_manifest", 2, "no such file"),
    ("bad_set", 2, "method.lrr"),
    ("bad_require", 2, "not a requirement"),
])
def test_mistakes_that_need_no_model_are_reported_before_torch_is_imported(trained_model, digits, tmp_path, mistake,
                                                                           code, fragment):
    folder = digits / f"class{FORGET_CLASS}"
    out = tmp_path / "run"
    args = ["forget", trained_model, "--forget", folder / "forget.csv", "--retain", folder / "retain.csv",
            "--test", digits / "test.csv", "--out", out]
    if mistake == "existing_out":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif mistake == "missing_manifest":
        args[3] = folder / "missing.csv"
    elif mistake == "bad_set":
        args += ["--set", "method.lrr=1"]
    else:
        args += ["--require", "forget_acc=<1"]
    probe = ("import atexit, sys; atexit.register(lambda: sys.stderr.write(f'torch imported: {\"torch\" in "
             "sys.modules}\\n')); from orthograd_cli.cli.app import main; main(sys.argv[1:])")
    done = subprocess.run([sys.executable, "-c", probe, *map(str, args)], capture_output=True, text=True)
    assert done.returncode == code, done.stderr
    assert fragment in done.stderr and done.stderr.rstrip().endswith("torch imported: False"), done.stderr
