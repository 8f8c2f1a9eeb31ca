"""Random labels: descend on the forget set relabelled at random (never its true class), plus retain descent.

The forget and retain terms weigh alike by default (α = 0.5), as in SalUn's random-label baseline, which
trains on relabelled forget data and retain data together.
"""

from orthograd_cli.gradients.per_sample import batch_grad
from orthograd_cli.gradients.projection import global_norm
from orthograd_cli.gradients.batching import forward
from orthograd_cli.methods.base import Direction, MethodInfo, alpha_or_default, combine

DEFAULT_ALPHA = 0.5
RELABELS = "it relabels samples with other classes"


def random_other_labels(labels, num_classes: int, generator):
    """A uniformly drawn wrong label for each sample (seeded)."""
    import torch

    shift = torch.randint(1, num_classes, labels.shape, generator=generator)
    return (labels.cpu() + shift) % num_classes


def make(model, params, forget_set, retain_set, spec, loss_fn, context, mask: dict | None = None):
    import torch

    generator = torch.Generator().manual_seed(context.seed)
    device = next(iter(params.values())).device
    with torch.no_grad():
        num_classes = int(forward(model, forget_set.batch(torch.arange(1), device)[0]).shape[-1])

    def random_label_direction(model, params, forget_batch, retain_batch, spec, loss_fn) -> Direction:
        alpha = alpha_or_default(spec, DEFAULT_ALPHA)
        inputs, labels = forget_batch
        wrong = random_other_labels(labels, num_classes, generator).to(labels.device)
        relabelled_grad, relabelled_loss = batch_grad(model, params, inputs, wrong, loss_fn)
        retain_grad, retain_loss = batch_grad(model, params, *retain_batch, loss_fn)
        # d = α·∇loss(B_r) + (1−α)·∇loss(B_u with random labels)
        update = combine([(alpha, retain_grad), (1 - alpha, relabelled_grad)])
        if mask is not None:
            update = {n: g * mask[n] for n, g in update.items()}
        return Direction(update=update, unlearn_loss=relabelled_loss, retain_loss=retain_loss,
                         unlearn_grad_norm=global_norm(relabelled_grad))

    return random_label_direction


METHOD = MethodInfo(name="random_label", summary="descend on the forget set relabelled at random, plus α·retain descent",
                    make=make, default_alpha=DEFAULT_ALPHA, tasks=("classification",), task_reason=RELABELS)
