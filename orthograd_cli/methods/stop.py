"""When unlearning stops, and what is measured each time it checks.

Every `check_every` steps the forget data (the forget set, or its held-out share) is scored; the run
stops once its accuracy is at or under the target. The tracked sets (test, forget_test) are scored
at the same checks for the report's trade-off curve but never decide anything.
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

    @property
    def watched(self) -> str:
        """The history key the rule decides on (`forget_acc`, or `forget_holdout_acc` with a hold-out)."""
        return f"{self.check_name}_acc"

    def due(self, step: int) -> bool:
        return step % self.check_every == 0

    def check(self, model, step: int) -> dict:
        """One history row: each set's accuracy (and the task's other metrics) at this step."""
        row = {"step": step}
        for name, dataset in {self.check_name: self.check_set, **self.tracked}.items():
            scored = self.score(model, dataset)
            row[f"{name}_acc"] = scored.accuracy
            for metric, value in scored.extra.items():
                row[f"{name}_{metric}"] = value
        return row

    def reached(self, row: dict) -> bool:
        return row[self.watched] <= self.target_forget_acc


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


def split_holdout(forget_set, share: float, seed: int):
    """(update part, held-out part) of the forget set; the held-out part never drives an update and is
    what the stop rule reads."""
    import torch

    if share <= 0:
        return forget_set, None
    order = torch.randperm(len(forget_set), generator=torch.Generator().manual_seed(seed + 1))
    n_holdout = holdout_size(len(forget_set), share)
    if n_holdout >= len(forget_set):
        raise UsageError(f"method.stop.forget_holdout={share} leaves no forget samples to unlearn on")
    return forget_set.subset(order[n_holdout:].sort().values), forget_set.subset(order[:n_holdout].sort().values)
