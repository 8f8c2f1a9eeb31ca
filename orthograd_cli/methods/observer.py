"""What the unlearning loop reports as it runs, to whoever watches (a progress bar, a log, rank 0 only).

The loop calls these hooks and knows nothing of how they are shown; `cli/progress.py` draws a bar.
"""

from __future__ import annotations


class Observer:
    """Does nothing; subclass and override what you need."""

    def run(self, name: str) -> None:
        """A run begins (compare: its method and seed), before its start()."""

    def start(self, max_steps: int, first_step: int = 0) -> None:
        """The loop begins; `first_step` > 0: a resumed run, continuing after that step."""

    def step(self, step: int, last_row: dict, latest: dict) -> None:
        """After each update: the step number, the latest check's row and the diagnostics of the last step
        read at that check (unlearn_loss, retain_loss, …; read only at checks, so a step never waits)."""

    def check(self, row: dict) -> None:
        """After each stop-rule check, with its history row."""

    def saved(self, step: int, interrupted: bool) -> None:
        """The resumable state after `step` was written (`interrupted`: on SIGINT/SIGTERM, just before exiting)."""

    def end(self, result) -> None:
        pass
