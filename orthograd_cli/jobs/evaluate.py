"""`orthograd evaluate`: accuracy (WER for speech) on each given set; with the original model, UIS;
the MIA; and with a reference model (the gold standard: retrained without the forget data), each
metric's gap to it."""

from __future__ import annotations

from orthograd_cli.loading import load_checkpoint_and_info, load_everything, pick_device
from orthograd_cli.metrics.evaluation import measure, metrics_from
from orthograd_cli.recipe import Recipe
from orthograd_cli.report import provenance


def gaps_to_reference(metrics: dict, reference: dict) -> dict:
    """metric − reference metric, for every metric both reports have (0 = behaves like the reference)."""
    return {name: entry["value"] - reference[name]["value"] for name, entry in metrics.items()
            if name in reference and entry["value"] is not None and reference[name]["value"] is not None}


def run_evaluate(model_path: str, manifests: dict, recipe: Recipe, recipe_sha256: str, original_path: str | None = None,
                 arch: str | None = None, reference_path: str | None = None) -> dict:
    from orthograd_cli.models.registry import load_model

    loaded = load_everything(model_path, recipe, manifests, arch)
    original = load_checkpoint_and_info(original_path, recipe, arch) if original_path else None
    reference = load_checkpoint_and_info(reference_path, recipe, arch) if reference_path else None
    device = pick_device(recipe.device)
    batch, mode, task = recipe.eval.batch_size, recipe.eval.mode, loaded.info.task

    def results_of(model):
        return measure(model.to(device).eval(), loaded.sets, batch, device, task)

    def metrics_of(results):
        return metrics_from(results, mode, original_results, recipe.eval.mia, recipe.seed, task)

    results = results_of(loaded.build_model(device))
    original_results = results_of(load_model(*original)) if original is not None else None
    report = {
        "command": "evaluate",
        "model": str(model_path),
        "task": task,
        "mode": mode,
        "metrics": metrics_of(results),
        "provenance": provenance(device, recipe.seed, model=loaded.checkpoint.sha256,
                                 original=original[0].sha256 if original else None,
                                 reference=reference[0].sha256 if reference else None, recipe=recipe_sha256,
                                 **{f"manifest_{n}": m.sha256 for n, m in loaded.manifests.items()}),
    }
    if original_results is not None:
        report["original_metrics"] = metrics_of(original_results)
    if reference is not None:
        report["reference"] = str(reference_path)
        report["reference_metrics"] = metrics_of(results_of(load_model(*reference)))
        report["gap_to_reference"] = gaps_to_reference(report["metrics"], report["reference_metrics"])
    return report
