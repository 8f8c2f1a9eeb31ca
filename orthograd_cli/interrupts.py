"""Let a block finish before Ctrl-C, SIGTERM or SIGHUP act.

An unlearning step changes the weights, the optimizer and the sampler together; a signal that lands in the
middle would leave them out of step, and the state a resumed run continues from would be one no run ever
reached. Inside `deferred()` those signals are noted, and once the block is done they act as they would
have (cli/app.py: KeyboardInterrupt, SystemExit 143 or 129). Only the main thread receives signals; elsewhere
the block runs as it is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    previous = {signum: handler for signum, handler in previous.items() if handler is not None}  # None: not ours
    for signum in previous:
        signal.signal(signum, lambda received, _frame: caught.append(received))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if caught:
            handler = previous[caught[0]]
            if callable(handler):
                handler(caught[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), caught[0])
