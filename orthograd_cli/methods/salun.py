"""SalUn (Fan et al. 2024): random-label unlearning restricted to the weights most salient for the forget set.

The saliency mask keeps the entries whose forget-loss gradient magnitude, over the whole forget
set, is in the top `method.salun.salient_share` (half, the paper's default). It is computed once,
before the first step. On fresh LoRA adapters only lora_B has gradient then, so SalUn on LoRA
trains lora_B alone.
"""

from pydantic import Field

from orthograd_cli.gradients.batching import batch_len
from orthograd_cli.gradients.per_sample import batch_grad
from orthograd_cli.methods import random_label
from orthograd_cli.methods.base import MethodInfo, MethodSettings


class Settings(MethodSettings):
    salient_share: float = Field(0.5, gt=0, le=1, description="share of the weights the mask keeps (most salient)")


def saliency_mask(model, params, forget_set, loss_fn, device, salient_share: float, batch_size: int = 256) -> dict:
    import torch

    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for start in range(0, len(forget_set), batch_size):
        inputs, labels = forget_set.batch(torch.arange(start, min(start + batch_size, len(forget_set))), device)
        grads, _ = batch_grad(model, params, inputs, labels, loss_fn)
        for n, g in grads.items():
            total[n] += g * batch_len(inputs)
    magnitudes = torch.cat([g.abs().reshape(-1) for g in total.values()])
    threshold = torch.quantile(magnitudes.float().cpu()[torch.randperm(len(magnitudes))[:1_000_000]],
                               1 - salient_share) if len(magnitudes) else 0
    # strictly above: with fresh LoRA adapters over half the entries have exactly zero gradient
    # (lora_A while lora_B is still zero), and ">=" would then keep every weight
    return {n: (g.abs() > threshold).to(g.dtype) for n, g in total.items()}


def make(model, params, forget_set, retain_set, spec, loss_fn, context):
    device = next(iter(params.values())).device
    mask = saliency_mask(model, params, forget_set, loss_fn, device, spec.settings.salient_share)
    return random_label.make(model, params, forget_set, retain_set, spec, loss_fn, context, mask=mask)


METHOD = MethodInfo(name="salun", summary="random labels on the weights most salient for the forget loss "
                    "(method.salun.salient_share)", make=make, default_alpha=random_label.DEFAULT_ALPHA,
                    tasks=("classification",), task_reason=random_label.RELABELS, settings=Settings)
