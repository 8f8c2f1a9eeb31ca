"""What every unlearning method gives the shared loop: an update direction d per step.

The loop steps θ ← θ − η·d/‖d‖ (or hands d to Adam), so d is a descent direction: a method that
ascends the forget loss puts −∇loss_forget into d. A method file declares itself once, as
`METHOD = MethodInfo(...)`: its name, a one-line summary, its default α, the tasks it supports, a
pydantic model of its own settings (recipe keys `method.<name>.…`) and its factory
`make(model, params, forget_set, retain_set, spec, loss_fn, context) -> direction_fn`, `context` the run's
RunContext (context.py: its seed, device and process group). The factory does any one-off preparation (a
teacher copy, a saliency mask); `direction_fn(model, params, forget_batch,
retain_batch, spec, loss_fn) -> Direction` is called once per step; one that counts steps keeps its counters in a
dict `direction_fn.resume_state` (numbers only), which a resumed run puts back. `methods/__init__.py` lists the
method files; every list of method names (recipe validation, help texts, `compare`) comes from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from orthograd_cli.gradients.projection import ProjectionStats


class MethodSettings(BaseModel):
    """The base of a method's own settings (recipe keys `method.<name>.…`): unknown keys are refused and
    every number must be finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    summary: str  # one line, shown in `--help` lists
    make: Callable  # make(model, params, forget_set, retain_set, spec, loss_fn, context) -> direction_fn
    default_alpha: float | None = None  # the weight of the retain term when method.alpha is unset; None: no α
    tasks: tuple[str, ...] | None = None  # the tasks it is defined for; None: every task
    task_reason: str = ""  # why it is limited to those tasks (said in the error)
    settings: type[MethodSettings] | None = None  # its own recipe keys, under method.<name>

    def supports(self, task: str) -> bool:
        return self.tasks is None or task in self.tasks


@dataclass
class Direction:
    """A step's direction and its diagnostics. The diagnostics are 0-dim tensors left on the device (or
    plain numbers): the loop reads them at stop-rule checks, so a step never waits for the device."""

    update: dict  # d: the step is θ ← θ − η·d/‖d‖
    unlearn_loss: object
    retain_loss: object | None  # None: the method takes no retain loss
    unlearn_grad_norm: object
    stats: "ProjectionStats | None" = None  # projection methods only


def alpha_or_default(spec, default: float) -> float:
    """The recipe's α when set, else the method's own default."""
    return spec.alpha if spec.alpha is not None else default


def combine(weights_and_grads: list[tuple[float, dict]]) -> dict:
    """Σ wᵢ·gᵢ over dicts of tensors with the same keys."""
    names = weights_and_grads[0][1]
    return {n: sum(w * g[n] for w, g in weights_and_grads) for n in names}


def forget_loss_only(model, forget_batch, loss_fn):
    """The forget loss for the diagnostics, when a method takes no gradient of it."""
    import torch

    from orthograd_cli.gradients.batching import forward

    with torch.no_grad():
        return loss_fn(forward(model, forget_batch[0]), forget_batch[1])
