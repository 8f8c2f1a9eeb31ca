"""`orthograd evaluate`: accuracy on each given set; with the original model, UIS; and the MIA."""

from __future__ import annotations

from orthograd_cli.loading import load_checkpoint_and_info, load_everything, pick_device
from orthograd_cli.metrics.evaluation import measure, metrics_from
from orthograd_cli.recipe import Recipe
from orthograd_cli.report import provenance


def run_evaluate(model_path: str, manifests: dict, recipe: Recipe, recipe_sha256: str, original_path: str | None = None,
                 arch: str | None = None) -> dict:
    loaded = load_everything(model_path, recipe, manifests, arch)
    original = load_checkpoint_and_info(original_path, recipe, arch) if original_path else None
    device = pick_device(recipe.device)
    batch = recipe.eval.batch_size
    results = measure(loaded.build_model(device), loaded.sets, batch, device)
    original_results = None
    if original is not None:
        from orthograd_cli.models.registry import load_model

        original_model = load_model(*original).to(device).eval()
        original_results = measure(original_model, loaded.sets, batch, device)
    report = {
        "command": "evaluate",
        "model": str(model_path),
        "mode": recipe.eval.mode,
        "metrics": metrics_from(results, recipe.eval.mode, original_results, recipe.eval.mia, recipe.seed),
        "provenance": provenance(device, recipe.seed, model=loaded.checkpoint.sha256,
                                 original=original[0].sha256 if original else None, recipe=recipe_sha256,
                                 **{f"manifest_{n}": m.sha256 for n, m in loaded.manifests.items()}),
    }
    if original_results is not None:
        report["original_metrics"] = metrics_from(original_results, recipe.eval.mode, original_results,
                                                  recipe.eval.mia, recipe.seed)
    return report
