"""The unlearning loop shared by every method: draw batches, take the method's direction, update,
check the stop rule, tell the observer.

The pieces come from above: the sampler (sampler.py) says which samples each step uses, the stop
rule (stop.py) when to stop and what to measure, the observer (observer.py) who watches. The model
stays in eval mode throughout (BatchNorm on running statistics, dropout off), which per-sample
gradients need.

A step never waits for the device: its losses and diagnostics stay there as tensors and are read
(float(), which waits) together at the next stop-rule check, which has to read the device anyway.
A non-finite loss is found there too and named by the step it came from.

With several processes (distributed.py) every rank draws the same global batches and takes its share;
the stop rule's sets are scored sharded, and rank 0's row is sent to the others, so all stop together.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from orthograd_cli.errors import NumericalError
from orthograd_cli.gradients.projection import global_norm
from orthograd_cli.methods.observer import Observer
from orthograd_cli.methods.sampler import UnlearnSampler
from orthograd_cli.methods.state import LoopState, rng_state, set_rng_state
from orthograd_cli.methods.stop import StopRule


@dataclass
class UnlearnResult:
    steps: int
    stop_reason: str  # target, already_at_target, max_steps, time_budget or damage_limit
    stop_message: str  # the same in words, with the numbers
    history: list[dict] = field(default_factory=list)  # one row per stop-rule check
    written_step: int = 0  # the step whose weights `params` hold at the end (stop.chosen: the last, or the rule's)
    diagnostics: dict = field(default_factory=dict)
    retain_ids_sha256: str = ""
    wall_s: float = 0.0


def _summary(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    return {"first": values[0], "last": values[-1], "min": ordered[0], "median": ordered[len(ordered) // 2],
            "max": ordered[-1]}


DIAGNOSTICS = ("unlearn_loss", "retain_loss", "unlearn_grad_norm")
STATS = ("retain_rank", "kept_norm_ratio", "conflict_share")


def _unread(direction) -> dict:
    """What the loop keeps of a step until the next check: its scalar diagnostics, still on the device
    (not the update, which the next step overwrites)."""
    kept = {key: getattr(direction, key) for key in DIAGNOSTICS if getattr(direction, key) is not None}
    if direction.stats is not None:  # projection methods only
        kept.update({key: getattr(direction.stats, key) for key in STATS
                     if getattr(direction.stats, key) is not None})
    return kept


def _read(step: int, unread: dict) -> dict:
    """A step's diagnostics as numbers; a non-finite loss or gradient norm is an error naming the step."""
    import math

    values = {key: int(value) if key == "retain_rank" else float(value) for key, value in unread.items()}
    if not all(math.isfinite(values[key]) for key in DIAGNOSTICS if key in values):
        raise NumericalError(f"non-finite loss or gradient at step {step}",
                             "lower method.lr or check the checkpoint; nothing was written")
    return values


def apply_update(params: dict, update: dict, lr: float, optimizer) -> None:
    """θ ← θ − η·d/‖d‖ (normalised SGD), or hand d to Adam as the gradient. d = 0 leaves θ as it is."""
    import torch

    if optimizer is not None:
        for name, p in params.items():
            p.grad = update[name].to(p.dtype)
        optimizer.step()
        return
    norm = global_norm(update)
    scale = torch.where(norm > 0, lr / norm.clamp_min(1e-300), torch.zeros_like(norm))  # no `if`: no wait
    with torch.no_grad():
        for name, p in params.items():
            p.sub_(update[name] * scale.to(p.dtype))


def over_budget(max_minutes: float | None, row: dict) -> bool:
    """The time budget (method.stop.max_minutes) is spent at this check (its row's wall time, rank 0's)."""
    return max_minutes is not None and row["wall_s"] >= max_minutes * 60


def _restore(state: LoopState, params: dict, optimizer, sampler: UnlearnSampler, direction_fn, collective) -> None:
    """Put a saved state back: weights, optimizer, sampler, the method's counters and every random generator."""
    import torch

    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state.params[name])
    if optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
    sampler.load_state_dict(state.sampler)
    getattr(direction_fn, "resume_state", {}).update(state.method)
    if collective is not None:
        collective.sent_bytes = state.sent_bytes
    set_rng_state(state.rng)


def _reached(stop: StopRule, row: dict) -> str:
    return (f"{stop.check_name.replace('_', ' ')} accuracy {row[stop.watched]:.4f} reached target "
            f"{stop.target_forget_acc:.4f}")


def _damaged(stop: StopRule, row: dict, written: dict) -> str:
    return (f"damage {row['damage']:.4f} at step {row['step']} broke the limit {stop.max_damage:g}; wrote step "
            f"{written['step']}, the last check within it ({stop.check_name.replace('_', ' ')} accuracy "
            f"{written[stop.watched]:.4f}, target {stop.target_forget_acc:.4f}, damage {written['damage']:.4f})")


def _kept_copy(params: dict) -> dict:
    """The trainable weights as they are, on the CPU (the check a damage limit may write later)."""
    return {name: p.detach().to("cpu", copy=True) for name, p in params.items()}


def run_unlearning(model, params: dict, forget_set, retain_set, sampler: UnlearnSampler, stop: StopRule,
                   direction_fn: Callable, loss_fn: Callable, spec, runtime, observer: Observer | None = None,
                   collective=None, checkpointer=None) -> UnlearnResult:
    """Step until the stop rule is met or `spec.max_steps` (spec: the recipe's method section) are taken; with
    several processes (`collective`) each takes its share of the same global batches. `checkpointer`
    (jobs/resume.py): where the resumable state goes, when, and the state to continue from (None: start)."""
    import torch

    from orthograd_cli.interrupts import deferred

    observer = observer or Observer()
    optimizer = torch.optim.Adam(params.values(), lr=spec.lr) if spec.optimizer == "adam" else None
    model.eval()
    result = UnlearnResult(steps=0, stop_reason="max_steps",
                           stop_message=f"max_steps ({spec.max_steps}) reached before the stop target")
    per_step: dict[str, list] = {key: [] for key in (*STATS, "unlearn_loss", "retain_loss")}
    unread: list[tuple[int, dict]] = []  # steps since the last check, diagnostics still on the device
    latest: dict = {}
    kept: dict = {}  # with a damage limit: the step and weights of the check the rule has chosen so far
    restored = checkpointer.restored if checkpointer is not None else None
    if restored is not None:
        _restore(restored, params, optimizer, sampler, direction_fn, collective)
        result.history, result.steps, latest = restored.history, restored.step, restored.latest
        per_step.update(restored.per_step)
        kept = restored.kept
    started = time.perf_counter() - (restored.elapsed_s if restored is not None else 0.0)

    def read_steps() -> None:
        nonlocal latest
        for step, values in unread:
            latest = _read(step, values)
            for key in per_step:
                if key in latest:
                    per_step[key].append(latest[key])
        unread.clear()

    def check(step: int) -> bool:
        read_steps()
        row = stop.check(model, step)  # with several processes every rank scores its share of the sets
        row["wall_s"] = round(time.perf_counter() - started, 3)  # rank 0's clock decides the time budget for all
        if collective is not None:  # and rank 0's row decides for all, once every rank is seen to hold its weights
            collective.check_agreement(params, step)
            row = collective.broadcast(row)
        result.history.append(row)
        if stop.max_damage is not None and stop.chosen(result.history)["step"] == step:
            kept.update(step=step, params=_kept_copy(params))
        observer.check(row)
        return stop.reached(row)

    def broke_limit() -> bool:
        """Whether the last check broke the damage limit, which ends the run."""
        if stop.within_limit(result.history[-1]):
            return False
        result.stop_reason = "damage_limit"
        result.stop_message = _damaged(stop, result.history[-1], stop.chosen(result.history))
        return True

    def after_step(step: int) -> bool:
        """The check due after `step`, if any, and whether the run ends there."""
        done = stop.due(step) and check(step)
        observer.step(step, result.history[-1], latest)
        if done:
            result.stop_reason, result.stop_message = "target", _reached(stop, result.history[-1])
            return True
        if stop.due(step) and broke_limit():
            return True
        if stop.due(step) and over_budget(spec.stop.max_minutes, result.history[-1]):
            result.stop_reason = "time_budget"
            result.stop_message = (f"time budget ({spec.stop.max_minutes:g} min) used at step {step}, "
                                   f"{stop.check_name.replace('_', ' ')} accuracy "
                                   f"{result.history[-1][stop.watched]:.4f}, target {stop.target_forget_acc:.4f}")
            return True
        return False

    def snapshot(check_pending: bool) -> LoopState:
        read_steps()
        return LoopState(step=result.steps, params=params, optimizer=optimizer and optimizer.state_dict(),
                         sampler=sampler.state_dict(), rng=rng_state(), history=result.history,
                         per_step=per_step, latest=latest, elapsed_s=time.perf_counter() - started,
                         method={key: value.item() if hasattr(value, "item") else value  # a 0-dim tensor: its number
                                 for key, value in getattr(direction_fn, "resume_state", {}).items()},
                         sent_bytes=collective.sent_bytes if collective is not None else 0,
                         check_pending=check_pending, kept=kept)

    observer.start(spec.max_steps, result.steps)
    checking = None  # the step whose check is under way
    try:
        finished = False
        if restored is None and check(0):
            result.stop_reason = "already_at_target"
            result.stop_message = "forget accuracy already at target before any step"
            finished = True
        elif restored is not None and restored.check_pending:  # interrupted during this check: do it again
            checking = restored.step
            finished = after_step(restored.step)
            checking = None
        if not finished:
            for step in range(result.steps + 1, spec.max_steps + 1):
                with deferred():  # a signal waits for the step: weights, optimizer and sampler move together
                    forget_index, retain_index = sampler.next_step()
                    if collective is not None:  # this rank's share of the same global batches
                        forget_index, retain_index = collective.shard(forget_index), collective.shard(retain_index)
                    forget_batch = forget_set.batch(forget_index, runtime.device)
                    retain_batch = retain_set.batch(retain_index, runtime.device)
                    with runtime.unlearning_passes():
                        direction = direction_fn(model, params, forget_batch, retain_batch, spec, loss_fn)
                    apply_update(params, direction.update, spec.lr, optimizer)
                    unread.append((step, _unread(direction)))
                    del direction  # its update: memory the next step needs
                    result.steps = step
                checking = step
                if after_step(step):
                    break
                checking = None
                if checkpointer is not None and checkpointer.due(step):
                    with deferred():
                        checkpointer.save(snapshot(check_pending=False))
                    observer.saved(step, interrupted=False)
            else:  # the budget ran out between checks: the weights as they are decide whether the target was met
                checking = result.steps
                if result.steps and not stop.due(result.steps):
                    if check(result.steps):
                        result.stop_reason = "target"
                        result.stop_message = _reached(stop, result.history[-1]) + " at the last step"
                    else:
                        broke_limit()
        read_steps()
        result.written_step = result.steps
        if kept and kept["step"] != result.steps:  # the rule chose an earlier check: its weights are written
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(kept["params"][name])
            result.written_step = kept["step"]
    except (KeyboardInterrupt, SystemExit):  # SIGINT, SIGTERM, SIGHUP: keep what the steps reached, then exit
        if checkpointer is not None and result.steps > 0:
            if checking is not None:  # the check it interrupted is done again by the resumed run
                result.history = [row for row in result.history if row["step"] != checking]
            done_check = bool(result.history) and result.history[-1]["step"] == result.steps
            with deferred():
                checkpointer.save(snapshot(check_pending=stop.due(result.steps) and not done_check))
            observer.saved(result.steps, interrupted=True)
        raise
    result.wall_s = time.perf_counter() - started
    result.retain_ids_sha256 = sampler.retain_ids_sha256
    result.diagnostics = {key: _summary(values) for key, values in per_step.items() if values}
    observer.end(result)
    return result
