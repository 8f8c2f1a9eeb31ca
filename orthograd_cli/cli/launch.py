"""`orthograd forget --nproc N`: run the same command as N processes on this machine (data-parallel OrthoGrad).

What torchrun does for one node, without its error reports: each child gets RANK, LOCAL_RANK, WORLD_SIZE,
a free MASTER_PORT and its share of the cores (OMP_NUM_THREADS, unless set), and runs
`python -m orthograd_cli` with the same arguments minus --nproc. When one child ends with an error (or is
killed), the others are stopped at once (SIGTERM: they clean up and leave nothing at --out), and this
process exits with the first failing child's code; rank 0's code otherwise.
Ctrl-C and SIGTERM here are passed on to every child.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time


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


def launch(nproc: int, argv: list[str]) -> int:
    """Run `orthograd <argv>` as `nproc` ranks; returns the exit code to use."""
    port = free_port()
    # the cores shared out (as torchrun does), unless the caller chose: N processes × all cores oversubscribe
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // nproc))
    children = []
    for rank in range(nproc):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc),
               "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": threads}
        children.append(subprocess.Popen([sys.executable, "-m", "orthograd_cli", *split_nproc(argv)[1]], env=env))

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
