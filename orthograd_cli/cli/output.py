"""One output sink: human tables on stdout, `--json` prints only the report, diagnostics go to stderr."""

from __future__ import annotations

import contextlib
import json
import sys


def _console(stderr: bool = False):
    from rich.console import Console

    # Rich falls back to 80 columns off a terminal, which folds wide tables in logs and pipes
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, soft_wrap=False, width=None if stream.isatty() else 160)


class Output:
    def __init__(self, as_json: bool = False, quiet: bool = False):
        self.as_json, self.quiet = as_json, quiet

    def info(self, message: str) -> None:
        if not self.quiet:
            _console(stderr=True).print(message, highlight=False)

    def result(self, report: dict, human) -> None:
        """`--json`: the report alone on stdout; else `human()` prints tables."""
        if self.as_json:
            sys.stdout.write(json.dumps(report, indent=2) + "\n")
        else:
            human()

    def table(self, table) -> None:
        _console().print(table)


def _fmt(entry: dict | None) -> str:
    if not entry or entry.get("value") is None:
        return "–"
    return f"{entry['value']:.4f}"


def metrics_table(title: str, columns: dict[str, dict]):
    """Rows are metric names, columns e.g. before / after / original."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    table.add_column("goal")
    names: list[str] = []
    for metrics in columns.values():
        names += [n for n in metrics if n not in names]
    for name in names:
        goal_source = next(m[name] for m in columns.values() if name in m)
        if "target" in goal_source:
            goal = f"→ {goal_source['target']}"
        else:
            better = goal_source.get("higher_is_better")
            goal = "" if better is None else "higher" if better else "lower"
        table.add_row(name, *[_fmt(m.get(name)) for m in columns.values()], goal)
    return table


@contextlib.contextmanager
def progress_bar(enabled: bool = True):
    """A Rich progress bar on stderr; tasks take an `info` field shown after the bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[info]}"), console=_console(stderr=True), disable=not enabled,
                        transient=False)
    with progress:
        yield progress
