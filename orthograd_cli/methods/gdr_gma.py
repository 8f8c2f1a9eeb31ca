"""GDR-GMA (Lin et al., ACM MM 2024): rectify conflicting directions, then weight them by the retain loss.

Per parameter tensor, with r the mean retain gradient and t = −g_u the ascent direction: where
cos(r, t) < 0 (direction rectification), r' = r − ⟨t,r⟩/‖t‖²·t and t' = t − ⟨t,r⟩/‖r'‖²·r'.
Magnitude adjustment: λ = 1/(1 + exp(γ(L_r − ε))) and d = (1−λ)·r' + λ·t', so ascent dominates
while the retain loss L_r is under ε and gives way to repair once it rises. γ = 100 and ε = 0.02
(`method.gdr_gma.gamma`, `.epsilon`) follow the authors' code. Unlike OrthoGrad it projects against the *mean* retain gradient. The authors'
memory bank of past forget gradients for the last layer is left out.
"""

from pydantic import Field

from orthograd_cli.gradients.per_sample import batch_grad
from orthograd_cli.gradients.projection import global_norm
from orthograd_cli.methods.base import Direction, MethodInfo, MethodSettings


class Settings(MethodSettings):
    gamma: float = Field(100.0, gt=0, description="sharpness γ of the weight λ = 1/(1 + exp(γ(L_r − ε)))")
    epsilon: float = Field(0.02, ge=0, description="retain loss ε at which ascent and repair weigh alike")


def rectify(r, t):
    """Project each of two conflicting tensors onto the normal plane of the other (as the authors' code)."""
    import torch

    r_flat, t_flat = r.reshape(-1), t.reshape(-1)
    dot = r_flat @ t_flat
    # both branches computed and one picked on the device: an `if` on `dot` would wait for it every step
    conflict = dot < 0  # (a negative dot product means neither tensor is zero)
    r_new = r_flat - dot / (t_flat @ t_flat).clamp_min(1e-30) * t_flat
    t_new = t_flat - dot / (r_new @ r_new).clamp_min(1e-30) * r_new
    return torch.where(conflict, r_new, r_flat).view_as(r), torch.where(conflict, t_new, t_flat).view_as(t)


def make(model, params, forget_set, retain_set, spec, loss_fn, context):
    return gdr_gma_direction


def gdr_gma_direction(model, params, forget_batch, retain_batch, spec, loss_fn) -> Direction:
    import torch

    unlearn_grad, unlearn_loss = batch_grad(model, params, *forget_batch, loss_fn)
    retain_grad, retain_loss = batch_grad(model, params, *retain_batch, loss_fn)
    settings = spec.settings
    weight = torch.sigmoid(-settings.gamma * (retain_loss.double() - settings.epsilon))  # 1/(1 + exp(γ(L_r − ε)))
    update = {}
    for n in params:
        r, t = rectify(retain_grad[n], -unlearn_grad[n])
        update[n] = (1 - weight) * r + weight * t
    return Direction(update=update, unlearn_loss=unlearn_loss, retain_loss=retain_loss,
                     unlearn_grad_norm=global_norm(unlearn_grad))


METHOD = MethodInfo(name="gdr_gma", summary="rectify against the mean retain gradient, weighted by the retain loss "
                    "(method.gdr_gma.gamma, .epsilon)", make=make, settings=Settings)
