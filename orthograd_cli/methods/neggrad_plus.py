"""NegGrad+ (Kurmanji et al. 2023): ascent on the forget set plus descent on the retain set, weighted by α.

α = 0.95 is the authors' setting (`args.ng_alpha` in meghdadk/SCRUB's notebooks); `method.alpha`
overrides it.
"""

from orthograd_cli.gradients.per_sample import batch_grad
from orthograd_cli.gradients.projection import global_norm
from orthograd_cli.methods.base import Direction, MethodInfo, alpha_or_default, combine

DEFAULT_ALPHA = 0.95


def make(model, params, forget_set, retain_set, spec, loss_fn, context):
    return neggrad_plus_direction


def neggrad_plus_direction(model, params, forget_batch, retain_batch, spec, loss_fn) -> Direction:
    alpha = alpha_or_default(spec, DEFAULT_ALPHA)
    unlearn_grad, unlearn_loss = batch_grad(model, params, *forget_batch, loss_fn)
    retain_grad, retain_loss = batch_grad(model, params, *retain_batch, loss_fn)
    # d = α·∇loss(B_r) − (1−α)·∇loss(B_u)
    update = combine([(alpha, retain_grad), (-(1 - alpha), unlearn_grad)])
    return Direction(update=update, unlearn_loss=unlearn_loss, retain_loss=retain_loss,
                     unlearn_grad_norm=global_norm(unlearn_grad))


METHOD = MethodInfo(name="neggrad_plus", summary="ascent on the forget set plus α·descent on the retain set",
                    make=make, default_alpha=DEFAULT_ALPHA)
