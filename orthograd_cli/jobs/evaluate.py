"""`orthograd evaluate`: the task's accuracy (and WER for speech) on each given set; with the original
model, UIS; the MIA; and with a reference model (the gold standard: retrained without the forget
data), each metric's gap to it."""

from __future__ import annotations

from pathlib import Path

from orthograd_cli.errors import CheckpointError
from orthograd_cli.loading import load_checkpoint_and_info, load_everything
from orthograd_cli.models.checkpoint import Checkpoint
from orthograd_cli.metrics.evaluation import measure, metrics_from
from orthograd_cli.models.registry import load_model
from orthograd_cli.recipe import Recipe
from orthograd_cli.outputs import check_not_an_input, check_output_file
from orthograd_cli.report import Audit, EvaluateReport, Metrics, provenance, write_report
from orthograd_cli.jobs.proof import Proof, chance_check, kept_check
from orthograd_cli.metrics.reference import add_reference_metrics
from orthograd_cli.context import RunContext


def gaps_to_reference(metrics: Metrics, reference: Metrics) -> dict[str, float]:
    """metric − reference metric, for every metric both reports have (0 = behaves like the reference)."""
    return {name: entry.value - reference[name].value for name, entry in metrics.items()
            if name in reference and entry.value is not None and reference[name].value is not None}


def run_evaluate(model_path: str, manifests: dict, recipe: Recipe, original_path: str | None = None,
                 arch: str | None = None, reference_path: str | None = None, strict: bool = False,
                 out_path: str | None = None, proof: Proof | None = None) -> EvaluateReport:
    """Measure the model; with `out_path`, also write the report there (checked before any work). `proof`: the
    requirements and the command line (its reference_path is `reference_path`)."""
    proof = proof or Proof.of(recipe, None, "evaluate", reference_path)
    proof.reference_path = reference_path
    loaded = load_everything(model_path, recipe, manifests, arch, recorded_mode=True)
    recipe = loaded.recipe
    proof.check_task(loaded, original=original_path is not None)
    original = load_checkpoint_and_info(original_path, recipe, arch) if original_path else None
    reference = proof.reference(recipe, arch)
    mismatch = check_original(loaded.checkpoint, original[0], strict) if original else None
    if out_path:
        check_output_file(out_path, [*loaded.input_paths, *(c.path for c, _ in filter(None, (original, reference)))])
        check_not_an_input(out_path, loaded.sample_paths, resolved=True)
    context = RunContext.of(recipe)
    runtime = context.runtime
    batch, mode, task = recipe.eval.batch_size, recipe.eval.mode, loaded.task

    def results_of(model):
        return measure(model.to(runtime.device).eval(), loaded.sets, batch, runtime.device, task)

    def metrics_of(results):
        return metrics_from(results, mode, task, original_results, recipe.eval.mia, recipe.seed)

    results = results_of(loaded.build_model(runtime.device))
    original_results = results_of(load_model(*original)) if original is not None else None
    metrics = metrics_of(results)
    original_metrics = metrics_of(original_results) if original_results is not None else None
    reference_metrics, gaps = None, None
    reference_results = proof.reference_results(loaded, runtime.device)
    if reference_results is not None:
        reference_metrics = metrics_of(reference_results)
        gaps = gaps_to_reference(metrics, reference_metrics)
        add_reference_metrics(metrics, results, reference_metrics, reference_results, mode, task.accuracy_name)
        if original_metrics is not None:
            add_reference_metrics(original_metrics, original_results, reference_metrics, reference_results, mode,
                                  task.accuracy_name)
    at_chance = chance_check(results, task, loaded.info)
    allowed_drop = recipe.eval.test_drop_allowed(task)
    report = EvaluateReport(
        model=str(model_path), task=task.name, mode=mode, metrics=metrics, notes=loaded.notes,
        warnings=([mismatch] if mismatch else []) + ([] if at_chance[0] else
                                                     [f"the model is {at_chance[1]}: {task.chance_hint}"]),
        original_metrics=original_metrics, reference=reference_path, reference_metrics=reference_metrics,
        gap_to_reference=gaps,
        verdict=proof.gate.verdict(metrics, original_metrics, reference_metrics,
                                   checks={"not_at_chance": at_chance,
                                           "test_kept": kept_check(metrics, original_metrics, allowed_drop)},
                                   hints={"not_at_chance": f"{task.chance_hint}; --require '!not_at_chance' accepts it",
                                          "test_kept": f"the test accuracy fell more than eval.max_test_drop "
                                                       f"({allowed_drop:g}) below the original's; --require "
                                                       "'!test_kept' accepts it",
                                          "comparison": "the report is written for inspection"}),
        audit=Audit(command_line=proof.command_line, data_sha256=loaded.data_sha256),
        provenance=provenance(runtime.device, recipe.seed, model=loaded.checkpoint.sha256,
                              original=original[0].sha256 if original else None,
                              reference=reference[0].sha256 if reference else None, recipe=context.recipe_sha256,
                              **{f"manifest_{n}": m.sha256 for n, m in loaded.manifests.items()}))
    if out_path:
        write_report(report, Path(out_path))
    return report


def check_original(model: Checkpoint, original: Checkpoint, strict: bool) -> str | None:
    """The original must be the base the model was unlearned from, where the model records it
    (`orthograd.sha256.base`): otherwise UIS compares against the wrong model. A note, or with
    `strict` an error."""
    recorded = model.meta("sha256.base")
    if recorded is None or recorded == original.sha256:
        return None
    message = (f"{original.path} is not the model {model.path} was unlearned from (recorded base sha256 "
               f"{recorded[:12]}…, given {original.sha256[:12]}…)")
    if strict:
        raise CheckpointError(message, "pass the original checkpoint the run started from")
    return message + "; UIS and original_* compare against it anyway"
