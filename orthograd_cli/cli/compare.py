"""`orthograd compare`: which method forgets best on *my* model?"""

from pathlib import Path
from typing import Annotated, Optional

import typer

from orthograd_cli.cli import options

EPILOG = """\
Examples:

  orthograd compare model.safetensors --forget forget.csv --retain retain.csv --test test.csv
  --methods orthograd,neggrad_plus,scrub --seeds 3 --out compare/

  orthograd compare model.safetensors -f forget.csv --retain retain.csv -t test.csv --seeds 3
  --sweep method.lr=0.01,0.03,0.1 --sweep method.max_steps=100,200 --out compare/

With --sweep (any recipe key, several values; repeat for a grid), each method first tries every
setting once on a validation split carved from the retain set (never the test set) and keeps the
best by --select (default: UIS on that split); the chosen setting then runs with --seeds seeds.

Methods:

\b
{methods}

Each run must meet the requirements (the recipe's require list, --require, and the built-in
target_reached, not_at_chance and test_kept); a method passes when all its runs do. Exit 0 when at least one
method passes, 5 when none does:

  orthograd compare model.safetensors -f forget.csv --retain retain.csv -t test.csv --seeds 3
  --reference retrained.safetensors --require 'forget_loss_ks.p>=0.05' --out compare/

With --seeds 2 or more, each cell is mean ± sample std, and compare.json/csv add the 95 % t-interval.

Interrupted? The same command with --resume keeps the runs that finished, resumes the one that was
running and runs the rest.

Writes compare/<method>/seed<N>/ runs and compare/compare.{json,csv,md,png}.
"""


def compare(
    model: Annotated[Path, typer.Argument(help="Checkpoint to unlearn from: a .safetensors file or a Hugging Face model folder.")],
    forget_csv: options.Forget = None,
    retain_csv: options.Retain = None,
    test_csv: options.Test = None,
    forget_test_csv: options.ForgetTest = None,
    methods: Annotated[str, typer.Option("--methods", "-m", help="Comma-separated method names.")] =
        "orthograd,neggrad_plus,scrub,gdr_gma",
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Seeds per method (from the recipe's seed on).")] = 1,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (refused if it exists).")] = Path("compare"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Write into an existing --out folder.")] = False,
    sweep: Annotated[Optional[list[str]], typer.Option(
        "--sweep", help="KEY=V1,V2,... : tune this recipe key per method on a validation split (repeatable).")] = None,
    select: Annotated[str, typer.Option(
        "--select", help="What the sweep minimises: uis (on the validation split) or a metric name.")] = "uis",
    require: options.Require = None,
    reference: options.Reference = None,
    max_minutes: options.MaxMinutes = None,
    log_format: options.LogFormat = "auto",
    resume: options.Resume = False,
    dry_run: options.DryRun = False,
    probe: options.Probe = 0,
    recipe: options.Recipe = None,
    overrides: options.Set = None,
    arch: options.Arch = None,
    as_json: options.Json = False,
    quiet: options.Quiet = False,
    ctx: typer.Context = None,
) -> None:
    """Run several unlearning methods on the same inputs; a table sorted by UIS (mean ± std over seeds)."""
    from rich.table import Table

    from orthograd_cli.cli.output import Output, argv_of
    from orthograd_cli.cli.progress import progress
    from orthograd_cli.errors import UsageError
    from orthograd_cli.jobs.compare import CompareFailed, run_compare, table_rows
    from orthograd_cli.jobs.proof import Proof
    from orthograd_cli.jobs.sweep import parse_sweep
    from orthograd_cli.recipe import load_recipe
    from orthograd_cli.requirements import EXIT_NOT_MET

    if not forget_csv or not retain_csv:
        raise UsageError("compare needs --forget and --retain manifests", "see `orthograd compare --help`")
    output = Output(as_json=as_json, quiet=quiet, log_format=log_format)
    overrides = (overrides or []) + ([f"method.stop.max_minutes={max_minutes}"] if max_minutes else [])
    spec, _ = load_recipe(recipe, overrides)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    proof = Proof.of(spec, require, "compare", reference, argv_of(ctx))
    manifests = {"forget": forget_csv, "retain": retain_csv, "test": test_csv, "forget_test": forget_test_csv}
    proof.check(manifests, spec, original=True)  # before any model is read
    from orthograd_cli.jobs.resume import find_resumable
    from orthograd_cli.preflight import preflight

    find_resumable(out, "compare", resume)
    preflight(model, manifests, out, overwrite)  # before torch is imported
    if dry_run:
        from orthograd_cli.cli.output import show_plan

        show_plan(output, "compare", model, manifests, spec, arch, probe=probe, out=out, methods=names, seeds=seeds)
        return

    took: dict[str, list[float]] = {}

    def announce(method, seed, run):
        said = {"ok": "ok", "not_met": "ran, requirements not met"}.get(run.status, f"failed: {run.reason}")
        took.setdefault(method, []).append(run.wall_s or 0.0)
        left = seeds - len(took[method])
        estimate = f"; about {sum(took[method]) / len(took[method]) * left:.0f} s more for {method}" if left else ""
        output.info(f"{method} seed {seed}: {said}{estimate}")

    try:
        with progress(enabled=not quiet, log_format=log_format) as bar:
            report = run_compare(str(model), manifests, spec, names, seeds, str(out), overwrite, arch, observer=bar,
                                 on_run=announce, sweep=parse_sweep(sweep) if sweep else None, select=select,
                                 proof=proof, resume=resume)
    except CompareFailed as failed:
        if as_json:  # pipelines still get the report, with every run's reason, before the error line
            output.result(failed.report, lambda: None)
        raise

    def human() -> None:
        header, body = table_rows(report)
        table = Table(title=f"orthograd compare ({report.mode}-wise, {seeds} seed(s)): passing methods first, "
                            "then by UIS", title_justify="left")
        for column in header:
            table.add_column(column, justify="left" if column == "method" else "right")
        for cells in body:
            table.add_row(*cells)
        output.table(table)
        for row in report.summary:
            for reason in row.failures:
                output.line(f"{row.method}: {reason}")
        output.line(f"requirements: {', '.join(report.requirements)}")
        output.line(f"passed: {', '.join(report.passing_methods) or 'no method'}")
        output.line(f"wrote {out}/compare.json, compare.csv, compare.md, compare.png")

    output.result(report, human)
    if not report.passing_methods:
        output.warn("no method met every requirement in every run (see each run's verdict in compare.json)")
        raise typer.Exit(EXIT_NOT_MET)
