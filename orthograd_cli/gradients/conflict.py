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


def conflict_share(dots_with_unlearn_grad) -> float:
    """The share of retain samples in conflict, from their dot products (or cosines) with g_u."""
    return float(in_conflict(dots_with_unlearn_grad).double().mean())
