"""OrthoGrad (arXiv 2503.02312): one update direction per step, read straight off the paper.

Ascend on the forget batch only along directions that leave every retain sample's loss unchanged
to first order, optionally blended with descent on the retain batch.

What g_u ascends (`method.orthograd.forget_loss`): the mean forget loss, as the paper and the authors'
code do, or SimNPO's loss (Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference
Optimization for LLM Unlearning", with γ = 0): L = mean over samples of (2/β)·softplus(−β·ℓ̄), ℓ̄ a sample's
length-normalised loss (its mean token NLL), whose descent is the ascent gradient with each sample weighted by
2σ(−β·ℓ̄): a sample already forgotten stops pulling, instead of being pushed ever further along directions
other samples share. `simnpo_token` applies the same weight to each label's loss instead (each transcript
token of a sequence task; the same as `simnpo` where a sample is one label: a class, a CTC transcript).
"""

from __future__ import annotations

import functools
from typing import Literal

from pydantic import Field

from orthograd_cli.gradients.batching import batch_len
from orthograd_cli.gradients.per_sample import batch_grad, per_sample_grads
from orthograd_cli.gradients.projection import global_norm, project, projection_stats
from orthograd_cli.methods.base import Direction, MethodInfo, MethodSettings, alpha_or_default
from orthograd_cli.recipe import MethodSpec  # noqa: F401  (type of `spec`)

DEFAULT_ALPHA = 0.0  # pure projected ascent


class Settings(MethodSettings):
    forget_loss: Literal["ascent", "simnpo", "simnpo_token"] = Field(
        "ascent", description="what g_u ascends: the mean forget loss (the paper); SimNPO's as published (each "
        "sample's length-normalised loss weighted by 2σ(−β·loss), so samples already forgotten stop pulling); or "
        "simnpo_token, the same weight on each label's (token's) loss")
    simnpo_beta: float = Field(10.0, gt=0, description="β of the SimNPO losses: a weight is about 0.54 at loss 1/β "
                               "and 0.01 at loss 5/β (10: the best of 1, 5, 10, 20 on the Whisper sweep)")


def forget_loss_fn(spec, loss_fn):
    """The loss whose gradient is g_u. SimNPO's value is reported as the plain mean loss (comparable across
    methods); only its gradient is weighted."""
    import torch

    settings = spec.settings
    if settings is None or settings.forget_loss == "ascent":
        return loss_fn
    beta = settings.simnpo_beta
    # −∂/∂ℓ (2/β)·softplus(−β·ℓ) = 2σ(−β·ℓ): the weight that turns ascent on ℓ into descent on SimNPO's loss
    per = "label_weight" if settings.forget_loss == "simnpo_token" else "sample_weight"

    def simnpo(outputs, targets):
        weighted = loss_fn(outputs, targets, **{per: lambda losses: 2 * torch.sigmoid(-beta * losses)})
        with torch.no_grad():
            plain = loss_fn(outputs, targets)
        return plain + (weighted - weighted.detach())

    return simnpo


def make(model, params, forget_set, retain_set, spec: MethodSpec, loss_fn, context):
    return functools.partial(orthograd_direction, collective=context.collective)


def orthograd_direction(model, params: dict, forget_batch, retain_batch, spec: MethodSpec, loss_fn,
                        collective=None) -> Direction:
    """With several processes (`collective`, distributed.py) the batches are this rank's share; the gradients
    are combined across ranks below, so every rank computes the same direction."""
    projection = spec.projection
    # 1. g_u = ∇θ mean loss(B_u)   (SimNPO: each label's loss weighted first)
    unlearn_grad, unlearn_loss = batch_grad(model, params, *forget_batch, forget_loss_fn(spec, loss_fn))
    if collective is not None:
        unlearn_grad, unlearn_loss = collective.average(unlearn_grad, unlearn_loss, batch_len(forget_batch[0]))
    if spec.per_sample.backend == "gram":
        return _gram_direction(model, params, unlearn_grad, unlearn_loss, retain_batch, spec, loss_fn, collective)

    # 2. G_r = per-sample retain gradients (k rows); the ablations need only their mean
    if projection.retain_grads == "per_sample":
        retain_rows, retain_losses = per_sample_grads(model, params, *retain_batch, loss_fn,
                                                      spec.per_sample.backend, spec.per_sample.chunk_size)
        if collective is not None:
            retain_rows, retain_losses = collective.gather_rows(retain_rows, retain_losses)
        retain_mean = {n: rows.mean(0) for n, rows in retain_rows.items()}
        retain_loss = retain_losses.mean()
    else:
        retain_mean, retain_loss = batch_grad(model, params, *retain_batch, loss_fn)
        if collective is not None:
            retain_mean, retain_loss = collective.average(retain_mean, retain_loss, batch_len(retain_batch[0]))
        retain_rows = {n: g[None] for n, g in retain_mean.items()}

    # 3. g⊥ = g_u − Q Qᵀ g_u, Q an orthonormal basis of the rows of G_r
    if projection.retain_grads == "none":  # the ablation: plain ascent, only the diagnostics are computed
        projected, stats = unlearn_grad, projection_stats(unlearn_grad, unlearn_grad, retain_rows, retain_rank=0)
    else:
        projected, stats = project(unlearn_grad, retain_rows, projection.scope, projection.rank_tol,
                                   projection.solver)
    if projection.retain_grads != "per_sample":  # one mean row in G_r's place: no sample's conflict to count
        stats.conflict_share = None

    # 4. d = α·mean(G_r) − (1−α)·g⊥   (descend on retain, ascend on the projected unlearn direction)
    alpha = alpha_or_default(spec, DEFAULT_ALPHA)
    update = {n: alpha * retain_mean[n] - (1 - alpha) * projected[n] for n in params}
    return Direction(update=update, unlearn_loss=unlearn_loss, retain_loss=retain_loss,
                     unlearn_grad_norm=global_norm(unlearn_grad), stats=stats)


def _gram_direction(model, params, unlearn_grad, unlearn_loss, retain_batch, spec: MethodSpec, loss_fn,
                    collective=None) -> Direction:
    """Steps 2–4 without storing G_r (see gradients/ghost.py), global scope.

    With c solving (G_r G_rᵀ) c = G_r g_u:  g⊥ = g_u − G_rᵀc, and
    d = α·mean(G_r) − (1−α)·g⊥ = G_rᵀ(α/k + (1−α)c) − (1−α)·g_u: one weighted sum of retain gradients.
    """
    from orthograd_cli.gradients.conflict import conflict_share
    from orthograd_cli.gradients.ghost import ghost_gram
    from orthograd_cli.gradients.projection import ProjectionStats, gram_coefficients

    gram, along, retain_losses, weighted_sum = ghost_gram(model, params, *retain_batch, loss_fn, unlearn_grad,
                                                          spec.per_sample.memory_gb, collective)
    solver = "gram" if spec.projection.solver == "qr" else spec.projection.solver  # no rows here to factor
    coeffs, rank = gram_coefficients(gram, along, spec.projection.rank_tol, solver)
    alpha = alpha_or_default(spec, DEFAULT_ALPHA)
    k = len(coeffs)
    retain_part = weighted_sum(alpha / k + (1 - alpha) * coeffs)
    update = {n: retain_part[n] - (1 - alpha) * unlearn_grad[n] for n in params}
    unlearn_norm = global_norm(unlearn_grad)
    # ‖g⊥‖² = ‖g_u‖² − 2cᵀb + cᵀKc  (b = G_r g_u, K = G_r G_rᵀ)
    kept_sq = unlearn_norm ** 2 - 2 * coeffs @ along + coeffs @ gram @ coeffs
    kept_norm_ratio = kept_sq.clamp_min(0).sqrt() / unlearn_norm.clamp_min(1e-30)
    stats = ProjectionStats(retain_rank=rank, kept_norm_ratio=kept_norm_ratio, conflict_share=conflict_share(along))
    return Direction(update=update, unlearn_loss=unlearn_loss, retain_loss=retain_losses.mean(),
                     unlearn_grad_norm=unlearn_norm, stats=stats)


METHOD = MethodInfo(name="orthograd", summary="ascent projected orthogonally to every retain sample's gradient "
                    "(the default; method.projection, method.per_sample, method.orthograd.forget_loss)", make=make,
                    default_alpha=DEFAULT_ALPHA, settings=Settings)
