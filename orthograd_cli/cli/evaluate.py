"""`orthograd evaluate`: measure a checkpoint on forget/retain/test sets."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from orthograd_cli.cli import options

EPILOG = """\
Examples:

  orthograd evaluate run/model.safetensors --forget forget.csv --test test.csv --original model.safetensors

  orthograd evaluate model.safetensors --test test.csv --json | jq .metrics.test_acc.value

  orthograd evaluate run/model.safetensors -f voice/forget.csv --forget-test voice/forget_test.csv
  -t voice/test.csv --original asr.safetensors --reference retrained_without_voice.safetensors

  orthograd evaluate run/model.safetensors -f forget.csv -t test.csv --reference retrained.safetensors
  --require 'forget_loss_ks.p>=0.05' --require 'privleak>=-20'     # exit 5 when one fails

With --reference (the gold standard: a model retrained without the forget data) the report gives
each metric's gap to it and the metrics that compare with it (forget_loss_ks, forget_loss_emd,
privleak, tow, avg_gap). An output of `orthograd forget` is measured in the mode its run used.
Speech models report WER and word accuracy max(0, 1 − WER).
"""


def evaluate(
    model: Annotated[Path, typer.Argument(help="Checkpoint to measure: a .safetensors file or a Hugging Face model folder.")],
    forget_csv: options.Forget = None,
    retain_csv: options.Retain = None,
    test_csv: options.Test = None,
    forget_test_csv: options.ForgetTest = None,
    original: Annotated[Optional[Path], typer.Option("--original", help="The model before unlearning (for UIS).")] = None,
    reference: options.Reference = None,
    require: options.Require = None,
    mode: Annotated[Optional[str], typer.Option(
        "--mode", help="sample or class: which UIS to report (default: the mode an orthograd output records, "
                       "else sample).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write the report to this JSON file.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse an --original that is not the model's recorded "
                                                          "base (default: a warning).")] = False,
    recipe: options.Recipe = None,
    overrides: options.Set = None,
    arch: options.Arch = None,
    dry_run: options.DryRun = False,
    as_json: options.Json = False,
    quiet: options.Quiet = False,
    ctx: typer.Context = None,
) -> None:
    """Accuracy (WER for speech) on each set; with --original, UIS; with --reference, gaps to it; and an MIA score."""
    from orthograd_cli.cli.output import Output, argv_of, exit_on_verdict, metrics_table, verdict_table
    from orthograd_cli.errors import UsageError
    from orthograd_cli.jobs.evaluate import run_evaluate
    from orthograd_cli.jobs.proof import Proof
    from orthograd_cli.recipe import load_recipe

    manifests = {"forget": forget_csv, "forget_test": forget_test_csv, "retain": retain_csv, "test": test_csv}
    if not any(manifests.values()):
        raise UsageError("evaluate needs at least one of --forget, --forget-test, --retain, --test")
    spec, _ = load_recipe(recipe, (overrides or []) + ([f"eval.mode={mode}"] if mode else []))
    output = Output(as_json=as_json, quiet=quiet)
    proof = Proof.of(spec, require, "evaluate", reference, argv_of(ctx))
    proof.check(manifests, spec, original=original is not None,  # before any model is read
                mode_known="mode" in spec.eval.model_fields_set)
    from orthograd_cli.preflight import preflight

    preflight(model, manifests)  # before torch is imported
    if dry_run:
        from orthograd_cli.cli.output import show_plan

        show_plan(output, "evaluate", model, manifests, spec, arch)
        return
    report = run_evaluate(str(model), manifests, spec, str(original) if original else None, arch,
                          str(reference) if reference else None, strict, str(out) if out else None, proof)
    for note in report.notes:
        output.info(f"note: {note}")
    for warning in report.warnings:
        output.warn(warning)

    def human() -> None:
        columns = {"model": report.metrics}
        if report.original_metrics is not None:
            columns["original"] = report.original_metrics
        if report.reference_metrics is not None:
            columns["reference"] = report.reference_metrics
        output.table(metrics_table(f"orthograd evaluate {model} ({report.mode}-wise)", columns))
        output.table(verdict_table(report.verdict))

    output.result(report, human)
    exit_on_verdict(output, report.verdict)
