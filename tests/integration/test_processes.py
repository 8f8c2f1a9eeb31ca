"""Processes that live and die together: `forget --nproc N` checks its inputs once before it starts any rank, its
ranks die with it even under SIGKILL, and a plain run in a shell that inherited a job's RANK/WORLD_SIZE runs alone.
Real subprocesses of the real CLI."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import FORGET_CLASS
from tests.integration.test_distributed import ranks_of
from tests.integration.test_interrupt import launch, nothing_left, only_a_state_left, wait_for

SHORT = ["--set", "method.max_steps=2", "--require", "!target_reached", "--set", "method.stop.check_every=1"]


def orthograd(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orthograd_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def class_sets(digits) -> list:
    folder = digits / f"class{FORGET_CLASS}"
    return ["--forget", folder / "forget.csv", "--retain", folder / "retain.csv", "--test", digits / "test.csv",
            "--recipe", "resnet18_digits_class"]


def test_a_plain_run_with_a_jobs_rank_variables_runs_alone_and_says_so(trained_model, digits, tmp_path):
    """A shell inside a torchrun or SLURM job: without the launcher's marker it must not wait for a process group."""
    stray = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    started = time.monotonic()
    done = orthograd("forget", trained_model, *class_sets(digits), *SHORT, "--out", tmp_path / "run", "--json",
                     "--quiet", env=stray)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 100  # joining a group would have waited 120 s for rank 0
    assert "ignoring RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the environment" in done.stderr


def test_nproc_checks_once_before_starting_any_rank(trained_model, digits, tmp_path):
    missing = tmp_path / "missing.csv"
    done = orthograd("forget", trained_model, "--forget", missing, "--retain", digits / "sample/retain.csv",
                     "--out", tmp_path / "run", "--nproc", "2")
    assert done.returncode == 2 and done.stderr.count("error:") == 1 and str(missing) in done.stderr, done.stderr
    assert nothing_left(tmp_path / "run")


def test_nproc_above_the_cores_is_refused_unless_asked_for(trained_model, digits, tmp_path):
    cores = len(os.sched_getaffinity(0))
    done = orthograd("forget", trained_model, *class_sets(digits), "--out", tmp_path / "run", "--nproc", cores + 1)
    assert done.returncode == 2 and f"this machine has {cores} CPU core(s)" in done.stderr, done.stderr
    assert "--oversubscribe" in done.stderr and nothing_left(tmp_path / "run")
    # with it, the count passes and the next check (here: an output that is an input) speaks instead
    done = orthograd("forget", trained_model, *class_sets(digits), "--out", digits, "--nproc", cores + 1,
                     "--oversubscribe")
    assert done.returncode == 2 and "the output path contains an input" in done.stderr, done.stderr


@pytest.mark.parametrize("value", ["²", "x", "0"])
def test_an_nproc_that_is_not_a_positive_count_is_a_usage_error(trained_model, digits, tmp_path, value):
    done = orthograd("forget", trained_model, *class_sets(digits), "--out", tmp_path / "run", "--nproc", value)
    assert done.returncode == 2 and "--nproc" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_forget_set_too_small_to_share_is_refused_before_any_rank(trained_model, digits, tmp_path):
    """One forget sample cannot be split between two processes (it ended in 'non-finite loss')."""
    source = digits / f"class{FORGET_CLASS}" / "forget.csv"
    with open(source) as handle:
        rows = list(csv.DictReader(handle))
    one = tmp_path / "one.csv"
    with open(one, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerow({**rows[0], "path": str((source.parent / rows[0]["path"]).resolve())})
    sets = class_sets(digits)
    sets[1] = one
    done = orthograd("forget", trained_model, *sets, "--set", "method.stop.forget_holdout=0", "--out",
                     tmp_path / "run", "--nproc", "2")
    assert done.returncode == 2 and "each unlearn batch holds 1" in done.stderr, done.stderr
    assert done.stderr.count("error:") == 1 and nothing_left(tmp_path / "run")


@pytest.mark.slow
def test_killing_the_launcher_ends_every_rank_and_leaves_nothing(trained_model, digits, tmp_path):
    """SIGKILL cannot be passed on: the ranks must notice on their own. The global --debug before the command
    also shows that --nproc is read wherever it stands."""
    out = tmp_path / "run"
    launcher = launch("forget", trained_model, digits, out, "--nproc", "2", global_options=["--debug"])
    try:
        ranks = ranks_of(launcher)
        wait_for(lambda: list(out.parent.glob(f".{out.name}.tmp-*")), launcher)  # rank 0 is unlearning
    except BaseException:  # the test failed before its kill: end the long run (its ranks follow it)
        with contextlib.suppress(psutil.Error):
            psutil.Process(launcher.pid).kill()
        raise
    launcher.kill()
    killed = time.monotonic()
    launcher.communicate(timeout=30)
    _, alive = psutil.wait_procs(list(ranks.values()), timeout=5)
    assert not alive, f"ranks still running {time.monotonic() - killed:.1f} s after the launcher was killed"
    deadline = time.monotonic() + 5
    while not only_a_state_left(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert only_a_state_left(out)  # rank 0 keeps its state on the SIGTERM, if it took a step


def test_a_rank_started_by_our_launcher_stops_when_the_launcher_is_gone(tmp_path):
    """The portable half (a parent-pid watch, for systems without a parent-death signal), on its own: a process
    that believes another pid launched it ends itself with SIGTERM's code."""
    code = ("import time\nfrom orthograd_cli.cli.app import _install_signal_handlers\n_install_signal_handlers()\n"
            "from orthograd_cli.cli.launch import follow_launcher\nfollow_launcher()\ntime.sleep(30)\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "ORTHOGRAD_LAUNCHER_PID": "1"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 143 and time.monotonic() - started < 10, done.stderr


def test_sigterm_is_what_the_kernel_sends_a_rank_whose_launcher_dies():
    """Linux: PR_SET_PDEATHSIG set between fork and exec; read back with PR_GET_PDEATHSIG in the child."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the parent-death signal is Linux's")
    code = ("import ctypes, signal\nvalue = ctypes.c_int()\nctypes.CDLL(None).prctl(2, ctypes.byref(value))\n"
            "print(value.value)\n")
    from orthograd_cli.cli.launch import _die_with_parent

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                          preexec_fn=lambda: _die_with_parent(os.getppid()))
    assert done.stdout.strip() == str(int(signal.SIGTERM)), done.stderr
