"""What every unlearning method gives the shared loop: an update direction d per step.

The loop steps θ ← θ − η·d/‖d‖ (or hands d to Adam), so d is a descent direction: a method that
ascends the forget loss puts −∇loss_forget into d. A method is a function
`make(model, params, forget_set, retain_set, spec, loss_fn) -> direction_fn`; the factory does any
one-off preparation (a teacher copy, a saliency mask) and `direction_fn(model, params, forget_batch,
retain_batch, spec, loss_fn) -> Direction` is called once per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orthograd_cli.gradients.projection import ProjectionStats


@dataclass
class Direction:
    update: dict  # d: the step is θ ← θ − η·d/‖d‖
    unlearn_loss: float
    retain_loss: float | None  # None: the method takes no retain loss
    unlearn_grad_norm: float
    stats: "ProjectionStats | None" = None  # projection methods only


def alpha_or_default(spec, default: float) -> float:
    """The recipe's α when set, else the method's own default."""
    return spec.alpha if spec.alpha is not None else default


def combine(weights_and_grads: list[tuple[float, dict]]) -> dict:
    """Σ wᵢ·gᵢ over dicts of tensors with the same keys."""
    names = weights_and_grads[0][1]
    return {n: sum(w * g[n] for w, g in weights_and_grads) for n in names}


def forget_loss_only(model, forget_batch, loss_fn) -> float:
    """The forget loss for the diagnostics, when a method takes no gradient of it."""
    import torch

    from orthograd_cli.gradients.batching import forward

    with torch.no_grad():
        return float(loss_fn(forward(model, forget_batch[0]), forget_batch[1]))
