"""`orthograd inspect`: what a checkpoint holds and, with data, how forget and retain gradients conflict."""

from __future__ import annotations

from collections import Counter, OrderedDict
from pathlib import Path

from orthograd_cli.models.checkpoint import read_checkpoint
from orthograd_cli.models.registry import guess_arch
from orthograd_cli.recipe import Recipe
from orthograd_cli.report import InspectReport


def checkpoint_view(model_path: str, arch: str | None = None) -> InspectReport:
    checkpoint = read_checkpoint(model_path)
    state = checkpoint.state_dict
    given = arch or checkpoint.meta("arch")
    groups: OrderedDict[str, dict] = OrderedDict()
    for key, tensor in state.items():
        group = groups.setdefault(key.split(".")[0], {"tensors": 0, "parameters": 0})
        group["tensors"] += 1
        group["parameters"] += tensor.numel()
    return InspectReport(
        path=str(model_path),
        sha256=checkpoint.sha256,
        arch=given or guess_arch(state),
        arch_source="given" if arch else ("metadata" if given else "guessed"),
        tensors=len(state),
        parameters=int(sum(t.numel() for t in state.values())),
        dtypes=dict(Counter(str(t.dtype).removeprefix("torch.") for t in state.values())),
        metadata=checkpoint.metadata,
        key_groups=groups,
    )


def gradient_conflict(model_path: str, manifests: dict, recipe: Recipe, arch: str | None = None,
                      batches: int = 1, top: int = 5) -> dict:
    """Conflict between the forget gradient and each retain sample's, over the recipe's trainable
    parameters (see gradients/conflict.py for what "in conflict" means)."""
    import torch

    from orthograd_cli.gradients import conflict
    from orthograd_cli.gradients.per_sample import batch_grad, per_sample_grads
    from orthograd_cli.gradients.projection import project
    from orthograd_cli.loading import load_everything
    from orthograd_cli.models.lora import trainable_model
    from orthograd_cli.runtime import Runtime

    loaded = load_everything(model_path, recipe, manifests, arch)
    mean_loss = loaded.task.mean_loss
    backend = recipe.method.per_sample.backend
    backend = "auto" if backend == "gram" else backend  # the statistics below need the rows themselves
    device = Runtime.from_recipe(recipe).device
    model, params = trainable_model(loaded.build_model(device), recipe, loaded.info)
    forget_set, retain_set = loaded.sets["forget"], loaded.sets["retain"]
    k = min(recipe.method.retain_batch_size, len(retain_set))
    generator = torch.Generator().manual_seed(recipe.seed)
    cosines, ids, mean_cos, layer_cos, removed, spectra = [], [], [], {}, {"per_tensor": [], "global": []}, []
    for _ in range(batches):
        fi = torch.randperm(len(forget_set), generator=generator)[:recipe.method.unlearn_batch_size]
        ri = torch.randperm(len(retain_set), generator=generator)[:k]
        g_u, _ = batch_grad(model, params, *forget_set.batch(fi, device), mean_loss)
        rows, _ = per_sample_grads(model, params, *retain_set.batch(ri, device),
                                   mean_loss, backend, recipe.method.per_sample.chunk_size)
        cosines.append(conflict.cosines_with_each(g_u, rows).cpu())
        ids += [retain_set.manifest.samples[i].id for i in ri.tolist()]
        mean_cos.append(conflict.cosine(torch.cat([g.reshape(-1) for g in g_u.values()]),
                                        torch.cat([r.mean(0).reshape(-1) for r in rows.values()])))
        for name in params:
            layer = name.split(".lora_")[0].removeprefix("base_model.model.")
            layer_cos.setdefault(layer, []).append(conflict.cosine(g_u[name], rows[name].mean(0)))
        for scope in removed:
            _, stats = project(g_u, rows, scope, recipe.method.projection.rank_tol, recipe.method.projection.solver)
            removed[scope].append(1 - float(stats.kept_norm_ratio))
        spectra.append(unit_row_spectrum(rows, k))
    all_cos = torch.cat(cosines)
    s = spectra[0]
    strongest = torch.argsort(all_cos, descending=True)[:top]  # the largest cosines: ascent hurts them most
    return {
        "batches": batches,
        "retain_batch_size": k,
        "trainable_parameters": int(sum(p.numel() for p in params.values())),
        "cosine_forget_vs_mean_retain": sum(mean_cos) / len(mean_cos),
        "cosine_forget_vs_mean_retain_per_layer": {n: sum(v) / len(v) for n, v in layer_cos.items()},
        "cosine_forget_vs_each_retain": conflict.quantiles(all_cos),
        "share_in_conflict": float(conflict.conflict_share(all_cos)),
        "conflict_definition": conflict.DEFINITION,
        "retain_singular_values": [float(v) for v in s[:10]],
        "retain_effective_rank": conflict.effective_rank(s),
        "retain_numerical_rank": int((s > recipe.method.projection.rank_tol * s[0]).sum()),
        "share_of_forget_grad_removed": {scope: sum(v) / len(v) for scope, v in removed.items()},
        "strongest_conflicts": [{"id": ids[i], "cosine": float(all_cos[i])} for i in strongest.tolist()
                                if all_cos[i] > 0],
        # every retain sample's cosine with g_u, so anyone can recompute the share
        "retain_cosines": [{"id": sample_id, "cosine": float(c)} for sample_id, c in zip(ids, all_cos.tolist())],
    }


def unit_row_spectrum(rows: dict, k: int):
    """The singular values of the k retain gradients scaled to unit norm, as the projection sees them
    (gradients/projection.py counts rank on unit rows): a sample with a large loss must not make the others'
    directions look negligible."""
    import torch

    flat = torch.cat([r.reshape(k, -1) for r in rows.values()], dim=1).double()
    return torch.linalg.svdvals(flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-300)).cpu()


def conflict_histogram(cosines: list[float], path: str) -> None:
    """Histogram of cos(g_u, g_i) over the retain samples, the conflicting side (> 0) shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from orthograd_cli.models.checkpoint import atomic_path

    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.hist(cosines, bins=30, color="#4c72b0")
    left, right = axes.get_xlim()
    left, right = min(left, -0.05), max(right, 0.05)  # keep both sides of 0 in view
    axes.axvspan(0, right, color="#dd8452", alpha=0.2, label="in conflict: ascent raises the sample's loss")
    axes.axvline(0, color="black", linewidth=1)
    axes.set_xlim(left, right)
    axes.set_xlabel("cosine(forget gradient g_u, retain sample gradient g_i)")
    axes.set_ylabel("retain samples")
    axes.set_title("Gradient conflict: right of 0, ascent on the forget set raises that sample's loss")
    axes.title.set_fontsize(9)
    axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    with atomic_path(Path(path)) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)
