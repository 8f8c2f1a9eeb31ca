"""`forget --tune`: find, within a budget, a setting that meets the run's constraints on a model we did not train.

No fixed step length, α or step budget suits every model: OrthoGrad protects each step's k retain samples to
first order, and the second-order damage to everything else depends on the model. So the run first tries
candidate settings on validation splits, as `compare --sweep` does (jobs/sweep.py: the forget set, retain_fit
= 80 % of the retain set for the updates, retain_val = the other 20 % in the test set's place; never the test
set), each stopping at the real run's stop target.

Constraints: reach that target with retain_val's accuracy at most `method.tune.max_damage` below the
original's (speech: the WER rise). Every candidate runs under that damage limit (methods/stop.py), so one that
breaks it ends at that check: a failing candidate costs little. The search space is `method.tune.space`, or by
default the step length at 1, 1/2, 1/4 and 1/8 times the recipe's with α at the recipe's (else the method's
default) and at 0.5 (for methods with a retain term), tried longest step first (the cheapest to run, if it
holds) up to `method.tune.budget_runs` candidates or `budget_minutes`. Once a candidate has met the
constraints, later ones run at most as many steps as it took (more could not be cheaper). The cheapest candidate
that meets the constraints (the fewest steps, then the least damage) wins; if none does, the one with the best
validation UIS, and the report says so. The real run then uses the chosen setting on the real sets, under the
recipe's own stop rule and requirements.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path

from orthograd_cli.context import RunContext
from orthograd_cli.errors import UsageError
from orthograd_cli.jobs import sweep
from orthograd_cli.loading import Loaded
from orthograd_cli.report import SweepCandidate, Tuning

# The default space's step lengths, times the recipe's: never longer. Validation samples are training samples, which
# a model still gets right after a step that costs it unseen ones; with 2× in the space, the fewest-steps rule chose
# it on a held-out zoo member whose other classes then lost 0.153 of test accuracy (the recipe's own step: 0.003).
LR_FACTORS = (1.0, 0.5, 0.25, 0.125)
RETAIN_ALPHA = 0.5  # the default space's second α: as much retain descent as forgetting
ORDER = "the space's product in the order given (default: longest step first, then α lowest first)"
RULE = ("the candidate that met the constraints with the fewest steps, then the least damage, then the first "
        "tried; if none met them, the lowest validation UIS")


def search_space(recipe) -> dict[str, list]:
    """The recipe's `method.tune.space`, checked, or the default for its method."""
    from orthograd_cli.methods import METHODS

    space = recipe.method.tune.space
    if space:
        for key, values in space.items():
            sweep.check_key(key, "method.tune.space", fixed=("method.tune.", "method.stop."))
            if not values:
                raise UsageError(f"method.tune.space '{key}' lists no values", "give at least one value to try")
        return dict(space)
    spec = recipe.method
    default = {"method.lr": [round(spec.lr * factor, 12) for factor in LR_FACTORS]}
    method_alpha = METHODS[spec.name].default_alpha
    if method_alpha is not None:
        alpha = spec.alpha if spec.alpha is not None else method_alpha
        default["method.alpha"] = sorted({alpha, RETAIN_ALPHA})
    return default


def candidates(space: dict[str, list], budget: int) -> list[dict]:
    settings = [dict(zip(space, values)) for values in itertools.product(*space.values())]
    return settings[:budget]


def tune_plan(loaded: Loaded) -> dict:
    """What `forget --tune --dry-run` shows: the candidates in the order they would run, the splits, the limit."""
    recipe = loaded.recipe
    spec = recipe.method.tune
    validation = sweep.validation_split(loaded, recipe.seed)
    return {"candidates": candidates(search_space(recipe), spec.budget_runs), "budget_runs": spec.budget_runs,
            "budget_minutes": spec.budget_minutes, "max_damage": spec.max_damage,
            "val_unit": loaded.task.accuracy_unit(validation.sets["test"]),
            "retain_fit": len(validation.sets["retain"]), "retain_val": len(validation.sets["test"]), "rule": RULE}


def coarse_limit_hint(val_unit: float | None, max_damage: float) -> str | None:
    """Why no candidate may have met the constraints: retain_val cannot show a fall finer than one sample (speech:
    one word), and when that is more than the limit, a single one lost breaks it (a 48-utterance retain set leaves
    retain_val about 44 words: 0.023 > 0.02)."""
    from orthograd_cli.methods.stop import LIMIT_SLACK

    if val_unit is None or val_unit <= max_damage + LIMIT_SLACK:
        return None
    return (f"one sample (speech: one word) of retain_val is {val_unit:.4f}, more than method.tune.max_damage "
            f"({max_damage:g}), so losing a single one breaks the limit; set method.tune.max_damage={val_unit:.4f} or "
            "more to allow one, or give a larger retain set")


def label(setting: dict) -> str:
    return ", ".join(f"{key.split('.')[-1]}={value}" for key, value in setting.items())


def constraints(recipe, target: float) -> dict:
    """What every candidate shares: the real run's target, the damage limit watched on retain_val (the
    validation split's test set) only."""
    return {"method.tune.enabled": False, "method.stop.target_forget_acc": target,
            "method.stop.max_damage": recipe.method.tune.max_damage, "method.stop.retain_holdout": 0.0}


def step_cap(tried: list[SweepCandidate], recipe) -> dict:
    """A candidate that needs more steps than one already met cannot win: it runs at most that many."""
    steps = [c.steps for c in tried if c.met]
    return {"method.max_steps": min(min(steps), recipe.method.max_steps)} if steps else {}


def met(candidate: SweepCandidate) -> bool:
    return candidate.status == "ok" and bool(candidate.target_reached) and candidate.stop_reason != "damage_limit"


def chosen(tried: list[SweepCandidate]) -> SweepCandidate | None:
    """RULE over the candidates in the order tried."""
    meeting = [c for c in tried if c.met]
    if meeting:
        return min(meeting, key=lambda c: (c.steps, c.damage or 0.0, tried.index(c)))
    scored = [c for c in tried if c.status == "ok" and c.score is not None]
    return min(scored, key=lambda c: (c.score, tried.index(c))) if scored else None


def tune(loaded: Loaded, context: RunContext, target: float, observer=None, on_candidate=None) -> Tuning:
    """Try the candidates on the validation split and pick one (RULE)."""
    recipe = context.recipe
    spec = recipe.method.tune
    space = search_space(recipe)
    validation = sweep.validation_split(loaded, recipe.seed)
    val_unit = loaded.task.accuracy_unit(validation.sets["test"])
    fixed = constraints(recipe, target)
    started = time.perf_counter()
    tried: list[SweepCandidate] = []
    settings = candidates(space, spec.budget_runs)
    with tempfile.TemporaryDirectory(prefix="orthograd-tune-") as scratch:
        for i, setting in enumerate(settings):
            if spec.budget_minutes is not None and time.perf_counter() - started >= spec.budget_minutes * 60:
                break
            capped = step_cap(tried, recipe)
            if observer is not None:
                observer.run(f"tune {i + 1}/{len(settings)} " + label(setting))
            candidate = sweep.run_candidate(validation, context, setting, {**fixed, **capped},
                                            Path(scratch) / str(i), observer=observer)
            candidate.met, candidate.capped_at = met(candidate), capped.get("method.max_steps")
            tried.append(candidate)
            if on_candidate:
                on_candidate(candidate)
    if observer is not None:
        observer.run("unlearning")
    best = chosen(tried)
    return Tuning(space=space, order=ORDER, budget_runs=spec.budget_runs, budget_minutes=spec.budget_minutes,
                  validation=f"retain split {1 - sweep.VALIDATION_SHARE:.0%} / {sweep.VALIDATION_SHARE:.0%} "
                             f"(retain_fit for the updates / retain_val watched), seed {recipe.seed}; the whole "
                             "forget set",
                  constraints=f"reach the stop target ({target:.4f}) with retain_val {loaded.task.accuracy_name} "
                              f"at most {spec.max_damage:g} below the original's",
                  max_damage=spec.max_damage, val_unit=val_unit, target_forget_acc=target, rule=RULE,
                  chosen=best.setting if best else None,
                  met=bool(best and best.met), candidates=tried, wall_s=round(time.perf_counter() - started, 3))
