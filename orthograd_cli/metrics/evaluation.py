"""Measure a model on the given sets and turn the numbers into report metrics."""

from __future__ import annotations

from orthograd_cli.metrics.scores import (UIS_DEFINITION, metric, mia_efficacy, mia_logreg_loss_cv,
                                          unlearning_impact_score)
from orthograd_cli.tasks import SetResult, Task
from orthograd_cli.tasks.base import attack_metric

SET_DEFINITIONS = {
    "forget": "{acc} on the forget set (U_u after unlearning)",
    "forget_holdout": "{acc} on the held-out share of the forget set, never used in updates",
    "forget_test": "{acc} on the forgotten group's unseen samples (e.g. the speaker's test recordings)",
    "retain": "{acc} on the retain set",
    "retain_holdout": "{acc} on the held-out share of the retain set, never used in updates",
    "test": "{acc} on the test set (U_t after unlearning)",
}
FORGOTTEN_SETS = ("forget", "forget_holdout", "forget_test")


def measure(model, sets: dict, batch_size: int, device: str, task: Task, collective=None) -> dict[str, SetResult]:
    return {name: score(task, model, dataset, batch_size, device, collective) for name, dataset in sets.items()
            if dataset is not None}


def score(task: Task, model, dataset, batch_size: int, device: str, collective=None) -> SetResult:
    """task.score on the whole set; with several processes (`collective`, distributed.py) each scores its
    consecutive share and every process gets the combined result (all must call this together)."""
    if collective is None:
        return task.score(model, dataset, batch_size, device)
    import torch

    share = collective.shard(torch.arange(len(dataset)))
    part = task.score(model, dataset.subset(share), batch_size, device) if len(share) else None
    return task.combine([p for p in collective.gather_objects(part) if p is not None])


def metrics_from(results: dict[str, SetResult], mode: str, task: Task, original: dict[str, SetResult] | None = None,
                 mia: bool = True, seed: int = 0, forget_target: float | None = None) -> dict:
    """Accuracy (and the task's other metrics) per set; with the original model's results, UIS; with
    forget and test sets, the MIA. `forget_target`: the forget accuracy a run stopped at; without one, the
    forgotten sets' target is named as the stop rule would derive it (methods/stop.py)."""
    if forget_target is None:
        unseen = "forget_test" if "forget_test" in results or (original and "forget_test" in original) else "test"
        forget_target = f"original {unseen} acc" if mode == "sample" else 0.0
    acc = task.accuracy_name
    out = {}
    for name, r in results.items():
        definition = SET_DEFINITIONS.get(name, "{acc} on " + name).format(acc=acc)
        forgotten = name in FORGOTTEN_SETS
        if forgotten:
            out[f"{name}_acc"] = metric(r.accuracy, definition, r.n, target=forget_target)
        else:
            out[f"{name}_acc"] = metric(r.accuracy, definition, r.n, higher_is_better=True)
        for key, value in r.extra.items():  # e.g. speech: the error rate users quote, beside the word accuracy
            extra = task.extra_metrics[key]
            out[f"{name}_{key}"] = metric(value, definition.replace(acc, extra.definition), r.n,
                                          higher_is_better=None if forgotten else extra.higher_is_better)
    if original is not None and "test" in original:
        o_t = original["test"].accuracy
        out["original_test_acc"] = metric(o_t, f"{acc} of the original model on the test set (O_t)",
                                          original["test"].n, higher_is_better=True)
        if "test" in results and "forget" in results and o_t > 0:
            uis = unlearning_impact_score(o_t, results["test"].accuracy, results["forget"].accuracy, mode)
            out["uis"] = metric(uis, f"Unlearning Impact Score ({mode}-wise), 0 ideal: {UIS_DEFINITION[mode]}",
                                results["forget"].n + results["test"].n, higher_is_better=False)
    if mia and "forget" in results:
        out.update(membership_metrics(results, mode, seed, task))
    return out


def attack_metrics(forget: SetResult, unseen: SetResult, unseen_name: str, definitions: dict[str, str]) -> dict:
    """The task's own membership attacks (language models: loss, zlib, Min-K% Prob; `definitions`: Task.attacks) as
    ROC-AUCs, the forget set against its unseen counterpart, as OpenUnlearning scores them (1: every forget sample
    looks like a member)."""
    from orthograd_cli.metrics.reference import SOURCES, loss_attack_auc

    out = {}
    for name, values in forget.attacks.items():
        if name in unseen.attacks and len(values) and len(unseen.attacks[name]):
            out[attack_metric(name)] = metric(
                loss_attack_auc(values, unseen.attacks[name]),
                f"ROC-AUC of the {name} attack telling forget from {unseen_name} samples by {definitions[name]} "
                "(0.5 = indistinguishable, 1 = remembered)", forget.n + unseen.n, target=0.5,
                source=SOURCES["mia_attacks"])
    return out


def membership_metrics(results: dict[str, SetResult], mode: str, seed: int, task: Task) -> dict:
    """The MIA that fits the scenario: the forget set against the forgotten group's unseen samples
    (forget_test: a class's test images, a speaker's unseen recordings), which a model that never saw
    the forget set cannot tell apart (target 0.5); sample-wise without them, against the test set. And
    MIA-Efficacy where retain and test sets are there to train its attack."""
    out = {}
    unseen = "forget_test" if "forget_test" in results else "test" if mode == "sample" and "test" in results else None
    if unseen is not None:
        value = mia_logreg_loss_cv(results["forget"].losses.numpy(), results[unseen].losses.numpy(), seed)
        out["mia_logreg_loss_cv"] = metric(
            value, f"5-fold CV accuracy of logistic regression telling forget from {unseen} samples by their "
                   "per-sample loss (balanced; 0.5 = indistinguishable)",
            2 * min(results["forget"].n, results[unseen].n), target=0.5)
        out.update(attack_metrics(results["forget"], results[unseen], unseen, task.attacks))
    if "retain" in results and "test" in results:
        value = mia_efficacy(results["retain"].losses.numpy(), results["test"].losses.numpy(),
                             results["forget"].losses.numpy(), seed)
        out["mia_efficacy"] = metric(
            value, "MIA-Efficacy (SalUn): share of forget samples that an SVC trained on retain (member) vs test "
                   "(non-member) confidences exp(−loss) calls non-members", results["forget"].n, higher_is_better=True)
    return out
