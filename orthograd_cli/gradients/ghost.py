"""Memory-light projection (`method.per_sample.backend: gram`): OrthoGrad's global projection
without ever storing the k × d matrix G of per-sample retain gradients.

The projection needs only K = GGᵀ (k × k), b = G·g_u (k) and, once c solves Kc = b, the vector
Gᵀw = Σᵢ wᵢgᵢ. For a layer y = Wx, sample i's weight gradient is Dᵢ Xᵢᵀ, with Xᵢ (q × L) its
inputs at L positions (sequence steps, or conv patches unfolded) and Dᵢ (o × L) the output
gradients, so

    ⟨gᵢ, gⱼ⟩ = Σ_{l,m} (Dᵢᵀ Dⱼ)[l,m] · (Xᵢᵀ Xⱼ)[l,m]     ("ghost" dot products, O(k²L²(o+q)))
    ⟨gᵢ, g_u⟩ = Σ_l Dᵢ[:,l] · (G_u Xᵢ)[:,l]
    Σᵢ wᵢgᵢ   = Σᵢ wᵢ Dᵢ Xᵢᵀ                              (one weighted contraction)

Where the ghost products cost more than the layer's own per-sample gradients (early conv layers,
with many positions L and small weights), those are formed instead, used and freed, one layer at a
time, when they fit the memory budget (`method.per_sample.memory_gb`; by default a quarter of the
free device memory, and never more than the hooks backend's k·d float32 rows): a layer's plan is
chosen by operations among those that fit, by bytes when none does. Biases and BatchNorm
affine parameters (eval mode) have tiny per-sample gradients, formed directly. Everything comes
from one batched forward and backward with hooks; memory is the activations, not k·d.
"""

from __future__ import annotations

from collections.abc import Callable

from orthograd_cli.errors import RecipeError
from orthograd_cli.gradients.hooks import HooksUnsupported, capture_layers, owner, patches

FLOAT64 = 8


def memory_budget(memory_gb: float | None, device, hooks_bytes: int) -> int:
    """Bytes the gram backend may take for one layer's temporaries: the recipe's memory_gb, else a quarter
    of the free memory of the device; never more than the k·d float32 rows the hooks backend would keep."""
    import torch

    if memory_gb is not None:
        budget = int(memory_gb * 2**30)
    elif torch.device(device).type == "cuda":
        budget = torch.cuda.mem_get_info(device)[0] // 4
    else:
        import psutil

        budget = psutil.virtual_memory().available // 4
    return max(1, min(budget, hooks_bytes))


def supports(model, params: dict) -> bool:
    """True when every trainable tensor belongs to a Linear, ungrouped Conv1d/Conv2d or BatchNorm2d layer."""
    import torch.nn as nn

    from orthograd_cli.gradients import hooks

    return hooks.supports(model, params, extra=(nn.BatchNorm2d,))


class _Layer:
    """One hooked layer's inputs X (k, q, L) and output gradients D (k, o, L), as the formulas want."""

    def __init__(self, module, layer_input, delta):
        import torch.nn as nn

        self.module = module
        k = layer_input.shape[0]
        if isinstance(module, nn.Linear):
            self.inputs = layer_input.reshape(k, -1, layer_input.shape[-1]).transpose(1, 2)
            self.deltas = delta.reshape(k, -1, delta.shape[-1]).transpose(1, 2)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
            self.inputs, self.deltas = patches(module, layer_input), delta.flatten(2)
        else:  # BatchNorm2d in eval mode: y = weight·x̂ + bias with x̂ from the running statistics
            normalised = (layer_input - module.running_mean[:, None, None]) / \
                (module.running_var[:, None, None] + module.eps).sqrt()
            self.inputs, self.deltas = normalised.flatten(2), delta.flatten(2)

    def small_rows(self, attribute: str):
        """Per-sample gradients (k, n) of a bias or a BatchNorm weight: cheap to form outright."""
        if attribute == "bias":
            return self.deltas.sum(-1)
        return (self.deltas * self.inputs).sum(-1)  # BatchNorm weight: Σ_l δ·x̂ per channel

    def use_rows(self, budget: int) -> bool:
        """Form this layer's per-sample weight gradients (k·o·q float64) rather than ghost products (at least
        one sample's k·L² block, times 3 for both factors and their product): by operations (k·o·q·L + k²·o·q
        against k²L²(o+q)) when both plans fit the budget, else the one that fits, else the smaller."""
        k, q, length = self.inputs.shape
        o = self.deltas.shape[1]
        rows_bytes, ghost_bytes = k * o * q * FLOAT64, 3 * k * length * length * FLOAT64
        if (rows_bytes <= budget) != (ghost_bytes <= budget):
            return rows_bytes <= budget
        if rows_bytes > budget:
            return rows_bytes <= ghost_bytes
        return k * o * q * length + k * k * o * q < k * k * length * length * (o + q)


def _chunks(k: int, per_sample_bytes: int, budget: int):
    size = max(1, budget // max(1, per_sample_bytes))
    return [slice(start, min(k, start + size)) for start in range(0, k, size)]


def _add_weight(layer: _Layer, unlearn_grad, gram, along, budget: int) -> None:
    """Add one weight's ⟨gᵢ,gⱼ⟩ to `gram` and ⟨gᵢ,g_u⟩ to `along`."""
    import torch

    k, q, length = layer.inputs.shape
    o = layer.deltas.shape[1]
    g_u = unlearn_grad.reshape(o, q).double()
    deltas, inputs = layer.deltas.double(), layer.inputs.double()
    if layer.use_rows(budget):  # early conv layers: many positions L, small weights
        weight_rows = torch.einsum("kol,kql->koq", deltas, inputs).flatten(1)
        gram += weight_rows @ weight_rows.T
        along += weight_rows @ g_u.reshape(-1)
        return
    along += (torch.einsum("oq,kql->kol", g_u, inputs) * deltas).sum((1, 2))
    for i in _chunks(k, 3 * k * length * length * FLOAT64, budget):
        delta_dots = torch.einsum("iol,jom->ijlm", deltas[i], deltas)
        input_dots = torch.einsum("iql,jqm->ijlm", inputs[i], inputs)
        gram[i] += (delta_dots * input_dots).sum((2, 3))


def ghost_gram(model, params: dict, inputs, targets, loss_fn: Callable, unlearn_grad: dict,
               memory_gb: float | None = None, collective=None):
    """K = GGᵀ, b = G·g_u (float64) and the per-sample losses, from one batched forward+backward; with
    several processes (`collective`) over every rank's share of the batch.

    Returns also `combine(w) -> {name: Σᵢ wᵢgᵢ}`, valid until the next call.
    """
    import torch

    owners = {name: owner(model, name) for name in params}
    modules = {id(module): module for module, _ in owners.values()}
    try:
        captured, losses = capture_layers(model, params, inputs, targets, loss_fn)
    except HooksUnsupported as err:
        raise RecipeError(f"method.per_sample.backend: gram cannot run this model ({err})",
                          "use another per-sample backend (auto, vmap, loop)") from None
    if collective is not None:  # several processes: every rank's inputs and output gradients, in rank order
        captured = {key: [collective.gather(layer_input), collective.gather(delta)]
                    for key, (layer_input, delta) in captured.items()}
        losses = collective.gather(losses)
    layers = {key: _Layer(modules[key], layer_input, delta) for key, (layer_input, delta) in captured.items()}
    size = len(losses)
    device = next(iter(params.values())).device
    hooks_bytes = size * sum(p.numel() for p in params.values()) * 4
    if collective is None:
        budget = memory_budget(memory_gb, device, hooks_bytes)
    else:  # the budget picks each layer's plan, and so how its sums round: one plan for every rank
        budget = collective.decided_once(f"gram budget {hooks_bytes}",
                                         lambda: memory_budget(memory_gb, device, hooks_bytes))
    gram = torch.zeros(size, size, dtype=torch.float64, device=device)
    along = torch.zeros(size, dtype=torch.float64, device=device)
    for name, (module, attribute) in owners.items():
        layer = layers[id(module)]
        if attribute == "weight" and not isinstance(module, torch.nn.BatchNorm2d):
            _add_weight(layer, unlearn_grad[name], gram, along, budget)
        else:
            small = layer.small_rows(attribute).double()
            gram += small @ small.T
            along += small @ unlearn_grad[name].double().reshape(-1)
    def combine(weights) -> dict:
        """Σᵢ wᵢgᵢ per trainable tensor, straight from the kept inputs and output gradients."""
        weights = weights.to(device)
        result = {}
        for name, (module, attribute) in owners.items():
            layer = layers[id(module)]
            if attribute == "weight" and not isinstance(module, torch.nn.BatchNorm2d):
                value = torch.einsum("k,kol,kql->oq", weights, layer.deltas.double(), layer.inputs.double())
            else:
                value = weights @ layer.small_rows(attribute).double()
            result[name] = value.reshape(params[name].shape).to(params[name].dtype)
        return result

    return gram, along, losses, combine
