"""The memory-light `gram` backend against the projection built from explicit per-sample gradients
(QR, global scope), on real gradients of the trained resnet18: LoRA and full parameters (BatchNorm
affine weights included).

The directions are compared in float64: the retain Gram matrix of a trained model is ill-conditioned
(rank k with singular values spread over orders of magnitude), so in float32 every backend, the
explicit ones included, lands about 1e-3 (LoRA, k=64) from the float64 projection and from each other.
In float64 the gram backend equals QR to about 1e-14."""

from __future__ import annotations

import copy

import pytest
import torch

from orthograd_cli.gradients.ghost import ghost_gram, supports
from orthograd_cli.gradients.per_sample import batch_grad, per_sample_grads
from orthograd_cli.models.lora import trainable_model
from orthograd_cli.loading import load_checkpoint_and_info
from orthograd_cli.methods.loop import apply_update
from orthograd_cli.methods.orthograd import orthograd_direction
from orthograd_cli.models.registry import load_model
from orthograd_cli.recipe import load_recipe
from orthograd_cli.tasks.classification import mean_loss


def unlearning_model(trained_model, image_sets, lora: bool):
    recipe, _ = load_recipe(None, [f"lora.enabled={str(lora).lower()}"])
    checkpoint, info = load_checkpoint_and_info(trained_model, recipe)
    model, params = trainable_model(load_model(checkpoint, info).eval(), recipe, info)
    forget, retain = image_sets["forget"], image_sets["retain"]
    for step in range(2):  # a few real steps, so every LoRA factor carries gradient
        fi, ri = torch.arange(step * 8, step * 8 + 32), torch.arange(64)
        direction = orthograd_direction(model, params, forget.batch(fi), retain.batch(ri), recipe.method, mean_loss)
        apply_update(params, direction.update, 0.05, None)
    return model, params


@pytest.fixture(scope="module")
def lora_model(trained_model, image_sets):
    return unlearning_model(trained_model, image_sets, lora=True)


@pytest.fixture(scope="module")
def full_model(trained_model, image_sets):
    return unlearning_model(trained_model, image_sets, lora=False)


def flat(tensors: dict, names) -> torch.Tensor:
    return torch.cat([tensors[n].double().reshape(-1) for n in names])


def in_float64(model):
    model = copy.deepcopy(model).double()
    return model, {n: p for n, p in model.named_parameters() if p.requires_grad}


def test_the_memory_plan_fits_the_budget_and_never_exceeds_hooks():
    """A layer's plan: by operations when both fit, the one that fits when one does, else the smaller; the
    default budget never exceeds the k·d float32 rows the hooks backend would keep."""
    from orthograd_cli.gradients.ghost import _Layer, memory_budget

    conv = torch.nn.Conv2d(64, 64, 3, padding=1)  # 36,864 weights; at 32×32 positions L = 1024
    layer = _Layer(conv, torch.randn(8, 64, 32, 32), torch.randn(8, 64, 32, 32))
    rows_bytes, ghost_bytes = 8 * 64 * 576 * 8, 3 * 8 * 1024 ** 2 * 8  # 2.4 MB against 201 MB
    assert layer.use_rows(budget=1 << 40)  # both fit: rows cost fewer operations (L is large)
    assert layer.use_rows(budget=rows_bytes)  # only the rows fit
    assert layer.use_rows(budget=1000)  # neither fits: the smaller
    small = _Layer(torch.nn.Conv2d(512, 512, 3, padding=1), torch.randn(8, 512, 1, 1), torch.randn(8, 512, 1, 1))
    assert not small.use_rows(budget=1 << 40)  # one position: ghost products are far cheaper
    assert not small.use_rows(budget=100)  # neither fits: ghost (3·8·1·8 = 192 B) is the smaller
    assert memory_budget(None, "cpu", hooks_bytes=1000) == 1000
    assert memory_budget(1.0, "cpu", hooks_bytes=1 << 40) == 1 << 30
    assert rows_bytes < ghost_bytes


def in_float64_batch(batch):
    return tuple(t.double() if t.is_floating_point() else t for t in batch)


@pytest.mark.parametrize("which, k, memory_gb", [("lora", 64, None), ("full", 4, None), ("full", 4, 2e-5)])
def test_ghost_gram_equals_explicit_gram(request, image_sets, which, k, memory_gb):
    """In float64 the ghost products are exact: the same sums as G Gᵀ and G·g_u in another order, each of at
    most d = 11.2 M products, so they agree to about d·2⁻⁵³ ≈ 1e-9 in the worst case (asserted 1e-9), far
    below the O(1) error of a wrong formula. memory_gb = 2e-5 (21 KB) fits neither plan for most layers: each
    then takes the smaller one, in one-sample chunks, and the sums are the same."""
    model, params = in_float64(request.getfixturevalue(f"{which}_model")[0])
    assert supports(model, params)
    forget, retain = image_sets["forget"], image_sets["retain"]
    retain_batch = in_float64_batch(retain.batch(torch.arange(k)))
    g_u, _ = batch_grad(model, params, *in_float64_batch(forget.batch(torch.arange(32))), mean_loss)
    rows, losses = per_sample_grads(model, params, *retain_batch, mean_loss, "vmap")
    gram, along, ghost_losses, _ = ghost_gram(model, params, *retain_batch, mean_loss, g_u, memory_gb)
    G = torch.cat([rows[n].reshape(k, -1) for n in params], dim=1)
    assert float((gram - G @ G.T).norm() / (G @ G.T).norm()) <= 1e-9
    assert float((along - G @ flat(g_u, params)).norm() / (G @ flat(g_u, params)).norm()) <= 1e-9
    # the losses come from one batched forward and from k single ones: absolute agreement at float64 rounding
    assert torch.allclose(ghost_losses, losses, rtol=0, atol=1e-9)


@pytest.mark.parametrize("which, k, alpha, solver", [
    ("lora", 64, 0.0, "cholesky"), ("lora", 64, 0.5, "cholesky"), ("full", 16, 0.5, "cholesky"),
    ("lora", 64, 0.0, "gram"), ("full", 16, 0.5, "gram")])  # full with α = 0: as lora's, at 16 s more CI
def test_gram_backend_direction_equals_qr_projection(request, image_sets, which, k, alpha, solver):
    model, params = in_float64(request.getfixturevalue(f"{which}_model")[0])
    recipe, _ = load_recipe(None, [f"method.alpha={alpha}", "method.projection.scope=global",
                                   "method.projection.solver=qr", "method.per_sample.backend=vmap"])
    forget, retain = image_sets["forget"], image_sets["retain"]
    forget_batch = in_float64_batch(forget.batch(torch.arange(32)))
    retain_batch = in_float64_batch(retain.batch(torch.arange(k)))
    reference = orthograd_direction(model, params, forget_batch, retain_batch, recipe.method, mean_loss)
    spec = recipe.method.model_copy(deep=True)
    spec.per_sample.backend, spec.projection.solver = "gram", solver
    ghost = orthograd_direction(model, params, forget_batch, retain_batch, spec, mean_loss)
    expected, got = flat(reference.update, params), flat(ghost.update, params)
    assert float((got - expected).norm() / expected.norm()) <= 1e-9
    ghost_stats, reference_stats = ghost.stats.read(), reference.stats.read()
    assert ghost_stats["retain_rank"] == reference_stats["retain_rank"]
    assert ghost_stats["kept_norm_ratio"] == pytest.approx(reference_stats["kept_norm_ratio"], rel=1e-9)
    assert ghost_stats["conflict_share"] == reference_stats["conflict_share"]
    if alpha == 0:  # and the direction is orthogonal to every retain gradient
        rows, _ = per_sample_grads(model, params, *retain_batch, mean_loss, "vmap")
        G = torch.cat([rows[n].double().reshape(k, -1) for n in params], dim=1)
        cosines = (G @ got) / (G.norm(dim=1) * got.norm())
        assert float(cosines.abs().max()) <= 1e-10


def test_gram_backend_needs_global_scope():
    from orthograd_cli.errors import RecipeError

    with pytest.raises(RecipeError, match="projection.scope: global"):
        load_recipe(None, ["method.per_sample.backend=gram"])
    recipe, _ = load_recipe(None, ["method.per_sample.backend=gram", "method.projection.scope=global"])
    assert recipe.method.per_sample.backend == "gram"
