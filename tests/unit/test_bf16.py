"""`precision: bf16`: the passes and the per-sample rows' products run in bfloat16 (autocast), the
gradients come back as float32, projection and update stay in float32 or higher, and the projection
is still exact with respect to the retain gradients it was given."""

from __future__ import annotations

import pytest
import torch

from orthograd_cli.gradients.per_sample import batch_grad, per_sample_grads
from orthograd_cli.gradients.projection import project
from orthograd_cli.models.lora import trainable_model
from orthograd_cli.loading import load_checkpoint_and_info
from orthograd_cli.gradients.batching import pass_precision
from orthograd_cli.models.registry import load_model
from orthograd_cli.recipe import Recipe
from orthograd_cli.tasks.classification import mean_loss


@pytest.fixture(scope="module")
def lora_resnet(trained_model):
    recipe = Recipe()
    checkpoint, info = load_checkpoint_and_info(trained_model, recipe)
    return trainable_model(load_model(checkpoint, info).eval(), recipe, info)


@pytest.mark.parametrize("backend", ["hooks", "gram"])
def test_bf16_passes_give_float32_gradients_and_an_exact_projection(lora_resnet, image_sets, backend, monkeypatch):
    model, params = lora_resnet
    forget, retain = image_sets["forget"].batch(torch.arange(32)), image_sets["retain"].batch(torch.arange(64))
    with pass_precision("bf16", "cpu"):
        g_u, _ = batch_grad(model, params, *forget, mean_loss)
        rows, _ = per_sample_grads(model, params, *retain, mean_loss, "hooks")
    assert all(g.dtype == torch.float32 for g in g_u.values())
    assert all(r.dtype == torch.float32 for r in rows.values())
    # the rows' outer products ran in bf16 too: each row points where its float32 twin does, to bf16's digits
    full_rows, _ = per_sample_grads(model, params, *retain, mean_loss, "hooks")
    flat_rows = torch.cat([rows[n].reshape(64, -1) for n in params], dim=1)
    flat_full = torch.cat([full_rows[n].reshape(64, -1) for n in params], dim=1)
    row_cosines = torch.nn.functional.cosine_similarity(flat_rows, flat_full, dim=1)
    assert float(row_cosines.min()) > 0.95 and float(row_cosines.max()) < 1 - 1e-6, row_cosines
    full_g_u, _ = batch_grad(model, params, *forget, mean_loss)
    flat_bf16 = torch.cat([g_u[n].reshape(-1) for n in params])
    flat_f32 = torch.cat([full_g_u[n].reshape(-1) for n in params])
    # bf16 keeps 8 mantissa bits: the direction agrees with float32, not every digit (which shows
    # the passes really ran in bf16)
    cosine = float(torch.nn.functional.cosine_similarity(flat_bf16, flat_f32, dim=0))
    assert 0.95 < cosine < 1 - 1e-6, cosine
    if backend == "hooks":
        projected, _ = project(g_u, rows, "global")
    else:
        from orthograd_cli.gradients.ghost import ghost_gram
        from orthograd_cli.gradients.projection import gram_coefficients

        from orthograd_cli.gradients import hooks

        with pass_precision("bf16", "cpu"):
            gram, along, _, weighted_sum = ghost_gram(model, params, *retain, mean_loss, g_u)
            # the ghost products are float64 from the bf16 passes' factors: the rows they stand for are those
            # factors' float32 outer products, not the hooks backend's bf16 ones
            monkeypatch.setattr(hooks, "lowered", lambda block_fn: block_fn())
            rows, _ = per_sample_grads(model, params, *retain, mean_loss, "hooks")
        coeffs, _ = gram_coefficients(gram, along, 1e-6)
        removed = weighted_sum(coeffs)
        projected = {n: g_u[n] - removed[n] for n in params}
    flat_p = torch.cat([projected[n].double().reshape(-1) for n in params])
    G = torch.cat([rows[n].double().reshape(64, -1) for n in params], dim=1)
    cosines = (G @ flat_p) / (G.norm(dim=1) * flat_p.norm())
    assert float(cosines.abs().max()) <= 1e-4

