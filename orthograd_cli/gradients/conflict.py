"""Which retain samples conflict with unlearning: one definition, used by `inspect` and the report.

A step moves θ by Δθ = −η·d/‖d‖. To first order, retain sample i's loss changes by ⟨g_i, Δθ⟩, so the
step *raises* that loss (the sample is in conflict with unlearning) when ⟨g_i, d⟩ < 0.

The statistics refer to plain gradient ascent on the forget batch, d = −g_u: sample i is in conflict
when ⟨g_u, g_i⟩ > 0 (cosine > 0). That is the direction OrthoGrad starts from; its projected step
g⊥ has ⟨g⊥, g_i⟩ = 0 for every retain sample, so none of them conflicts with it to first order.
With α > 0 the step also descends on the retain batch; the share is still that of plain ascent.
"""

from __future__ import annotations

DEFINITION = ("share of retain samples whose loss plain ascent on the forget batch raises to first order: "
              "⟨g_u, g_i⟩ > 0, before projection and before any retain term")


def in_conflict(dots_with_unlearn_grad):
    """Boolean mask of retain samples that ascent along g_u hurts, from ⟨g_u, g_i⟩ (or the cosines)."""
    return dots_with_unlearn_grad > 0


def conflict_share(dots_with_unlearn_grad):
    """The share of retain samples in conflict, from their dot products (or cosines) with g_u (a 0-dim
    tensor, left on the device: float() it to read it)."""
    return in_conflict(dots_with_unlearn_grad).double().mean()


def cosines_with_each(unlearn_grad: dict, retain_rows: dict):
    """cos(g_u, g_i) for every retain sample i, over all trainable tensors together."""
    k = next(iter(retain_rows.values())).shape[0]
    flat_u = _flat(unlearn_grad)
    flat_rows = _flat_rows(retain_rows, k)
    return (flat_rows @ flat_u) / (flat_rows.norm(dim=1) * flat_u.norm()).clamp_min(1e-30)


def cosine(a, b) -> float:
    return float((a.reshape(-1) @ b.reshape(-1)) / (a.norm() * b.norm()).clamp_min(1e-30))


def effective_rank(singular_values) -> float:
    """exp of the entropy of the normalised singular values: how many directions the retain gradients
    really span (k for k equal directions, 1 for one)."""
    import torch

    p = singular_values / singular_values.sum().clamp_min(1e-30)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def quantiles(values) -> dict:
    import torch

    q = torch.quantile(values.double(), torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    return dict(zip(("min", "q1", "median", "q3", "max"), (float(v) for v in q)))


def _flat(tensors: dict):
    import torch

    return torch.cat([t.reshape(-1) for t in tensors.values()])


def _flat_rows(rows: dict, k: int):
    import torch

    return torch.cat([r.reshape(k, -1) for r in rows.values()], dim=1)
