"""Ctrl-C during `orthograd forget` (a real subprocess): exit 130, a short message, nothing left behind."""

import signal
import subprocess
import sys
import time

import pytest


@pytest.mark.slow
def test_sigint_during_forget_exits_130_and_leaves_no_output(trained_model, digits, tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "orthograd_cli", "forget", str(trained_model), "--forget",
         str(digits / "sample/forget.csv"), "--retain", str(digits / "sample/retain.csv"), "--test",
         str(digits / "test.csv"), "--set", "method.max_steps=100000", "--set", "method.stop.target_forget_acc=0", "--set", "method.stop.check_every=1000000",
         "--out", str(out), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".run.tmp-*")) and time.monotonic() < deadline:  # unlearning has begun
        time.sleep(0.2)
    assert list(tmp_path.glob(".run.tmp-*")), "forget never started"
    time.sleep(2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".run*"))
