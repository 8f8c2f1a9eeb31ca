"""The unlearning loop's progress on stderr, as Observers (methods/observer.py).

On a terminal: a Rich bar with the step rate and the time left. Off a terminal (a log file, a
scheduler's pipe) a bar is drawn once, at the end, so a hung run would look like a working one:
there, one plain line per stop-rule check instead, or with `--log-format jsonl` one JSON object per
line (events start, check, end, warning) for a scheduler to parse.
"""

from __future__ import annotations

import json
import sys
import time

from orthograd_cli.methods.observer import Observer

LOG_FORMATS = ("auto", "plain", "jsonl")


def progress(enabled: bool = True, log_format: str = "auto", description: str = "unlearning") -> "Progress":
    """The progress display for this stderr: a bar on a terminal (auto), plain lines or JSON lines otherwise."""
    if not enabled:
        return Progress(description)
    if log_format == "jsonl":
        return JsonLines(description)
    if log_format == "plain" or not sys.stderr.isatty():
        return PlainLines(description)
    return ProgressBar(description)


class Progress(Observer):
    """Shows nothing; the base of the displays below. A context manager (compare and demo do several runs)."""

    def __init__(self, description: str = "unlearning"):
        self.description = description
        self.max_steps = self.first_step = 0
        self.started = 0.0

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def run(self, name: str) -> None:
        self.description = name

    def start(self, max_steps: int, first_step: int = 0) -> None:
        self.max_steps, self.first_step, self.started = max_steps, first_step, time.perf_counter()

    def rate(self, step: int) -> tuple[float | None, float | None]:
        """(steps per second so far, seconds left at that rate if every step is taken: an upper bound)."""
        elapsed = time.perf_counter() - self.started
        if step <= self.first_step or elapsed <= 0:
            return None, None
        per_second = (step - self.first_step) / elapsed
        return per_second, (self.max_steps - step) / per_second


def _scores(row: dict) -> dict:
    return {key: value for key, value in row.items() if key not in ("step", "wall_s")}


class PlainLines(Progress):
    """One line per check: step, the sets' scores, the step rate and the time left at most."""

    def start(self, max_steps: int, first_step: int = 0) -> None:
        super().start(max_steps, first_step)
        _write(f"{self.description}: up to {max_steps} steps" + (f", resuming after step {first_step}"
                                                                  if first_step else ""))

    def check(self, row: dict) -> None:
        per_second, left = self.rate(row["step"])
        scores = "  ".join(f"{key.replace('_', ' ')} {value:.4f}" for key, value in _scores(row).items())
        pace = f"  {per_second:.2f} steps/s, at most {_duration(left)} left" if per_second else ""
        _write(f"{self.description}: step {row['step']}/{self.max_steps}  {scores}{pace}")

    def saved(self, step: int, interrupted: bool) -> None:
        if interrupted:
            _write(RESUME_LINE.format(run=self.description, step=step))

    def end(self, result) -> None:
        _write(f"{self.description}: {result.stop_message} after {result.steps} steps in {_duration(result.wall_s)}")


class JsonLines(Progress):
    """The same events as JSON lines: start, check (with the row), end; warnings come through Output."""

    def start(self, max_steps: int, first_step: int = 0) -> None:
        super().start(max_steps, first_step)
        emit("start", run=self.description, max_steps=max_steps, first_step=first_step)

    def check(self, row: dict) -> None:
        per_second, left = self.rate(row["step"])
        emit("check", run=self.description, step=row["step"], max_steps=self.max_steps, metrics=_scores(row),
             wall_s=row.get("wall_s"), steps_per_s=per_second, eta_s=left)

    def saved(self, step: int, interrupted: bool) -> None:
        emit("state_saved", run=self.description, step=step, interrupted=interrupted)

    def end(self, result) -> None:
        emit("end", run=self.description, steps=result.steps, written_step=result.written_step,
             stop_reason=result.stop_reason, message=result.stop_message, wall_s=result.wall_s)


class ProgressBar(Progress):
    """A Rich bar per run on a terminal, with the step rate and the time left."""

    def __init__(self, description: str = "unlearning"):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        from orthograd_cli.cli.output import console

        super().__init__(description)
        self.progress = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("<"), TimeRemainingColumn(),
                                     TextColumn("{task.fields[info]}"), console=console(stderr=True), transient=False)
        self.task = None

    def __exit__(self, *exc) -> None:
        if self.progress.live.is_started:
            self.progress.__exit__(*exc)

    def start(self, max_steps: int, first_step: int = 0) -> None:
        super().start(max_steps, first_step)
        if not self.progress.live.is_started:  # the display starts with the first run: an early error stays 1 line
            self.progress.__enter__()
        self.task = self.progress.add_task(self.description, total=max_steps, completed=first_step, info="")

    def saved(self, step: int, interrupted: bool) -> None:
        if interrupted:
            self.progress.console.print(RESUME_LINE.format(run=self.description, step=step))

    def step(self, step: int, last_row: dict, latest: dict) -> None:
        names = (("unlearn", "unlearn_loss"), ("retain", "retain_loss"))
        losses = "  ".join(f"{name} loss {latest[key]:.3g}" for name, key in names if key in latest)
        watched = next(key for key in ("forget_holdout_acc", "forget_acc") if key in last_row)
        forget = f"{watched.removesuffix('_acc').replace('_', ' ')} acc {last_row[watched]:.3f}"
        if "damage" in last_row:
            forget += f"  damage {last_row['damage']:.3f}"
        per_second, _ = self.rate(step)
        pace = f"  {per_second:.2f} steps/s" if per_second else ""
        self.progress.update(self.task, advance=1, info=f"{losses}  {forget}{pace}".lstrip())


RESUME_LINE = ("{run}: interrupted after step {step}; its state is saved: rerun the same command with --resume to "
               "continue")


def emit(event: str, **fields) -> None:
    """One JSON line on stderr."""
    _write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}, default=str))


def _write(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()  # a log file sees each line as it happens


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
