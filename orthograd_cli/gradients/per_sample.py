"""Gradients over the trainable parameters only: the batch mean, and one row per retain sample.

Backends for per-sample gradients (all return ({name: tensor of shape (k, *param.shape)}, losses (k,))):
- `vmap`: torch.func `vmap(grad(loss))` over `functional_call`, one vectorised pass; `chunk_size`
  bounds memory.
- `hooks`: one batched backward with per-layer hooks (see hooks.py); exact for Linear, Conv1d and Conv2d
  weights, which is every trainable tensor of a LoRA model.
- `loop`: one backward per sample. Slow; kept as the reference the others are tested against.
- `auto`: `hooks` where it applies, else `vmap`.
The model must be in eval mode (BatchNorm on running statistics), or a sample's gradient would
depend on the rest of its batch.
"""

from __future__ import annotations

from collections.abc import Callable

from orthograd_cli.errors import RecipeError
from orthograd_cli.gradients.batching import batch_len, forward, precision_lowered, rows

BACKENDS = ("auto", "hooks", "vmap", "loop")
NO_VMAP_FOR_TUPLE_BATCHES = ("method.per_sample.backend: vmap cannot differentiate this task's loss (its batches "
                             "are tuples of padded sequences, e.g. CTC, which has no vmap rule)",
                             "use hooks (exact for LoRA) or loop")


def trainable_parameters(model) -> dict:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def batch_grad(model, params: dict, inputs, labels, loss_fn: Callable):
    """∇θ loss_fn(model(inputs), labels) and the loss value."""
    import torch

    loss = loss_fn(forward(model, inputs), labels)
    grads = torch.autograd.grad(loss, list(params.values()))
    return dict(zip(params, grads)), loss.detach()


def per_sample_grads(model, params: dict, inputs, labels, loss_fn: Callable, backend: str = "vmap",
                     chunk_size: int | None = None) -> tuple[dict, "torch.Tensor"]:  # noqa: F821
    if backend in ("auto", "hooks"):
        from orthograd_cli.gradients import hooks

        if hooks.supports(model, params):
            try:
                return hooks.hook_grads(model, params, inputs, labels, loss_fn)
            except hooks.HooksUnsupported as err:
                if backend == "hooks":
                    raise RecipeError(f"method.per_sample.backend: hooks cannot run this model ({err})",
                                      "use auto, vmap or loop") from None
        elif backend == "hooks":
            raise RecipeError("method.per_sample.backend: hooks needs every trainable tensor to be a Linear/Conv1d/"
                              "Conv2d weight or bias", "use auto, vmap or loop")
        backend = "vmap"
    if backend == "vmap":
        if precision_lowered():  # autocast does not reach into vmap's functional calls (BatchNorm fails there)
            raise RecipeError("method.per_sample.backend: vmap cannot run under precision: bf16 (and hooks does not "
                              "apply to this model)", "set precision: float32, or per_sample.backend: loop")
        if isinstance(inputs, tuple):  # padded sequence batches: their losses (CTC) have no vmap rule
            raise RecipeError(*NO_VMAP_FOR_TUPLE_BATCHES)
        return _vmap_grads(model, params, inputs, labels, loss_fn, chunk_size)
    if backend == "loop":
        return _loop_grads(model, params, inputs, labels, loss_fn)
    raise ValueError(f"unknown per-sample backend '{backend}' (choose from {', '.join(BACKENDS)})")


def _vmap_grads(model, params, inputs, labels, loss_fn, chunk_size):
    from torch.func import functional_call, grad_and_value, vmap

    detached = {name: p.detach() for name, p in params.items()}

    def sample_loss(theta, x, y):
        return loss_fn(functional_call(model, theta, (x[None],)), y[None])

    grads, losses = vmap(grad_and_value(sample_loss), in_dims=(None, 0, 0), chunk_size=chunk_size)(
        detached, inputs, labels)
    # parameters outside `params` that still require grad would otherwise keep a graph attached
    return {name: g.detach() for name, g in grads.items()}, losses.detach()


def _loop_grads(model, params, inputs, labels, loss_fn):
    import torch

    singles = [batch_grad(model, params, rows(inputs, i, i + 1), rows(labels, i, i + 1), loss_fn)
               for i in range(batch_len(inputs))]
    grads = {name: torch.stack([single[0][name] for single in singles]) for name in params}
    return grads, torch.stack([single[1] for single in singles])
