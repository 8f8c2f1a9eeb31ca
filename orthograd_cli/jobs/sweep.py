"""`compare --sweep`: the same tuning budget for every method, chosen without looking at the test set.

Each candidate setting (the product of the swept values) runs once per method on a validation split
carved from the retain set: the method unlearns the forget set keeping `retain_fit` (80 % of the
retain samples), and `retain_val` (the other 20 %, never used in an update) stands in for the test
set. Every candidate stops at the real run's forget-accuracy target (the original model's accuracy,
one number fixed before any candidate runs). The score is the Unlearning Impact Score on that split,
  ½(|O_v − U_v| + F)/O_v,  F = U_u class-wise, |T − U_u| sample-wise,
with O_v, U_v the retain_val accuracy before and after, U_u the forget accuracy after and T the
target; or, with `select`, any metric of the candidate's report (by its direction or target).
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import replace
from pathlib import Path

from orthograd_cli.errors import UsageError, clip
from orthograd_cli.context import RunContext
from orthograd_cli.loading import Loaded
from orthograd_cli.recipe import Recipe, apply_override, parse_recipe, yaml_value
from orthograd_cli.report import SweepCandidate

VALIDATION_SHARE = 0.2


# what a sweep may vary: how a method unlearns, never what is measured (task, data, eval) or the seed
SWEEPABLE = ("method.", "lora.")


def parse_sweep(assignments: list[str]) -> dict[str, list]:
    """`["method.lr=0.01,0.03", "method.alpha=0,0.5"]` → {key: [values]} (each value parsed as YAML)."""
    grid = {}
    for assignment in assignments:
        key, _, raw = assignment.partition("=")
        key = key.strip()
        if not key or not raw.strip():
            raise UsageError(f"sweep '{clip(assignment)}': expected KEY=VALUE,VALUE,...",
                             "e.g. method.lr=0.01,0.03,0.1")
        check_key(key, "sweep")
        values = [yaml_value(v, f"sweep '{clip(key)}'") for v in raw.split(",") if v.strip()]
        grid[key] = values
    return grid


def check_key(key: str, what: str, fixed: tuple[str, ...] = ("method.tune.",)) -> None:
    """A sweep or a tuning search varies how a method unlearns: method.* and lora.* keys, less the method itself
    and the `fixed` sections every candidate shares."""
    if not key.startswith(SWEEPABLE) or key == "method.name" or key.startswith(fixed):
        raise UsageError(f"{what} '{clip(key)}': a search varies method.* and lora.* settings (not the method "
                         f"itself, {' or '.join(fixed)}*, the task, the data, the evaluation or the seed)",
                         "compare methods with --methods and seeds with --seeds")


def candidates_for(method: str, grid: dict[str, list]) -> list[dict]:
    """The settings a method is tried with: keys under another method's own section do not change it, and
    neither does α for a method without one."""
    from orthograd_cli.methods import METHODS

    others = tuple(f"method.{name}." for name in METHODS if name != method)
    keys = [key for key in grid if not key.startswith(others)
            and not (key == "method.alpha" and METHODS[method].default_alpha is None)]
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[key] for key in keys))]


def with_setting(recipe: Recipe, setting: dict) -> Recipe:
    data = recipe.model_dump(mode="json")
    for key, value in setting.items():
        apply_override(data, f"{key}={_yaml(value)}")
    return parse_recipe(data, "sweep " + ", ".join(f"{k}={v}" for k, v in setting.items()))


def _yaml(value) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def validation_split(loaded: Loaded, seed: int) -> Loaded:
    """forget, retain_fit (as retain) and retain_val (as test), carved from the retain set, seeded: the same draw
    as a retain holdout of VALIDATION_SHARE (methods/stop.split_holdout)."""
    from orthograd_cli.methods.stop import split_holdout

    retain = loaded.sets["retain"]
    if len(retain) < 2:
        raise UsageError("sweep: the retain set needs at least 2 samples to carve a validation split from")
    fit, val = split_holdout(retain, VALIDATION_SHARE, seed, "retain")
    sets = {"forget": loaded.sets["forget"], "retain": fit, "test": val}
    return replace(loaded, sets=sets, manifests={name: dataset.manifest for name, dataset in sets.items()}, notes=[])


def validation_score(report, mode: str, select: str) -> float | None:
    """Lower is better."""
    after, before = report.metrics.after, report.metrics.before
    if select == "uis":
        o_v, u_v, u_u = before["test_acc"].value, after["test_acc"].value, after["forget_acc"].value
        forget_term = u_u if mode == "class" else abs(report.target_forget_acc - u_u)
        return 0.5 * (abs(o_v - u_v) + forget_term) / o_v if o_v else None
    metric = after.get(select)
    if metric is None or metric.value is None:
        return None
    if metric.target is not None and not isinstance(metric.target, str):
        return abs(metric.value - metric.target)
    return -metric.value if metric.higher_is_better else metric.value


def run_candidate(validation: Loaded, context: RunContext, setting: dict, fixed: dict, folder: Path,
                  select: str = "uis", observer=None) -> SweepCandidate:
    """One candidate: a forget run of the context's recipe with `setting` (what is searched) and `fixed` (what
    every candidate shares: the method, the real run's target, a damage limit) on the validation split, written
    into `folder`, scored. A candidate the tool refuses or that fails numerically is recorded as failed."""
    from orthograd_cli.errors import OrthogradError
    from orthograd_cli.jobs.forget import forget_into

    spec = with_setting(context.recipe, {**setting, **fixed})
    folder.mkdir(parents=True)
    try:
        report = forget_into(validation, context.derive(spec), folder, folder, observer)
    except OrthogradError as err:
        return SweepCandidate(setting=setting, status="failed", reason=str(err))
    return SweepCandidate(setting=setting, status="ok", score=validation_score(report, spec.eval.mode, select),
                          steps=report.steps, metrics=report.metrics.after, stop_reason=report.stop_reason,
                          written_step=report.written_step, target_reached=report.target_reached,
                          damage=report.history[-1].get("damage"), wall_s=report.wall_s)


def choose(loaded: Loaded, context: RunContext, methods: list[str], grid: dict[str, list],
           select: str, target: float, observer=None, on_candidate=None) -> dict[str, list[SweepCandidate]]:
    """Every method's candidates on the validation split, scored; the best (lowest score) first. Each candidate
    runs in a context derived from `context`, with its own recipe."""
    validation = validation_split(loaded, context.recipe.seed)
    tried = {}
    with tempfile.TemporaryDirectory(prefix="orthograd-sweep-") as scratch:
        for method in methods:
            tried[method] = []
            for i, setting in enumerate(candidates_for(method, grid)):
                fixed = {"method.name": method, "method.stop.target_forget_acc": target}
                candidate = run_candidate(validation, context, setting, fixed, Path(scratch) / method / str(i),
                                          select, observer)
                tried[method].append(candidate)
                if on_candidate:
                    on_candidate(method, candidate)
            # ties (e.g. no damage visible on the validation split) go to the candidate that needed fewer steps
            tried[method].sort(key=lambda c: (c.score is None, c.score if c.score is not None else 0, c.steps or 0))
    return tried
