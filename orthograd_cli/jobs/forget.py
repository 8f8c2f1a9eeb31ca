"""`orthograd forget`: checkpoint + forget/retain sets → merged checkpoint, adapter and report.

Everything is written into a temporary folder beside `--out` and renamed into place at the end,
so an interrupted or failed run leaves no half-written output.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from orthograd_cli.errors import UsageError
from orthograd_cli.loading import Loaded, load_everything, pick_device
from orthograd_cli.metrics.evaluation import measure, metrics_from
from orthograd_cli.models.checkpoint import Checkpoint, commit_out_dir, prepare_out_dir, save_checkpoint
from orthograd_cli.models.registry import load_model
from orthograd_cli.recipe import Recipe
from orthograd_cli.report import provenance, provenance_metadata, write_report

ADAM_NOTE = ("method.optimizer=adam rescales each coordinate of d, so the update is no longer exactly "
             "orthogonal to the retain gradients (the first-order guarantee holds only for normalized_sgd)")


def split_holdout(forget_set, share: float, seed: int):
    """(update part, held-out part) of the forget set; the held-out part never drives an update."""
    import torch

    if share <= 0:
        return forget_set, None
    order = torch.randperm(len(forget_set), generator=torch.Generator().manual_seed(seed + 1))
    n_holdout = max(1, int(round(share * len(forget_set))))
    if n_holdout >= len(forget_set):
        raise UsageError(f"method.stop.forget_holdout={share} leaves no forget samples to unlearn on")
    return forget_set.subset(order[n_holdout:].sort().values), forget_set.subset(order[:n_holdout].sort().values)


def stop_target(recipe: Recipe, before: dict) -> float:
    if recipe.method.stop.target_forget_acc is not None:
        return recipe.method.stop.target_forget_acc
    if recipe.eval.mode == "class":
        return 0.0
    if "test" not in before:
        raise UsageError("sample-wise unlearning stops at the original test accuracy, but no --test set was given",
                         "pass --test TEST.csv or --set method.stop.target_forget_acc=0.9")
    return before["test"].accuracy


def trainable_model(model, recipe: Recipe):
    """The module to unlearn and its trainable parameters: LoRA adapters, or every weight."""
    import torch

    from orthograd_cli.gradients.per_sample import trainable_parameters

    torch.manual_seed(recipe.seed)  # LoRA's A matrices are initialised at random
    if recipe.lora.enabled:
        from orthograd_cli.models.lora import wrap_with_lora

        model = wrap_with_lora(model, recipe.lora.r, recipe.lora.alpha, recipe.lora.target_modules)
    model.eval()
    return model, trainable_parameters(model)


def check_recipe_fits_task(recipe: Recipe, task: str) -> None:
    """Refuse, before any work, method settings the task cannot run."""
    from orthograd_cli.errors import RecipeError
    from orthograd_cli.gradients.per_sample import NO_VMAP_FOR_SPEECH
    from orthograd_cli.methods import check_method_fits_task

    if task == "asr" and recipe.method.per_sample.backend == "vmap":
        raise RecipeError(*NO_VMAP_FOR_SPEECH)
    check_method_fits_task(recipe.method.name, task)


def run_forget(model_path: str, manifests: dict, recipe: Recipe, recipe_sha256: str, out_dir: str,
               overwrite: bool = False, arch: str | None = None, progress: bool = True) -> dict:
    loaded = load_everything(model_path, recipe, manifests, arch)
    return forget_loaded(loaded, recipe, recipe_sha256, out_dir, overwrite, progress)


def forget_loaded(loaded: Loaded, recipe: Recipe, recipe_sha256: str, out_dir: str, overwrite: bool = False,
                  progress: bool = True) -> dict:
    """One forget run on inputs already loaded and validated (`compare` reuses them across runs)."""
    out_dir = Path(out_dir)
    tmp_dir = prepare_out_dir(out_dir, overwrite)
    try:
        report = _forget_into(loaded, recipe, recipe_sha256, tmp_dir, progress)
        report["outputs"] = {name: str(out_dir / name) for name in ("model.safetensors", "adapter", "report.json")
                             if (tmp_dir / name).exists()}
        write_report(report, tmp_dir / "report.json")
        commit_out_dir(tmp_dir, out_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return report


def _forget_into(loaded: Loaded, recipe: Recipe, recipe_sha256: str, tmp_dir: Path, progress: bool) -> dict:
    from orthograd_cli.methods import METHODS
    from orthograd_cli.methods.loop import run_unlearning

    device = pick_device(recipe.device)
    batch, task_name, task = recipe.eval.batch_size, loaded.info.task, loaded.task
    check_recipe_fits_task(recipe, task_name)
    sets = dict(loaded.sets)
    forget_update, holdout = split_holdout(sets["forget"], recipe.method.stop.forget_holdout, recipe.seed)
    if holdout is not None:
        sets["forget_holdout"] = holdout

    model = loaded.build_model(device)
    before = measure(model, sets, batch, device, task_name)
    target = stop_target(recipe, before)
    model, params = trainable_model(model, recipe)
    direction_fn = METHODS[recipe.method.name].make(model, params, forget_update, sets["retain"], recipe.method,
                                                    task.mean_loss, recipe.seed)
    tracked = {name: sets[name] for name in ("forget_test", "test") if name in sets}
    result = run_unlearning(model, params, forget_update, sets["retain"], holdout or sets["forget"], recipe, target,
                            direction_fn, task.mean_loss, lambda m, dataset: task.score(m, dataset, batch, device),
                            device, progress, tracked)

    prov = provenance(device, recipe.seed, base=loaded.checkpoint.sha256, recipe=recipe_sha256,
                      **{f"manifest_{n}": m.sha256 for n, m in loaded.manifests.items()})
    metadata = {**loaded.checkpoint.metadata, **loaded.info.metadata(), **provenance_metadata(prov)}
    merged = _merged_weights(model, loaded, recipe, tmp_dir, metadata)
    save_checkpoint(merged, tmp_dir / "model.safetensors", metadata)

    # "after" is measured on the weights as written, so the report matches the file exactly
    unlearned = load_model(Checkpoint(path=tmp_dir / "model.safetensors", state_dict=merged), loaded.info)
    after = measure(unlearned.to(device).eval(), sets, batch, device, task_name)
    mode, mia = recipe.eval.mode, recipe.eval.mia
    report = {
        "command": "forget",
        "method": recipe.method.name,
        "task": task_name,
        "mode": mode,
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        "target_forget_acc": target,
        "wall_s": round(result.wall_s, 3),
        "trainable_parameters": int(sum(p.numel() for p in params.values())),
        "metrics": {"before": metrics_from(before, mode, before, mia, recipe.seed, task_name),
                    "after": metrics_from(after, mode, before, mia, recipe.seed, task_name)},
        "diagnostics": result.diagnostics,
        "history": result.history,
        "retain_ids_sha256": result.retain_ids_sha256,
        "notes": [ADAM_NOTE] if recipe.method.optimizer == "adam" else [],
        "recipe": recipe.model_dump(mode="json"),
        "provenance": prov,
    }
    return report


def _merged_weights(model, loaded: Loaded, recipe: Recipe, tmp_dir: Path, metadata: dict) -> dict:
    """LoRA: save the adapter, then merge it exactly as `orthograd merge` would; else the trained weights."""
    if not recipe.lora.enabled:
        state = model.state_dict()
        return {k: state[k].detach().to("cpu", v.dtype).contiguous() for k, v in loaded.checkpoint.state_dict.items()}
    from orthograd_cli.jobs.merge import merge_adapter
    from orthograd_cli.models.lora import save_adapter

    save_adapter(model, tmp_dir / "adapter", loaded.checkpoint.sha256, metadata)
    return merge_adapter(loaded.checkpoint, loaded.info, tmp_dir / "adapter")
