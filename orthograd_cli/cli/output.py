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
    def __init__(self, as_json: bool = False, quiet: bool = False, log_format: str = "auto"):
        from orthograd_cli.cli.progress import LOG_FORMATS

        if log_format not in LOG_FORMATS:
            from orthograd_cli.errors import UsageError

            raise UsageError(f"--log-format {log_format}: not a log format", f"choose {', '.join(LOG_FORMATS)}")
        self.as_json, self.quiet, self.jsonl = as_json, quiet, log_format == "jsonl"

    def info(self, message: str) -> None:
        """A diagnostic on stderr (not with --quiet)."""
        if self.quiet:
            return
        if self.jsonl:
            from orthograd_cli.cli.progress import emit

            emit("note", message=message)
        else:
            console(stderr=True).print(message, highlight=False)

    def warn(self, message: str) -> None:
        """A warning on stderr, shown even with --quiet."""
        if self.jsonl:
            from orthograd_cli.cli.progress import emit

            emit("warning", message=message)
        else:
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


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def _value(entry, part: str | None):
    if entry is None:
        return None
    return entry.value if part is None else (entry.fields or {}).get(part)


def metrics_table(title: str, columns: dict[str, dict]):
    """Rows are metric names (and a test's fields, e.g. forget_loss_ks.p), columns e.g. before / after /
    original (each a dict of report Metrics)."""
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
            target = goal_source.target
            goal = f"→ {target:.4g}" if isinstance(target, float) else f"→ {target}"
        else:
            better = goal_source.higher_is_better
            goal = "" if better is None else "higher" if better else "lower"
        table.add_row(name, *[_fmt(_value(m.get(name), None)) for m in columns.values()], goal)
        for part in goal_source.parts:
            table.add_row(f"{name}.{part}", *[_fmt(_value(m.get(name), part)) for m in columns.values()],
                          "higher" if part == "p" else "")
    return table


def tuning_table(tuning):
    """`forget --tune`: one row per candidate, in the order tried; the chosen one marked."""
    from rich.table import Table

    from orthograd_cli.jobs.tune import label

    table = Table(title=f"tuning: {len(tuning.candidates)} candidate(s) on the validation split, "
                        f"{tuning.wall_s:.0f} s; {tuning.constraints}", title_justify="left")
    for column in ("setting", "steps", "stop", "damage", "met", ""):
        table.add_column(column, justify="left" if column in ("setting", "stop") else "right")
    for candidate in tuning.candidates:
        setting = label(candidate.setting)
        picked = "← chosen" if candidate.setting == tuning.chosen else ""
        if candidate.status != "ok":
            table.add_row(setting, "", "failed", "", "no", picked)
            continue
        stop = candidate.stop_reason or ""
        if stop == "max_steps" and candidate.capped_at == candidate.steps:
            stop = "capped"  # stopped at the steps of a candidate already met: it could not be cheaper
        table.add_row(setting, str(candidate.steps), stop, _fmt(candidate.damage),
                      "yes" if candidate.met else "no", picked)
    return table


def argv_of(ctx) -> list[str]:
    """The command line as given (arguments only), for the report's audit trail."""
    return list(ctx.obj["argv"]) if ctx is not None and isinstance(ctx.obj, dict) else sys.argv[1:]


def exit_on_verdict(output: Output, verdict) -> None:
    """A completed command whose output failed a requirement: each failure and the hint on stderr, exit 5
    (outputs are written; a pipeline may look at them)."""
    import typer

    from orthograd_cli.requirements import EXIT_NOT_MET, failure_lines

    if verdict.passed:
        return
    for line in failure_lines(verdict):
        output.warn(line)
    if verdict.hint:
        output.warn(f"hint: {verdict.hint}")
    raise typer.Exit(EXIT_NOT_MET)


def verdict_table(verdict):
    from rich.table import Table

    table = Table(title="requirements", title_justify="left")
    for column in ("requirement", "verdict", "detail"):
        table.add_column(column)
    for row in verdict.requirements:
        table.add_row(row.requirement, "pass" if row.passed else "FAIL", row.detail)
    return table


def show_plan(output: Output, command: str, model, manifests: dict, recipe, arch, world_size: int = 1,
              probe: int = 0, out=None, methods: list[str] | None = None, seeds: int = 1) -> None:
    """`--dry-run`: the plan (jobs/plan.py) as lines, or as JSON with --json."""
    from orthograd_cli.jobs.plan import plan_lines, plan_run

    plan = plan_run(command, str(model), manifests, recipe, arch, world_size, probe, out, methods, seeds)
    output.result(plan, lambda: [output.line(line) for line in plan_lines(plan)])
