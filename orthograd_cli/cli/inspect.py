"""`orthograd inspect`: a checkpoint's contents; with --forget/--retain, gradient-conflict statistics."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from orthograd_cli.cli import options

EPILOG = """\
Examples:

  orthograd inspect model.safetensors

  orthograd inspect model.safetensors --forget forget.csv --retain retain.csv --plot conflict.png
"""


def inspect(
    model: Annotated[Path, typer.Argument(help="Checkpoint to inspect: a .safetensors file or a Hugging Face model folder.")],
    forget_csv: options.Forget = None,
    retain_csv: options.Retain = None,
    batches: Annotated[int, typer.Option("--batches", min=1, help="Forget/retain batches to average over.")] = 1,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write a histogram PNG of retain cosines.")] = None,
    recipe: options.Recipe = None,
    overrides: options.Set = None,
    arch: options.Arch = None,
    as_json: options.Json = False,
    quiet: options.Quiet = False,
) -> None:
    """Architecture, parameter count, dtypes, metadata; with data, how forget and retain gradients conflict."""
    from rich.table import Table

    from orthograd_cli.cli.output import Output
    from orthograd_cli.errors import UsageError
    from orthograd_cli.jobs.inspect import checkpoint_view, conflict_histogram, gradient_conflict
    from orthograd_cli.recipe import load_recipe

    if bool(forget_csv) != bool(retain_csv):
        raise UsageError("gradient-conflict statistics need both --forget and --retain")
    output = Output(as_json=as_json, quiet=quiet)
    report = checkpoint_view(str(model), arch)
    if plot:
        from orthograd_cli.outputs import check_output_file

        check_output_file(plot, [p for p in (model, forget_csv, retain_csv) if p])
    if forget_csv:
        spec, _ = load_recipe(recipe, overrides)
        conflict = gradient_conflict(str(model), {"forget": forget_csv, "retain": retain_csv}, spec, arch, batches)
        report.gradient_conflict = conflict
        if plot:
            conflict_histogram([entry["cosine"] for entry in conflict["retain_cosines"]], str(plot))

    def human() -> None:
        table = Table(title=f"{model}", title_justify="left", show_header=False)
        table.add_row("architecture", f"{report.arch} ({report.arch_source})")
        table.add_row("parameters", f"{report.parameters:,} in {report.tensors} tensors")
        table.add_row("dtypes", ", ".join(f"{k}: {v}" for k, v in report.dtypes.items()))
        for key, value in report.metadata.items():
            table.add_row(key, value[:80])
        table.add_row("key groups", ", ".join(f"{k} ({v['parameters']:,})" for k, v in report.key_groups.items()))
        output.table(table)
        if report.gradient_conflict is not None:
            c = report.gradient_conflict
            each = c["cosine_forget_vs_each_retain"]
            conflict_table = Table(title="gradient conflict (forget vs retain)", title_justify="left", show_header=False)
            conflict_table.add_row("cos(g_u, mean retain grad)", f"{c['cosine_forget_vs_mean_retain']:+.4f}")
            conflict_table.add_row("cos(g_u, each retain grad)", "  ".join(
                f"{k} {each[k]:+.3f}" for k in ("min", "q1", "median", "q3", "max")))
            conflict_table.add_row("share of retain samples in conflict (cos > 0: ascent raises their loss)",
                                   f"{c['share_in_conflict']:.1%}")
            conflict_table.add_row("retain rank (numerical / effective)",
                                   f"{c['retain_numerical_rank']} / {c['retain_effective_rank']:.1f} of k={c['retain_batch_size']}")
            conflict_table.add_row("share of ‖g_u‖ removed (per_tensor / global)",
                                   f"{c['share_of_forget_grad_removed']['per_tensor']:.1%} / "
                                   f"{c['share_of_forget_grad_removed']['global']:.1%}")
            conflict_table.add_row("strongest conflicts", ", ".join(
                f"{s['id']} ({s['cosine']:+.2f})" for s in c["strongest_conflicts"]) or "none")
            output.table(conflict_table)
            if plot:
                output.line(f"wrote {plot}")

    output.result(report, human)
