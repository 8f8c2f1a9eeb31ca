"""SCRUB (Kurmanji et al. 2023): the student moves away from a frozen teacher on the forget set and
stays with it on the retain set.

Max-step: ascend KL(teacher ‖ student) on the forget batch. Min-step: descend KL(teacher ‖ student)
+ cross-entropy on the retain batch. Here both are taken as one direction per step, weighted by α.
The original alternates them. The teacher is a frozen copy of the model before unlearning. At the
start student and teacher agree, so the forget KL and its gradient are zero, and the retain term
moves the model first.
"""

import copy

from orthograd_cli.gradients.per_sample import batch_grad
from orthograd_cli.gradients.projection import global_norm
from orthograd_cli.methods.base import Direction, MethodInfo, alpha_or_default, combine

DEFAULT_ALPHA = 0.5


def distill_kl(student_logits, teacher_logits):
    import torch.nn.functional as F

    return F.kl_div(F.log_softmax(student_logits, -1), F.log_softmax(teacher_logits, -1), log_target=True,
                    reduction="batchmean")


def make(model, params, forget_set, retain_set, spec, loss_fn, seed: int = 0):
    import torch

    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def scrub_direction(model, params, forget_batch, retain_batch, spec, loss_fn) -> Direction:
        alpha = alpha_or_default(spec, DEFAULT_ALPHA)
        forget_inputs, _ = forget_batch
        retain_inputs, retain_labels = retain_batch
        with torch.no_grad():
            forget_teacher, retain_teacher = teacher(forget_inputs), teacher(retain_inputs)
        forget_kl_grad, forget_kl = batch_grad(model, params, forget_inputs, forget_teacher, distill_kl)
        retain_grad, retain_loss = batch_grad(
            model, params, retain_inputs, (retain_labels, retain_teacher),
            lambda logits, target: distill_kl(logits, target[1]) + loss_fn(logits, target[0]))
        # d = α·∇[KL_r + CE_r] − (1−α)·∇KL_u
        update = combine([(alpha, retain_grad), (-(1 - alpha), forget_kl_grad)])
        return Direction(update=update, unlearn_loss=float(forget_kl), retain_loss=float(retain_loss),
                         unlearn_grad_norm=float(global_norm(forget_kl_grad)))

    return scrub_direction


METHOD = MethodInfo(name="scrub", summary="move away from a frozen teacher on the forget set, stay close on retain",
                    make=make, default_alpha=DEFAULT_ALPHA, tasks=("classification",),
                    task_reason="it distils class posteriors")
