"""`orthograd forget`: the main job."""

from pathlib import Path
from typing import Annotated

import typer

from orthograd_cli.cli import options

EPILOG = """\
Examples:

  orthograd forget model.safetensors --forget forget.csv --retain retain.csv --test test.csv --out run/

  orthograd forget model.safetensors -f class7/forget.csv --retain class7/retain.csv -t class7/test.csv
  --recipe resnet18_digits_class --out run/ --set method.retain_batch_size=32 --json

Methods (--set method.name=...): orthograd (default), finetune, neggrad, neggrad_plus, random_label,
scrub, salun, gdr_gma; random_label and salun relabel samples, so they are classification-only.

Writes run/model.safetensors (merged), run/adapter/ (peft LoRA adapter) and run/report.json.
"""


def forget(
    model: Annotated[Path, typer.Argument(help="Checkpoint (.safetensors) to unlearn from.")],
    forget_csv: options.Forget = None,
    retain_csv: options.Retain = None,
    test_csv: options.Test = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (refused if it exists).")] = Path("run"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out folder.")] = False,
    recipe: options.Recipe = None,
    overrides: options.Set = None,
    arch: options.Arch = None,
    as_json: options.Json = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Make MODEL forget the --forget samples while keeping what --retain shows (OrthoGrad)."""
    from orthograd_cli.cli.output import Output, metrics_table
    from orthograd_cli.errors import UsageError
    from orthograd_cli.jobs.forget import run_forget
    from orthograd_cli.recipe import load_recipe

    if not forget_csv or not retain_csv:
        raise UsageError("forget needs --forget and --retain manifests", "see `orthograd forget --help`")
    spec, sha = load_recipe(recipe, overrides)
    output = Output(as_json=as_json, quiet=quiet)
    report = run_forget(str(model), {"forget": forget_csv, "retain": retain_csv, "test": test_csv}, spec, sha,
                        str(out), overwrite=overwrite, arch=arch, progress=not quiet)

    def human() -> None:
        output.table(metrics_table(f"orthograd forget ({report['mode']}-wise): {report['steps']} steps, "
                                   f"{report['stop_reason']}",
                                   {"before": report["metrics"]["before"], "after": report["metrics"]["after"]}))
        print(f"wrote {out}/model.safetensors, {out}/adapter/, {out}/report.json" if spec.lora.enabled
              else f"wrote {out}/model.safetensors, {out}/report.json")

    output.result(report, human)
