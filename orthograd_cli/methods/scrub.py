"""SCRUB (Kurmanji et al., NeurIPS 2023, "Towards Unbounded Machine Unlearning"), as the authors' code runs it.

A student (the model) moves away from a frozen teacher (the model before unlearning) on the forget set
and stays with it on the retain set, in alternating passes. Each cycle is a max pass over the forget
set (one step per forget batch: ascend KL(teacher ‖ student)), then a min pass over the retain set (one
step per retain batch: descend γ·CE + α·KL); after `max_passes` cycles only min passes follow.
Defaults: the paper's objective, KL between the teacher's and the student's output distributions
(temperature 1), and the authors' small-scale settings (`small_scale_unlearning.ipynb` in
meghdadk/SCRUB): msteps 3, gamma 1, alpha 0.5. Their code softens both outputs (kd_T 2); on the digits
that made the max passes sharpen the student's confidence in the forgotten class instead of removing
it (forget accuracy stayed 1.000 at every step length tried), so T is a setting with the paper's 1.

At the start the student is the teacher, so the first max pass has zero gradient (KL is at its
minimum); the first min pass moves the student and the next max pass has something to push on.
"""

import copy
import math

from pydantic import Field

from orthograd_cli.gradients.batching import forward
from orthograd_cli.gradients.per_sample import batch_grad
from orthograd_cli.gradients.projection import global_norm
from orthograd_cli.methods.base import Direction, MethodInfo, MethodSettings


class Settings(MethodSettings):
    max_passes: int = Field(3, ge=0, description="cycles that start with a max pass over the forget set (msteps)")
    temperature: float = Field(1.0, gt=0, description="distillation temperature T (the code's kd_T; the paper's 1)")
    ce_weight: float = Field(1.0, ge=0, description="γ, weight of the retain cross-entropy in a min step")
    kl_weight: float = Field(0.5, ge=0, description="α, weight of the retain KL to the teacher in a min step")


def distill_kl(student_logits, teacher_logits, temperature: float = 1.0):
    """KL(teacher ‖ student) on class outputs softened by T, times T² (its gradient scale then does not depend
    on T)."""
    import torch.nn.functional as F

    return F.kl_div(F.log_softmax(student_logits / temperature, -1), F.log_softmax(teacher_logits / temperature, -1),
                    log_target=True, reduction="batchmean") * temperature ** 2


def task_kl(loss_fn):
    """The KL SCRUB distils with, `(student, teacher, targets, T) -> loss`: the task's (Task.distill_kl: over
    classes, or a language model's token distributions at the positions its loss counts). `loss_fn` is the
    task's bound mean_loss (jobs/forget.py); a plain function distils class outputs."""
    task = getattr(loss_fn, "__self__", None)
    if task is not None:
        return task.distill_kl
    return lambda student, teacher, targets, temperature: distill_kl(student, teacher, temperature)


def make(model, params, forget_set, retain_set, spec, loss_fn, context):
    import torch

    settings = spec.settings
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    max_steps_per_pass = math.ceil(len(forget_set) / min(spec.unlearn_batch_size, len(forget_set)))
    min_steps_per_pass = math.ceil(len(retain_set) / min(spec.retain_batch_size, len(retain_set)))
    state = {"step": 0, "forget_kl": 0.0}  # the last max step's KL stands for the forget loss in min steps

    def is_max_step(n: int) -> bool:
        cycle, position = divmod(n, max_steps_per_pass + min_steps_per_pass)
        return cycle < settings.max_passes and position < max_steps_per_pass

    task_distill = task_kl(loss_fn)

    def kl(logits, teacher_logits, targets):
        return task_distill(logits, teacher_logits, targets, settings.temperature)

    def scrub_direction(model, params, forget_batch, retain_batch, spec, loss_fn) -> Direction:
        maximise = is_max_step(state["step"])
        state["step"] += 1
        if maximise:
            # max step: d = −∇ KL_T(teacher ‖ student) on the forget batch (the loop then ascends it)
            inputs, targets = forget_batch
            with torch.no_grad():
                teacher_logits = forward(teacher, inputs)
            grad, forget_kl = batch_grad(model, params, inputs, (teacher_logits, targets),
                                         lambda logits, given: kl(logits, *given))
            state["forget_kl"] = forget_kl
            return Direction(update={n: -g for n, g in grad.items()}, unlearn_loss=state["forget_kl"],
                             retain_loss=None, unlearn_grad_norm=global_norm(grad))
        # min step: d = ∇ [γ·CE + α·KL_T(teacher ‖ student)] on the retain batch
        inputs, labels = retain_batch
        with torch.no_grad():
            teacher_logits = forward(teacher, inputs)
        grad, retain_loss = batch_grad(
            model, params, inputs, (labels, teacher_logits),
            lambda logits, target: settings.ce_weight * loss_fn(logits, target[0]) + settings.kl_weight * kl(
                logits, target[1], target[0]))
        return Direction(update=grad, unlearn_loss=state["forget_kl"], retain_loss=retain_loss,
                         unlearn_grad_norm=0.0)

    scrub_direction.resume_state = state  # where a resumed run's SCRUB picks up its passes (methods/state.py)
    return scrub_direction


METHOD = MethodInfo(name="scrub", summary="alternate max passes away from a frozen teacher on the forget set with "
                    "min passes towards it on retain (method.scrub.*)", make=make,
                    tasks=("classification", "causal_lm"),
                    task_reason="it distils class or next-token distributions", settings=Settings)
