"""NegGrad: plain gradient ascent on the forget set."""

from orthograd_cli.gradients.per_sample import batch_grad
from orthograd_cli.gradients.projection import global_norm
from orthograd_cli.methods.base import Direction, MethodInfo


def make(model, params, forget_set, retain_set, spec, loss_fn, context):
    return neggrad_direction


def neggrad_direction(model, params, forget_batch, retain_batch, spec, loss_fn) -> Direction:
    # d = −∇ loss(B_u)
    unlearn_grad, unlearn_loss = batch_grad(model, params, *forget_batch, loss_fn)
    return Direction(update={n: -g for n, g in unlearn_grad.items()}, unlearn_loss=unlearn_loss,
                     retain_loss=None, unlearn_grad_norm=global_norm(unlearn_grad))


METHOD = MethodInfo(name="neggrad", summary="plain gradient ascent on the forget set", make=make)
