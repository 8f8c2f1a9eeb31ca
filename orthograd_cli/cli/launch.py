"""`orthograd forget --nproc N`: run the same command as N processes on this machine (data-parallel OrthoGrad).

What torchrun does for one node, without its error reports: each child gets RANK, LOCAL_RANK, WORLD_SIZE,
a free MASTER_PORT and its share of the cores (OMP_NUM_THREADS, unless set), and runs
`python -m orthograd_cli` with the same arguments minus --nproc. When one child ends with an error (or is
killed), the others are stopped at once (SIGTERM: they clean up and leave nothing at --out), and this
process exits with the first failing child's code; rank 0's code otherwise.
Ctrl-C and SIGTERM here are passed on to every child. The ranks die with the launcher even when it cannot pass
anything on (SIGKILL, the out-of-memory killer): on Linux the kernel sends each a SIGTERM when its parent dies
(PR_SET_PDEATHSIG), and everywhere a rank watches its parent's pid (`follow_launcher`), so no rank runs on, or
later writes --out, after the user has seen the job end.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from orthograd_cli.distributed import LAUNCHER_PID
from orthograd_cli.errors import UsageError


def split_nproc(argv: list[str]) -> tuple[str | None, list[str]]:
    """(the value of `--nproc N` / `--nproc=N`, or None; argv without it)."""
    value, rest, args = None, [], iter(argv)
    for arg in args:
        if arg == "--nproc":
            value = next(args, "")
        elif arg.startswith("--nproc="):
            value = arg.partition("=")[2]
        else:
            rest.append(arg)
    return value, rest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def check_process_count(nproc: int, device: str, oversubscribe: bool) -> None:
    """At most one rank per GPU (NCCL), and by default at most one per CPU core: more only share the cores."""
    import torch

    if device.startswith("cuda"):
        available, what = torch.cuda.device_count(), "GPU(s)"
    else:
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        what = "CPU core(s)"
    if nproc > available and (device.startswith("cuda") or not oversubscribe):
        more = "" if device.startswith("cuda") else ", or --oversubscribe to share the cores anyway"
        raise UsageError(f"--nproc {nproc}: this machine has {available} {what} for this run",
                         f"use --nproc {available} or fewer{more}")


def _die_with_parent(launcher: int) -> None:
    """In each rank, between fork and exec: SIGTERM when the launcher dies (Linux), and no rank outlives a
    launcher that died before this call."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != launcher:
        os._exit(143)


def follow_launcher() -> None:
    """In a rank our launcher started: end this process (SIGTERM, so it cleans up as on Ctrl-C) once the launcher
    is gone. The portable half of _die_with_parent, for systems without a parent-death signal."""
    launcher = os.environ.get(LAUNCHER_PID)
    if not launcher or not launcher.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(launcher):
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="orthograd-launcher-watch", daemon=True).start()


def launch(nproc: int, argv: list[str]) -> int:
    """Run `orthograd <argv>` as `nproc` ranks; returns the exit code to use."""
    port = free_port()
    # the cores shared out (as torchrun does), unless the caller chose: N processes × all cores oversubscribe
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // nproc))
    children = []
    for rank in range(nproc):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc),
               "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": threads, LAUNCHER_PID: str(os.getpid())}
        children.append(subprocess.Popen([sys.executable, "-m", "orthograd_cli", *split_nproc(argv)[1]], env=env,
                                         preexec_fn=functools.partial(_die_with_parent, os.getpid())))

    def pass_on(signum, _frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        failed = None
        while any(child.poll() is None for child in children):
            failed = failed or next((c for c in children if c.poll() not in (None, 0)), None)
            if failed is not None:
                for child in children:
                    if child.poll() is None:
                        child.terminate()
                break
            time.sleep(0.05)
        for child in children:
            child.wait()
        failed = failed or next((c for c in children if c.returncode != 0), None)
        code = children[0].returncode if failed is None else failed.returncode
        return 128 - code if code < 0 else code  # killed by a signal: the shell's 128 + signal number
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
