"""Interrupting `orthograd forget` (a real subprocess): nothing is ever left at the output path."""

import signal
import subprocess
import sys
import time

import pytest


def start_forget(trained_model, digits, out):
    """A forget run that would go on for a long time, and the moment its temporary output exists."""
    process = subprocess.Popen(
        [sys.executable, "-m", "orthograd_cli", "forget", str(trained_model), "--forget",
         str(digits / "sample/forget.csv"), "--retain", str(digits / "sample/retain.csv"), "--test",
         str(digits / "test.csv"), "--set", "method.max_steps=100000", "--set", "method.stop.target_forget_acc=0",
         "--set", "method.stop.check_every=1000000", "--out", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.parent.glob(f".{out.name}.tmp-*")) and time.monotonic() < deadline:  # unlearning begun
        time.sleep(0.2)
    assert list(out.parent.glob(f".{out.name}.tmp-*")), "forget never started"
    time.sleep(2)
    return process


@pytest.mark.slow
def test_sigint_during_forget_exits_130_and_leaves_no_output(trained_model, digits, tmp_path):
    out = tmp_path / "run"
    process = start_forget(trained_model, digits, out)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".run*"))


@pytest.mark.slow
def test_sigkill_leaves_only_a_temporary_that_the_next_run_ignores(cli, trained_model, digits, tmp_path):
    out = tmp_path / "run"
    process = start_forget(trained_model, digits, out)
    process.kill()
    process.communicate(timeout=60)
    assert not out.exists()
    leftovers = list(tmp_path.glob(".run.tmp-*"))
    assert leftovers, "SIGKILL cannot clean up; the temporary should be what is left"
    result = cli("forget", trained_model, "--forget", digits / "sample/forget.csv", "--retain",
                 digits / "sample/retain.csv", "--test", digits / "test.csv", "--set", "method.max_steps=2",
                 "--out", out, "--quiet", "--json")
    assert result.code == 0, result.err
    assert (out / "model.safetensors").exists() and (out / "report.json").exists()


def test_main_in_process_restores_the_callers_signal_handlers(cli):
    """Tests and notebooks call main() in-process: its SIGINT/SIGTERM handlers must not outlive it."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert cli("recipes", "ls").code == 0
    assert cli("evaluate", "missing.safetensors", "--test", "missing.csv").code != 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
