"""The unlearning loop's progress as a Rich bar on stderr: an Observer (methods/observer.py)."""

from __future__ import annotations

from orthograd_cli.methods.observer import Observer


class ProgressBar(Observer):
    """One bar per run (compare and demo do several runs); disabled, it draws nothing. Use as a context manager."""

    def __init__(self, enabled: bool = True, description: str = "unlearning"):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from orthograd_cli.cli.output import console

        self.description = description
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=console(stderr=True),
                                 disable=not enabled, transient=False)
        self.task = None

    def __enter__(self) -> "ProgressBar":
        return self  # the display starts with the first run: an error before it leaves stderr at one line

    def __exit__(self, *exc) -> None:
        if self.progress.live.is_started:
            self.progress.__exit__(*exc)

    def start(self, max_steps: int) -> None:
        if not self.progress.live.is_started:
            self.progress.__enter__()
        self.task = self.progress.add_task(self.description, total=max_steps, info="")

    def step(self, step: int, last_row: dict, latest: dict) -> None:
        names = (("unlearn", "unlearn_loss"), ("retain", "retain_loss"))
        losses = "  ".join(f"{name} loss {latest[key]:.3g}" for name, key in names if key in latest)
        watched = next(key for key in ("forget_holdout_acc", "forget_acc") if key in last_row)
        forget = f"{watched.removesuffix('_acc').replace('_', ' ')} acc {last_row[watched]:.3f}"
        self.progress.update(self.task, advance=1, info=f"{losses}  {forget}".lstrip())
