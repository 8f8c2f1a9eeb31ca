"""Fine-tune: descend on the retain set only and let the forget set fade (catastrophic forgetting)."""

from orthograd_cli.gradients.per_sample import batch_grad
from orthograd_cli.methods.base import Direction, MethodInfo, forget_loss_only


def make(model, params, forget_set, retain_set, spec, loss_fn, context):
    return finetune_direction


def finetune_direction(model, params, forget_batch, retain_batch, spec, loss_fn) -> Direction:
    # d = ∇ loss(B_r)
    retain_grad, retain_loss = batch_grad(model, params, *retain_batch, loss_fn)
    return Direction(update=retain_grad, unlearn_loss=forget_loss_only(model, forget_batch, loss_fn),
                     retain_loss=retain_loss, unlearn_grad_norm=0.0)


METHOD = MethodInfo(name="finetune", summary="descend on the retain set only; the forget set fades by drift", make=make)
