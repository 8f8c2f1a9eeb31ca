"""The OrthoGrad math on real gradients of a trained resnet18: per-sample backends and the projection."""

from __future__ import annotations

import pytest
import torch

from orthograd_cli.errors import RecipeError
from orthograd_cli.gradients.per_sample import batch_grad, per_sample_grads, trainable_parameters
from orthograd_cli.gradients.projection import project
from orthograd_cli.jobs.forget import trainable_model
from orthograd_cli.loading import load_checkpoint_and_info
from orthograd_cli.methods.loop import apply_update
from orthograd_cli.methods.orthograd import orthograd_direction
from orthograd_cli.models.registry import load_model
from orthograd_cli.tasks.classification import mean_loss, per_sample_losses


@pytest.fixture(scope="module")
def mid_unlearning(trained_model, recipe, image_sets):
    """LoRA-wrapped trained model after 3 OrthoGrad steps, so both LoRA factors carry gradient."""
    checkpoint, info = load_checkpoint_and_info(trained_model, recipe)
    model, params = trainable_model(load_model(checkpoint, info).eval(), recipe)
    forget, retain = image_sets["forget"], image_sets["retain"]
    for step in range(3):
        fi, ri = torch.arange(step * 8, step * 8 + 32), torch.arange(64)
        direction = orthograd_direction(model, params, (forget.inputs[fi], forget.labels[fi]),
                                        (retain.inputs[ri], retain.labels[ri]), recipe.method, mean_loss)
        apply_update(params, direction.update, 0.05, None)
    return model, params


def real_grads(model, params, image_sets, k: int):
    forget, retain = image_sets["forget"], image_sets["retain"]
    g_u, _ = batch_grad(model, params, forget.inputs[:32], forget.labels[:32], mean_loss)
    rows, _ = per_sample_grads(model, params, retain.inputs[:k], retain.labels[:k], mean_loss, "vmap")
    return g_u, rows


def reference_projection(g_u: dict, rows: dict, scope: str) -> dict:
    """g − Gᵀc with c the float64 least-squares solution of Gᵀc ≈ g: projection off span(G), independently."""
    names = list(g_u)
    k = next(iter(rows.values())).shape[0]

    def off_span(g, G):
        c = torch.linalg.lstsq(G.T, g[:, None], driver="gelsd").solution
        return g - (G.T @ c)[:, 0]

    if scope == "global":
        g = torch.cat([g_u[n].double().reshape(-1) for n in names])
        G = torch.cat([rows[n].double().reshape(k, -1) for n in names], dim=1)
        return {"all": off_span(g, G)}
    return {n: off_span(g_u[n].double().reshape(-1), rows[n].double().reshape(k, -1)) for n in names}


@pytest.mark.parametrize("solver", ["gram", "qr"])
@pytest.mark.parametrize("scope", ["per_tensor", "global"])
@pytest.mark.parametrize("k", [64, 128])
def test_projected_grad_is_orthogonal_to_every_retain_grad(mid_unlearning, image_sets, scope, k, solver):
    model, params = mid_unlearning
    g_u, rows = real_grads(model, params, image_sets, k)
    projected, stats = project(g_u, rows, scope, solver=solver)
    flat_p = torch.cat([projected[n].double().reshape(-1) for n in params])
    flat_rows = torch.cat([rows[n].double().reshape(k, -1) for n in params], dim=1)
    dots = (flat_rows @ flat_p).abs()
    bound = 1e-5 * flat_p.norm() * flat_rows.norm(dim=1)
    assert flat_p.norm() > 0.01 * torch.cat([g.reshape(-1) for g in g_u.values()]).norm()
    assert bool((dots <= bound).all()), f"worst |<g⊥, g_i>| / (‖g⊥‖‖g_i‖) = {float((dots / (bound / 1e-5)).max()):.2e}"
    if scope == "per_tensor":  # block-wise orthogonality holds tensor by tensor too
        for n in params:
            block_rows = rows[n].double().reshape(k, -1)
            block = (block_rows @ projected[n].double().reshape(-1)).abs()
            assert bool((block <= 1e-5 * block_rows.norm(dim=1) * g_u[n].double().norm()).all()), n


@pytest.mark.parametrize("solver", ["gram", "qr"])
@pytest.mark.parametrize("scope", ["per_tensor", "global"])
def test_projection_matches_float64_reference(mid_unlearning, image_sets, scope, solver):
    model, params = mid_unlearning
    g_u, rows = real_grads(model, params, image_sets, 64)
    projected, _ = project(g_u, rows, scope, solver=solver)
    reference = reference_projection(g_u, rows, scope)
    if scope == "global":
        ours = torch.cat([projected[n].double().reshape(-1) for n in params])
        assert float((ours - reference["all"]).norm() / reference["all"].norm()) < 1e-4
    else:
        ours = torch.cat([projected[n].double().reshape(-1) for n in params])
        ref = torch.cat([reference[n] for n in params])
        assert float((ours - ref).norm() / ref.norm()) < 1e-4


@pytest.mark.parametrize("solver", ["gram", "qr"])
def test_per_tensor_scope_zeroes_tensors_with_at_most_k_entries(solver):
    g_u = {"small": torch.randn(5), "large": torch.randn(300)}
    rows = {"small": torch.randn(8, 5), "large": torch.randn(8, 300)}
    projected, _ = project(g_u, rows, "per_tensor", solver=solver)
    assert float(projected["small"].abs().max()) < 1e-6
    assert float(projected["large"].norm()) > 0.5 * float(g_u["large"].norm())


@pytest.mark.parametrize("solver", ["gram", "qr"])
def test_rank_deficient_retain_batch_projects_onto_the_true_span(solver):
    """Duplicated and zero rows must neither break the basis nor remove directions outside the span."""
    torch.manual_seed(0)
    a, b = torch.randn(1000, dtype=torch.float64), torch.randn(1000, dtype=torch.float64)
    exact_rows = torch.stack([a, a, torch.zeros_like(a), b, 2 * a - b])
    g = torch.randn(1000, dtype=torch.float64)
    projected, stats = project({"w": g.float()}, {"w": exact_rows.float()}, "global", solver=solver)
    reference = reference_projection({"w": g}, {"w": exact_rows}, "global")["all"]
    assert stats.retain_rank == 2
    assert float((projected["w"].double() - reference).norm() / reference.norm()) < 1e-5


@pytest.mark.parametrize("backend", ["vmap", "hooks"])
@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_per_sample_grads_equal_the_loop_reference(mid_unlearning, image_sets, dtype, tolerance, backend):
    model, _ = mid_unlearning
    model = model.to(dtype)
    try:
        params = trainable_parameters(model)
        retain = image_sets["retain"]
        inputs, labels = retain.inputs[:16].to(dtype), retain.labels[:16]
        fast, fast_losses = per_sample_grads(model, params, inputs, labels, mean_loss, backend, chunk_size=5)
        slow, slow_losses = per_sample_grads(model, params, inputs, labels, mean_loss, "loop")
        for name in params:
            error = (fast[name] - slow[name]).norm() / slow[name].norm().clamp_min(1e-30)
            assert float(error) <= tolerance, name
        # cross-entropy of a confident sample is a difference of near-equal numbers: compare absolutely
        assert torch.allclose(fast_losses, slow_losses, rtol=tolerance, atol=100 * torch.finfo(dtype).eps)
    finally:
        model.float()


def test_projected_ascent_step_leaves_retain_losses_unchanged_to_first_order(mid_unlearning, image_sets, recipe):
    """After one α=0 step of small fixed length, retain losses move ≤ 1 % of what plain ascent moves them."""
    model, params = mid_unlearning
    forget, retain = image_sets["forget"], image_sets["retain"]
    forget_batch = (forget.inputs[:32], forget.labels[:32])
    retain_batch = (retain.inputs[:64], retain.labels[:64])
    start = {n: p.detach().clone() for n, p in params.items()}

    def retain_losses():
        with torch.no_grad():
            return per_sample_losses(model(retain_batch[0]), retain_batch[1]).double()

    base = retain_losses()
    changes = {}
    for retain_grads in ("per_sample", "none"):
        spec = recipe.method.model_copy(deep=True)
        spec.projection.scope, spec.projection.retain_grads, spec.alpha = "global", retain_grads, 0.0
        direction = orthograd_direction(model, params, forget_batch, retain_batch, spec, mean_loss)
        apply_update(params, direction.update, 1e-3, None)
        changes[retain_grads] = float((retain_losses() - base).abs().max())
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(start[n])
    assert changes["none"] > 0
    assert changes["per_sample"] <= 0.01 * changes["none"], changes


def test_auto_backend_uses_vmap_where_hooks_do_not_apply(trained_model, recipe, image_sets):
    """Full-parameter training includes BatchNorm weights, which the hooks backend cannot handle."""
    from orthograd_cli.gradients import hooks

    checkpoint, info = load_checkpoint_and_info(trained_model, recipe)
    model = load_model(checkpoint, info).eval()
    params = {n: p for n, p in model.named_parameters() if n.startswith(("layer4.1", "fc"))}
    assert not hooks.supports(model, params)
    retain = image_sets["retain"]
    inputs, labels = retain.inputs[:4], retain.labels[:4]
    auto, _ = per_sample_grads(model, params, inputs, labels, mean_loss, "auto")
    slow, _ = per_sample_grads(model, params, inputs, labels, mean_loss, "loop")
    for name in params:
        assert float((auto[name] - slow[name]).norm() / slow[name].norm().clamp_min(1e-30)) <= 1e-4, name
    with pytest.raises(RecipeError, match="backend: hooks"):
        per_sample_grads(model, params, inputs, labels, mean_loss, "hooks")
