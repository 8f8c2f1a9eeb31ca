"""When unlearning stops, what is measured each time it checks, and which check's weights are written.

Every `check_every` steps the forget data (the forget set, or its held-out share) is scored; the run
stops once its accuracy is at or under the target. The tracked sets (test, forget_test) are scored
at the same checks for the report's trade-off curve.

With a damage limit (`method.stop.max_damage`) the rule also watches the rest of the model: the held-out
share of the retain set (`method.stop.retain_holdout`, never used in updates) and the test set when given.
A check whose accuracy on a watched set fell more than the limit below the original's ends the run, and
the run writes the weights of the check `chosen_check` picks (the declared rule, DAMAGE_RULE): an
overshoot is never what ships.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from orthograd_cli.errors import UsageError


@dataclass
class StopRule:
    target_forget_acc: float
    check_every: int
    check_set: object  # the forget data the rule reads
    score: Callable  # score(model, dataset) -> SetResult
    tracked: dict = field(default_factory=dict)  # name -> dataset, scored at each check
    check_name: str = "forget"  # the check set's name in history rows: forget, or forget_holdout
    max_damage: float | None = None  # the most a watched set's accuracy may fall below the original's
    baseline: dict = field(default_factory=dict)  # watched set name -> the original model's accuracy on it

    @property
    def watched(self) -> str:
        """The history key the rule decides on (`forget_acc`, or `forget_holdout_acc` with a hold-out)."""
        return f"{self.check_name}_acc"

    def due(self, step: int) -> bool:
        return step % self.check_every == 0

    def check(self, model, step: int) -> dict:
        """One history row: each set's accuracy (and the task's other metrics) at this step, and with a damage
        limit the largest fall of a watched set's accuracy below the original's (`damage`)."""
        row = {"step": step}
        for name, dataset in {self.check_name: self.check_set, **self.tracked}.items():
            scored = self.score(model, dataset)
            row[f"{name}_acc"] = scored.accuracy
            for metric, value in scored.extra.items():
                row[f"{name}_{metric}"] = value
        if self.max_damage is not None:
            row["damage"] = max(self.baseline[name] - row[f"{name}_acc"] for name in self.baseline)
        return row

    def reached(self, row: dict) -> bool:
        """The target is met, within the damage limit."""
        return row[self.watched] <= self.target_forget_acc and self.within_limit(row)

    def within_limit(self, row: dict) -> bool:
        return self.max_damage is None or row["damage"] <= self.max_damage + LIMIT_SLACK

    def chosen(self, history: list[dict]) -> dict:
        """The check whose weights the run writes (DAMAGE_RULE; without a limit, the last)."""
        if self.max_damage is None:
            return history[-1]
        return chosen_check(history, self.watched, self.target_forget_acc, self.max_damage)


LIMIT_SLACK = 1e-6  # accuracies are float32 ratios of counts: a fall of exactly the limit is within it
DAMAGE_RULE = ("the check that reached the stop target with the least damage, else the last check within the damage "
               "limit (damage: the largest fall of a watched set's accuracy below the original model's)")


def chosen_check(history: list[dict], watched: str, target: float, max_damage: float) -> dict:
    """DAMAGE_RULE on a run's history rows (each with `step`, `damage` and the `watched` forget accuracy): among
    the checks within `max_damage`, the one that reached `target` with the least damage (the earliest of equals),
    else the last one. The check before any step is within the limit (no damage), so there is always one."""
    within = [row for row in history if row["damage"] <= max_damage + LIMIT_SLACK]
    if not within:
        raise ValueError("no check within the damage limit: the history lacks the check before any step")
    reached = [row for row in within if row[watched] <= target]
    if reached:
        return min(reached, key=lambda row: (row["damage"], row["step"]))
    return within[-1]


def stop_target(stop_spec, mode: str, before: dict, reference: dict | None = None) -> tuple[float, str]:
    """The forget accuracy to reach and where it comes from. The recipe's number when it sets one; class-wise
    0 (a model that never saw the class does not know it); sample-wise, what a model that never saw the
    forget data would score on it: with a reference (`--reference`, a model retrained without the forget data:
    its results), the reference's accuracy on the forget set itself; else the original model's accuracy on the
    forgotten group's unseen samples (forget_test) when given, else on the test set. (The unseen samples are
    the weaker estimate: a speaker's 12 unseen utterances put the target one word under the original's.)"""
    if stop_spec.target_forget_acc is not None:
        return stop_spec.target_forget_acc, "method.stop.target_forget_acc"
    if mode == "class":
        return 0.0, "class-wise: 0"
    if reference is not None and "forget" in reference:
        return reference["forget"].accuracy, ("the reference model's accuracy on the forget set (--reference: a "
                                              "model that never saw it)")
    for name, source in (("forget_test", "the original model's accuracy on forget_test (the forgotten group's "
                                         "unseen samples)"), ("test", "the original model's test accuracy")):
        if name in before:
            return before[name].accuracy, source
    raise UsageError("sample-wise unlearning stops at the original model's accuracy on unseen samples, but no test "
                     "or forget-test set was given", "give a test set, or set method.stop.target_forget_acc (e.g. 0.9)")


def holdout_size(forget_size: int, share: float) -> int:
    """How many forget samples the stop rule holds out (at least one when it holds any out)."""
    return max(1, int(round(share * forget_size))) if share > 0 else 0


def split_holdout(dataset, share: float, seed: int, role: str = "forget"):
    """(update part, held-out part) of the forget or retain set; the held-out part never drives an update and is
    what the stop rule reads."""
    import torch

    if share <= 0:
        return dataset, None
    salt = {"forget": 1, "retain": 2}[role]  # the two sets are split by independent draws
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed + salt))
    n_holdout = holdout_size(len(dataset), share)
    if n_holdout >= len(dataset):
        raise UsageError(f"method.stop.{role}_holdout={share} leaves no {role} samples to update on")
    return dataset.subset(order[n_holdout:].sort().values), dataset.subset(order[:n_holdout].sort().values)


@dataclass
class UpdateSets:
    """The parts of the forget and retain sets the updates use, and the held-out parts the stop rule reads."""

    forget: object
    retain: object
    forget_holdout: object = None
    retain_holdout: object = None

    @classmethod
    def of(cls, sets: dict, stop_spec, seed: int) -> "UpdateSets":
        forget, forget_holdout = split_holdout(sets["forget"], stop_spec.forget_holdout, seed, "forget")
        retain, retain_holdout = split_holdout(sets["retain"], stop_spec.retain_holdout, seed, "retain")
        return cls(forget, retain, forget_holdout, retain_holdout)

    def holdouts(self) -> dict:
        """The held-out parts carved, by their names in reports and history rows."""
        return {name: part for name, part in (("forget_holdout", self.forget_holdout),
                                              ("retain_holdout", self.retain_holdout)) if part is not None}


def watched_for_damage(sets: dict) -> list[str]:
    """The sets a damage limit watches, of those given: the retain set's held-out share and the test set."""
    return [name for name in ("retain_holdout", "test") if name in sets]
