"""One output sink: human tables and lines on stdout, `--json` prints only the report, diagnostics
(progress, notes) go to stderr, `--quiet` silences the diagnostics. Commands print through it alone."""

from __future__ import annotations

import json
import sys


def console(stderr: bool = False):
    from rich.console import Console

    # Rich falls back to 80 columns off a terminal, which folds wide tables in logs and pipes
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, soft_wrap=False, width=None if stream.isatty() else 160)


class Output:
    def __init__(self, as_json: bool = False, quiet: bool = False):
        self.as_json, self.quiet = as_json, quiet

    def info(self, message: str) -> None:
        """A diagnostic on stderr (not with --quiet)."""
        if not self.quiet:
            console(stderr=True).print(message, highlight=False)

    def warn(self, message: str) -> None:
        """A warning on stderr, shown even with --quiet."""
        sys.stderr.write(f"warning: {message}\n")

    def line(self, text: str) -> None:
        """A line of the human result on stdout (not with --json)."""
        if not self.as_json:
            sys.stdout.write(text + "\n")

    def table(self, table) -> None:
        if not self.as_json:
            console().print(table)

    def result(self, report, human) -> None:
        """`--json`: the report (a pydantic model or a dict) alone on stdout; else `human()` prints tables."""
        if self.as_json:
            data = report.model_dump(mode="json") if hasattr(report, "model_dump") else report
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
        else:
            human()


def _fmt(entry) -> str:
    if entry is None or entry.value is None:
        return "–"
    return f"{entry.value:.4f}"


def metrics_table(title: str, columns: dict[str, dict]):
    """Rows are metric names, columns e.g. before / after / original (each a dict of report Metrics)."""
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
        if goal_source.target is not None:
            goal = f"→ {goal_source.target}"
        else:
            better = goal_source.higher_is_better
            goal = "" if better is None else "higher" if better else "lower"
        table.add_row(name, *[_fmt(m.get(name)) for m in columns.values()], goal)
    return table
