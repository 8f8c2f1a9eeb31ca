"""OrthoGrad (arXiv 2503.02312): one update direction per step, read straight off the paper.

Ascend on the forget batch only along directions that leave every retain sample's loss unchanged
to first order, optionally blended with descent on the retain batch.
"""

from __future__ import annotations

from orthograd_cli.gradients.per_sample import batch_grad, per_sample_grads
from orthograd_cli.gradients.projection import global_norm, project, projection_stats
from orthograd_cli.methods.base import Direction, alpha_or_default
from orthograd_cli.recipe import MethodSpec  # noqa: F401  (type of `spec`)

DEFAULT_ALPHA = 0.0  # pure projected ascent


def make(model, params, forget_set, retain_set, spec: MethodSpec, loss_fn, seed: int = 0):
    return orthograd_direction


def orthograd_direction(model, params: dict, forget_batch, retain_batch, spec: MethodSpec, loss_fn) -> Direction:
    projection = spec.projection
    # 1. g_u = ∇θ mean loss(B_u)
    unlearn_grad, unlearn_loss = batch_grad(model, params, *forget_batch, loss_fn)

    # 2. G_r = per-sample retain gradients (k rows); the ablations need only their mean
    if projection.retain_grads == "per_sample":
        retain_rows, retain_losses = per_sample_grads(model, params, *retain_batch, loss_fn,
                                                      spec.per_sample.backend, spec.per_sample.chunk_size)
        retain_mean = {n: rows.mean(0) for n, rows in retain_rows.items()}
        retain_loss = retain_losses.mean()
    else:
        retain_mean, retain_loss = batch_grad(model, params, *retain_batch, loss_fn)
        retain_rows = {n: g[None] for n, g in retain_mean.items()}

    # 3. g⊥ = g_u − Q Qᵀ g_u, Q an orthonormal basis of the rows of G_r
    if projection.retain_grads == "none":  # the ablation: plain ascent, only the diagnostics are computed
        projected, stats = unlearn_grad, projection_stats(unlearn_grad, unlearn_grad, retain_rows, retain_rank=0)
    else:
        projected, stats = project(unlearn_grad, retain_rows, projection.scope, projection.rank_tol,
                                   projection.solver)

    # 4. d = α·mean(G_r) − (1−α)·g⊥   (descend on retain, ascend on the projected unlearn direction)
    alpha = alpha_or_default(spec, DEFAULT_ALPHA)
    update = {n: alpha * retain_mean[n] - (1 - alpha) * projected[n] for n in params}
    return Direction(update=update, unlearn_loss=float(unlearn_loss), retain_loss=float(retain_loss),
                     unlearn_grad_norm=float(global_norm(unlearn_grad)), stats=stats)
