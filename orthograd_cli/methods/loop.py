"""The unlearning loop shared by every method: sampling, the update, the stop rule, diagnostics.

Forget batches cycle through a seeded shuffle of the forget set; each step draws k retain samples
without replacement from a seeded generator, and the ids drawn go into a running sha256 so the
report can prove which samples were used. The model stays in eval mode throughout (BatchNorm on
running statistics, dropout off), which per-sample gradients need.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from orthograd_cli.errors import NumericalError, UsageError
from orthograd_cli.gradients.batching import pass_precision
from orthograd_cli.gradients.projection import global_norm
from orthograd_cli.recipe import Recipe


@dataclass
class UnlearnResult:
    steps: int
    stop_reason: str
    history: list[dict] = field(default_factory=list)  # one row per stop-rule check
    diagnostics: dict = field(default_factory=dict)
    retain_ids_sha256: str = ""
    wall_s: float = 0.0


class ForgetCycler:
    """Endless forget batches: a fresh seeded shuffle each pass over the set."""

    def __init__(self, size: int, batch_size: int, generator):
        self.size, self.batch_size, self.generator = size, min(batch_size, size), generator
        self.order, self.position = None, size

    def next_index(self):
        import torch

        if self.position + self.batch_size > self.size:
            self.order, self.position = torch.randperm(self.size, generator=self.generator), 0
        index = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return index


def _summary(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    return {"first": values[0], "last": values[-1], "min": ordered[0], "median": ordered[len(ordered) // 2],
            "max": ordered[-1]}


def _check_finite(direction, step: int) -> None:
    import math

    values = (direction.unlearn_loss, direction.retain_loss, direction.unlearn_grad_norm)
    if not all(math.isfinite(v) for v in values if v is not None):
        raise NumericalError(f"non-finite loss or gradient at step {step}",
                             "lower method.lr or check the checkpoint; nothing was written")


def apply_update(params: dict, update: dict, lr: float, optimizer) -> None:
    """θ ← θ − η·d/‖d‖ (normalised SGD), or hand d to Adam as the gradient."""
    import torch

    if optimizer is not None:
        for name, p in params.items():
            p.grad = update[name].to(p.dtype)
        optimizer.step()
        return
    norm = global_norm(update)
    if norm == 0:
        return
    with torch.no_grad():
        for name, p in params.items():
            p.sub_(update[name] * (lr / norm).to(p.dtype))


def run_unlearning(model, params: dict, forget_set, retain_set, check_set, recipe: Recipe, target_forget_acc: float,
                   direction_fn: Callable, loss_fn: Callable, score: Callable, device: str,
                   progress: bool = True, tracked: dict | None = None) -> UnlearnResult:
    """`score(model, dataset) -> SetResult`. Only `check_set` (forget data) decides when to stop; the
    `tracked` sets (e.g. test) are scored at each check for the report's trade-off curve."""
    import torch

    spec = recipe.method
    k = spec.retain_batch_size
    if k > len(retain_set):
        raise UsageError(f"method.retain_batch_size={k} is larger than the retain set ({len(retain_set)} samples)",
                         f"lower it, e.g. --set method.retain_batch_size={len(retain_set)}")
    generator = torch.Generator().manual_seed(recipe.seed)
    forget_batches = ForgetCycler(len(forget_set), spec.unlearn_batch_size, generator)
    optimizer = torch.optim.Adam(params.values(), lr=spec.lr) if spec.optimizer == "adam" else None
    ids_digest = hashlib.sha256()
    model.eval()
    started = time.perf_counter()
    result = UnlearnResult(steps=0, stop_reason=f"max_steps ({spec.max_steps}) reached")
    per_step = {"retain_rank": [], "kept_norm_ratio": [], "conflict_share": [], "unlearn_loss": [], "retain_loss": []}

    def check(step: int) -> bool:
        row = {"step": step}
        for name, dataset in {"forget": check_set, **(tracked or {})}.items():
            scored = score(model, dataset)
            row[f"{name}_acc"] = scored.accuracy
            if scored.wer is not None:
                row[f"{name}_wer"] = scored.wer
        result.history.append(row)
        return row["forget_acc"] <= target_forget_acc

    from orthograd_cli.cli.output import progress_bar

    with progress_bar(enabled=progress) as bar:
        task = bar.add_task("unlearning", total=spec.max_steps, info="")
        if check(0):
            result.stop_reason = "forget accuracy already at target before any step"
        else:
            for step in range(1, spec.max_steps + 1):
                forget_index = forget_batches.next_index()
                retain_index = torch.randperm(len(retain_set), generator=generator)[:k]
                ids_digest.update("\n".join(retain_set.manifest.samples[i].id for i in retain_index.tolist()).encode())
                forget_batch = forget_set.batch(forget_index, device)
                retain_batch = retain_set.batch(retain_index, device)
                with pass_precision(recipe.precision, device):
                    direction = direction_fn(model, params, forget_batch, retain_batch, spec, loss_fn)
                _check_finite(direction, step)
                apply_update(params, direction.update, spec.lr, optimizer)
                result.steps = step
                for key in ("unlearn_loss", "retain_loss"):
                    if getattr(direction, key) is not None:
                        per_step[key].append(getattr(direction, key))
                if direction.stats is not None:  # projection methods only
                    for key in ("retain_rank", "kept_norm_ratio", "conflict_share"):
                        per_step[key].append(getattr(direction.stats, key))
                done = step % spec.stop.check_every == 0 and check(step)
                last = result.history[-1]["forget_acc"]
                retain = "–" if direction.retain_loss is None else f"{direction.retain_loss:.3g}"
                bar.update(task, advance=1, info=f"unlearn loss {direction.unlearn_loss:.3g}  "
                                                 f"retain loss {retain}  forget acc {last:.3f}")
                if done:
                    result.stop_reason = f"forget accuracy {last:.4f} reached target {target_forget_acc:.4f}"
                    break
    result.wall_s = time.perf_counter() - started
    result.retain_ids_sha256 = ids_digest.hexdigest()
    result.diagnostics = {key: _summary(values) for key, values in per_step.items() if values}
    return result
