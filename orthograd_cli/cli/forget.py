"""`orthograd forget`: the main job."""

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from orthograd_cli.cli import options

EPILOG = """\
Examples:

  orthograd forget model.safetensors --forget forget.csv --retain retain.csv --test test.csv --out run/

  orthograd forget model.safetensors -f class7/forget.csv --retain class7/retain.csv -t class7/test.csv
  --recipe resnet18_digits_class --out run/ --set method.retain_batch_size=32 --json

  orthograd forget vit_folder/ -f class7/forget.csv --retain class7/retain.csv -t test.csv
  --recipe vit_hf_digits_class --out run/      # a Hugging Face folder in, a model folder out

Methods (--set method.name=...; their own settings are recipe keys method.<name>.<key>):

\b
{methods}

Speech (task: asr): forget one speaker and keep the others' WER, e.g.

  orthograd forget asr.safetensors -f voice/forget.csv --retain voice/retain.csv -t voice/test.csv
  --forget-test voice/forget_test.csv --recipe wav2vec2_model_espeak_speaker --out run/ --plot run.png

  orthograd forget whisper_folder/ -f voice/forget.csv --retain voice/retain.csv -t voice/test.csv
  --forget-test voice/forget_test.csv --recipe whisper_espeak_speaker --out run/   # Whisper (asr_seq2seq)

Interrupted (SIGTERM, Ctrl-C, SIGKILL, a crash)? The same command with --resume continues it, and
writes what the uninterrupted run would have written:

  orthograd forget model.safetensors -f forget.csv --retain retain.csv -t test.csv --out run/ --resume

A model trained elsewhere? --tune first tries settings on validation splits under a damage limit and
runs the cheapest that meets it (every candidate is in the report):

  orthograd forget model.safetensors -f forget.csv --retain retain.csv -t test.csv --out run/ --tune
  --tune-budget 6

Check everything and see the plan (sets, LoRA targets, backend, a peak-memory estimate) without
running; --probe N times N real steps:

  orthograd forget model.safetensors -f forget.csv --retain retain.csv -t test.csv --out run/ --dry-run

Several processes (data-parallel OrthoGrad; the result equals one process's to float32 rounding):

  orthograd forget model.safetensors -f forget.csv --retain retain.csv -t test.csv --out run/ --nproc 2

Prove it (exit 5 when a requirement fails; the outputs are written either way):

  orthograd forget model.safetensors -f forget.csv --retain retain.csv -t test.csv --out run/
  --reference retrained.safetensors --require 'forget_loss_ks.p>=0.05'
  --require 'test_acc>=original_test_acc-0.02'

By default a run must reach its stop target (target_reached), stay better than chance on the
retain and test sets (not_at_chance) and keep its test accuracy within eval.max_test_drop (0.02;
speech: a WER rise of 0.03) of the original's (test_kept); --require '!target_reached' drops a built-in
check.

Writes run/model.safetensors (merged), run/adapter/ (peft LoRA adapter), run/README.md (model card)
and run/report.json.
"""


def forget(
    model: Annotated[Path, typer.Argument(help="Checkpoint to unlearn from: a .safetensors file or a Hugging Face model folder.")],
    forget_csv: options.Forget = None,
    retain_csv: options.Retain = None,
    test_csv: options.Test = None,
    forget_test_csv: options.ForgetTest = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (refused if it exists).")] = Path("run"),
    require: options.Require = None,
    reference: options.Reference = None,
    max_minutes: options.MaxMinutes = None,
    tune: Annotated[bool, typer.Option(
        "--tune", help="First search the step length and α (or method.tune.space) on validation splits carved from "
                       "the forget and retain sets, under a damage limit (method.tune.max_damage, default 0.02); "
                       "the cheapest setting that meets it runs. Same as --set method.tune.enabled=true.")] = False,
    tune_budget: Annotated[Optional[int], typer.Option(
        "--tune-budget", min=1, help="The most candidate runs --tune tries (default 8; method.tune.budget_runs).")] = None,
    log_format: options.LogFormat = "auto",
    resume: options.Resume = False,
    dry_run: options.DryRun = False,
    probe: options.Probe = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out folder.")] = False,
    recipe: options.Recipe = None,
    overrides: options.Set = None,
    arch: options.Arch = None,
    as_json: options.Json = False,
    quiet: options.Quiet = False,
    plot: Annotated[Optional[Path], typer.Option(
        "--plot", help="Also draw the trade-off over the run (forget vs test, at each check) as a PNG.")] = None,
    nproc: Annotated[int, typer.Option(
        "--nproc", min=1, help="Run the steps as N processes on this machine (data-parallel OrthoGrad; gloo on "
                               "the CPU, NCCL on GPUs). Same as torchrun --standalone --nproc-per-node N "
                               "-m orthograd_cli forget ...")] = 1,
    oversubscribe: Annotated[bool, typer.Option(
        "--oversubscribe",
        help="Allow --nproc above the number of CPU cores (the processes then share them).")] = False,
    ctx: typer.Context = None,
) -> None:
    """Make MODEL forget the --forget samples while keeping what --retain shows (OrthoGrad)."""
    from orthograd_cli.cli.output import Output, argv_of, exit_on_verdict, metrics_table, tuning_table, verdict_table
    from orthograd_cli.cli.progress import progress
    from orthograd_cli.errors import UsageError
    from orthograd_cli.jobs.forget import run_forget
    from orthograd_cli.jobs.proof import Proof
    from orthograd_cli.recipe import load_recipe

    if not forget_csv or not retain_csv:
        raise UsageError("forget needs --forget and --retain manifests", "see `orthograd forget --help`")
    from orthograd_cli import distributed

    secondary = distributed.launched() and os.environ.get("RANK", "0") != "0"  # rank 0 alone reports
    quiet = quiet or secondary
    output = Output(as_json=as_json, quiet=quiet, log_format=log_format)
    overrides = (overrides or []) + ([f"method.stop.max_minutes={max_minutes}"] if max_minutes else [])
    overrides += (["method.tune.enabled=true"] if tune else []) + \
        ([f"method.tune.budget_runs={tune_budget}"] if tune_budget else [])
    spec, _ = load_recipe(recipe, overrides)
    manifests = {"forget": forget_csv, "retain": retain_csv, "test": test_csv, "forget_test": forget_test_csv}
    extra_outputs = (plot,) if plot else ()
    proof = Proof.of(spec, require, "forget", reference, argv_of(ctx))
    proof.check(manifests, spec, original=True)  # before any model is read
    if not secondary:  # the paths and the output folder, before torch is imported
        from orthograd_cli.jobs.resume import find_resumable
        from orthograd_cli.preflight import preflight

        find_resumable(out, "forget", resume)
        preflight(model, manifests, out, overwrite)
    if dry_run:
        from orthograd_cli.cli.output import show_plan

        show_plan(output, "forget", model, manifests, spec, arch, nproc, probe, out)
        return
    if nproc > 1 and not distributed.launched():  # this process checks once, then starts and watches N ranks
        from orthograd_cli.cli.launch import check_process_count, launch
        from orthograd_cli.jobs.forget import check_forget
        from orthograd_cli.runtime import pick_device

        check_process_count(nproc, pick_device(spec.device), oversubscribe)
        check_forget(str(model), manifests, spec, str(out), nproc, overwrite, arch, extra_outputs, proof, resume)
        raise typer.Exit(launch(nproc, argv_of(ctx)))
    ignored = distributed.ignored_variables()
    if ignored:
        output.warn(f"ignoring {', '.join(ignored)} in the environment: this process was not started as a rank (by "
                    "--nproc or torchrun), so it runs alone")
    with progress(enabled=not quiet, log_format=log_format) as bar:
        report = run_forget(str(model), manifests, spec, str(out), overwrite=overwrite, arch=arch, observer=bar,
                            extra_outputs=extra_outputs, proof=proof, resume=resume)
    if report is None:  # a rank other than 0
        return
    for note in report.notes:
        if note not in report.warnings:
            output.info(f"note: {note}")
    for warning in report.warnings:
        output.warn(warning)
    if plot:
        from orthograd_cli.plots import tradeoff_plot

        tradeoff_plot(report, plot)

    def human() -> None:
        if report.tuning is not None:
            output.table(tuning_table(report.tuning))
        columns = {"before": report.metrics.before, "after": report.metrics.after}
        if report.reference_metrics is not None:
            columns["reference"] = report.reference_metrics
        output.table(metrics_table(f"orthograd forget ({report.mode}-wise): {report.steps} steps, "
                                   f"{report.stop_message}", columns))
        output.table(verdict_table(report.verdict))
        output.line(f"wrote {', '.join(report.outputs.values())}")
        output.line("verdict: " + ("every requirement met" if report.verdict.passed else "requirements NOT met"))

    output.result(report, human)
    exit_on_verdict(output, report.verdict)
