"""Measure a model on the given sets and turn the numbers into report metrics."""

from __future__ import annotations

from dataclasses import dataclass

from orthograd_cli.metrics.scores import (UIS_DEFINITION, accuracy, metric, mia_logreg_loss_cv,
                                          unlearning_impact_score)
from orthograd_cli.tasks.classification import per_sample_losses, predict

SET_DEFINITIONS = {
    "forget": "top-1 accuracy on the forget set (U_u after unlearning)",
    "forget_holdout": "top-1 accuracy on the held-out share of the forget set, never used in updates",
    "retain": "top-1 accuracy on the retain set",
    "test": "top-1 accuracy on the test set (U_t after unlearning)",
}


@dataclass
class SetResult:
    n: int
    accuracy: float
    losses: "torch.Tensor"  # noqa: F821


def measure(model, sets: dict, batch_size: int, device: str) -> dict[str, SetResult]:
    results = {}
    for name, image_set in sets.items():
        if image_set is None:
            continue
        logits = predict(model, image_set.inputs, batch_size, device)
        results[name] = SetResult(n=len(image_set), accuracy=accuracy(logits, image_set.labels),
                                  losses=per_sample_losses(logits, image_set.labels))
    return results


def metrics_from(results: dict[str, SetResult], mode: str, original: dict[str, SetResult] | None = None,
                 mia: bool = True, seed: int = 0) -> dict:
    """Accuracy per set; with the original model's results, UIS; with forget and test sets, the MIA."""
    forget_target = "original test acc" if mode == "sample" else 0.0
    out = {}
    for name, r in results.items():
        definition = SET_DEFINITIONS.get(name, f"top-1 accuracy on {name}")
        if name in ("forget", "forget_holdout"):
            out[f"{name}_acc"] = metric(r.accuracy, definition, r.n, target=forget_target)
        else:
            out[f"{name}_acc"] = metric(r.accuracy, definition, r.n, higher_is_better=True)
    if original is not None and "test" in original:
        o_t = original["test"].accuracy
        out["original_test_acc"] = metric(o_t, "top-1 accuracy of the original model on the test set (O_t)",
                                          original["test"].n, higher_is_better=True)
        if "test" in results and "forget" in results and o_t > 0:
            uis = unlearning_impact_score(o_t, results["test"].accuracy, results["forget"].accuracy, mode)
            out["uis"] = metric(uis, f"Unlearning Impact Score ({mode}-wise), 0 ideal: {UIS_DEFINITION[mode]}",
                                results["forget"].n + results["test"].n, higher_is_better=False)
    if mia and "forget" in results and "test" in results:
        value = mia_logreg_loss_cv(results["forget"].losses.numpy(), results["test"].losses.numpy(), seed)
        out["mia_logreg_loss_cv"] = metric(
            value, "5-fold CV accuracy of logistic regression telling forget from test samples by their "
                   "per-sample loss (balanced; 0.5 = indistinguishable)",
            2 * min(results["forget"].n, results["test"].n), target=0.5)
    return out
