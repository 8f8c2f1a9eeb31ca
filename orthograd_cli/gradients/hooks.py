"""Per-sample gradients of Linear and Conv1d/Conv2d weights from one batched backward pass.

For a layer y = W x (+ b), the gradient of sample i's loss is δ_i x_iᵀ, where δ_i = ∂loss_i/∂y_i.
A forward hook keeps each layer's input and output; one `autograd.grad` of the summed loss with
respect to the outputs gives every δ_i at once (each sample's output depends on that sample alone,
as long as BatchNorm runs on running statistics); an einsum then forms the k outer products.
Convolutions are unfolded into patches first, so the same outer product applies (a Conv1d as a
Conv2d of height 1).

This is exact, and it covers every trainable tensor of a LoRA model (lora_A and lora_B are plain
Linear, Conv1d or Conv2d layers), which makes it much cheaper than vmap there.
"""

from __future__ import annotations

from collections.abc import Callable

from orthograd_cli.gradients.batching import at_least_float32, batch_len, forward, lowered, rows


class HooksUnsupported(Exception):
    """The model uses a hooked layer in a way one forward hook cannot follow (e.g. a layer called twice)."""


def owner(model, param_name: str):
    """(module, "weight" | "bias" | ...) that a parameter name points to."""
    module_name, _, attribute = param_name.rpartition(".")
    return model.get_submodule(module_name), attribute


def plain_layer(module, extra: tuple = ()) -> bool:
    """Linear, an ungrouped zero-padded Conv1d or Conv2d with numeric padding, or one of the `extra` layer types."""
    import torch.nn as nn

    conv = (isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str))  # "same"/"valid": F.unfold takes numbers
    return conv or isinstance(module, (nn.Linear, *extra))


def supports(model, params: dict, extra: tuple = ()) -> bool:
    """True when every trainable tensor is the weight or bias of a Linear or ungrouped Conv1d/Conv2d
    (or of an `extra` layer type)."""
    for name in params:
        module, attribute = owner(model, name)
        if attribute not in ("weight", "bias") or not plain_layer(module, extra):
            return False
    return True


def capture_layers(model, params: dict, inputs, labels, loss_fn: Callable):
    """One batched forward and backward with hooks on the layers that own `params`.

    Returns ({module id: [layer input, output gradient δ]}, per-sample losses (k,)). A mean loss
    times the batch size is the sum of per-sample losses, whose output gradients are the δ_i.
    Inputs and δ come back in float32 or higher (they are bf16 under autocast).
    """
    import torch

    modules = {id(module): module for module, _ in (owner(model, name) for name in params)}
    captured: dict[int, tuple] = {}

    def keep(module, args, output):
        if id(module) in captured:
            raise HooksUnsupported(f"{type(module).__name__} is called twice in one forward; per-sample gradients "
                                   "from hooks need each layer once")
        captured[id(module)] = (args[0].detach(), output)
        # the rest of the model gets a copy: an in-place op downstream (ReLU(inplace=True) after a
        # BatchNorm or a conv, `out += identity`) would otherwise turn `output` into a later tensor
        return output.clone()

    handles = [module.register_forward_hook(keep) for module in modules.values()]
    try:
        outputs = forward(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    size = batch_len(inputs)
    keys = list(captured)
    deltas = torch.autograd.grad(loss_fn(outputs, labels) * size, [captured[key][1] for key in keys],
                                 allow_unused=True, materialize_grads=True)
    with torch.no_grad():
        losses = torch.stack([loss_fn(rows(outputs, i, i + 1), rows(labels, i, i + 1)) for i in range(size)])
    # the outputs (and with them the graph) are released here; only inputs and δ stay
    layers = {key: [at_least_float32(captured[key][0]), at_least_float32(delta.detach())]
              for key, delta in zip(keys, deltas)}
    return layers, losses.detach()


def _weight_grad(module, inputs, delta):
    """Per-sample weight gradients (b, *weight.shape) from layer inputs and output gradients."""
    import torch
    import torch.nn as nn

    if isinstance(module, nn.Linear):
        return torch.einsum("b...o,b...i->boi", delta, inputs)
    grads = torch.einsum("bol,bcl->boc", delta.flatten(2), patches(module, inputs))
    return grads.reshape(len(inputs), *module.weight.shape)


def patches(module, inputs):
    """A convolution's input patches (b, in·kernel, L), whose outer products with δ give its weight gradients;
    a Conv1d as a Conv2d of height 1."""
    import torch.nn as nn
    import torch.nn.functional as F

    if isinstance(module, nn.Conv1d):  # (b, c, L) -> (b, c, 1, L)
        inputs = inputs.unsqueeze(2)
        kernel_size, dilation, padding, stride = ((1, *module.kernel_size), (1, *module.dilation),
                                                  (0, *module.padding), (1, *module.stride))
    else:
        kernel_size, dilation, padding, stride = module.kernel_size, module.dilation, module.padding, module.stride
    return F.unfold(inputs, kernel_size, dilation=dilation, padding=padding, stride=stride)


def _bias_grad(module, delta):
    import torch.nn as nn

    if isinstance(module, nn.Linear):
        return delta.reshape(delta.shape[0], -1, delta.shape[-1]).sum(1)
    return delta.flatten(2).sum(-1)


def hook_grads(model, params: dict, inputs, labels, loss_fn: Callable):
    """({name: (k, *shape)}, per-sample losses (k,)) for Linear/Conv1d/Conv2d parameters; see `supports`."""
    layers, losses = capture_layers(model, params, inputs, labels, loss_fn)
    by_module: dict[int, list] = {}
    for name in params:
        module, attribute = owner(model, name)
        by_module.setdefault(id(module), []).append((name, module, attribute))
    # free each layer's buffers once its rows are formed: peak memory is then the rows plus one
    # layer's inputs, not the rows plus every layer's
    grads = {}
    for key, members in by_module.items():
        layer_input, delta = layers.pop(key)
        for name, module, attribute in members:
            if attribute == "weight":  # in bf16 under `precision: bf16`, returned as float32
                grads[name] = lowered(lambda: _weight_grad(module, layer_input, delta))
            else:
                grads[name] = _bias_grad(module, delta)
        del layer_input, delta
    return {name: grads[name] for name in params}, losses  # the caller's order
