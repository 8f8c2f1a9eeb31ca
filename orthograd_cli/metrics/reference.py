"""Evidence against a reference model: one retrained without the forget data, scored on the same sets.

Where a published metric has a library implementation we call it (scipy's `ks_2samp` and
`wasserstein_distance`, scikit-learn's `roc_auc_score`); the formulas and their sources are in
docs/metrics.md. U = the unlearned model, R = the reference.
"""

from __future__ import annotations

from orthograd_cli.metrics.scores import metric

PRIVLEAK_EPS = 1e-10  # OpenUnlearning's guard against a reference attack AUC of exactly 1


def loss_ks(losses_u, losses_r) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov test between U's and R's per-sample losses: (statistic, p-value). The
    p-value is TOFU's "forget quality" with the per-sample loss in place of the truth ratio."""
    from scipy.stats import ks_2samp

    result = ks_2samp(_float64(losses_u), _float64(losses_r))
    return float(result.statistic), float(result.pvalue)


def loss_emd(losses_u, losses_r) -> float:
    """Wasserstein-1 (earth mover's) distance between U's and R's per-sample loss distributions."""
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(_float64(losses_u), _float64(losses_r)))


def loss_attack_auc(forget_losses, unseen_losses) -> float:
    """ROC-AUC of a loss attack telling the forget samples (label 0) from unseen ones (label 1) by their loss,
    as OpenUnlearning scores it: 1 when every forget loss is below every unseen one (remembered), 0.5 when
    the two cannot be told apart."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    forget, unseen = _float64(forget_losses), _float64(unseen_losses)
    labels = np.concatenate([np.zeros(len(forget)), np.ones(len(unseen))])
    return float(roc_auc_score(labels, np.concatenate([forget, unseen])))


def privleak(auc_u: float, auc_r: float) -> float:
    """MUSE's privacy leakage, in OpenUnlearning's form: ((1 − AUC_U) − (1 − AUC_R)) / ((1 − AUC_R) + 1e-10) ×
    100. 0: the unlearned model leaks what the reference leaks; negative: under-unlearned; positive: over."""
    return ((1 - auc_u) - (1 - auc_r)) / ((1 - auc_r) + PRIVLEAK_EPS) * 100


def tug_of_war(acc_u: dict[str, float], acc_r: dict[str, float]) -> float:
    """RUM's tug of war: Π over the sets of (1 − |acc_U − acc_R|), 1 = the reference's accuracy everywhere."""
    product = 1.0
    for name, value in acc_u.items():
        product *= 1 - abs(value - acc_r[name])
    return product


def average_gap(values_u: dict[str, float], values_r: dict[str, float]) -> float:
    """SalUn's Avg. Gap: the mean absolute difference of U's and R's numbers (UA, RA, TA, MIA-Efficacy)."""
    return sum(abs(values_u[name] - values_r[name]) for name in values_u) / len(values_u)


def _float64(values):
    import numpy as np

    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


KS_SETS = ("forget", "forget_test")  # the forgotten data: seen in training (forget) and its unseen counterpart
TOW_SETS = ("forget", "retain", "test")
GAP_SETS = {"forget_acc": "UA", "retain_acc": "RA", "test_acc": "TA", "mia_efficacy": "MIA-Efficacy"}
SOURCES = {
    "loss_ks": "TOFU forget quality (Maini et al. 2024); OpenUnlearning privacy.py::ks_test",
    "loss_emd": "Dinis et al., Evaluating Machine Unlearning in ASR (EMD between loss distributions)",
    "privleak": "MUSE (Shi et al. 2024); OpenUnlearning privacy.py::privleak",
    "tow": "RUM (Zhao et al., NeurIPS 2024), tug of war",
    "avg_gap": "SalUn (Fan et al., ICLR 2024), Avg. Gap",
    "mia_attacks": "MUSE (Shi et al. 2024) and OpenUnlearning's MIAs: LOSS, zlib (Carlini et al. 2021), Min-K% Prob "
                   "(Shi et al., ICLR 2024, k = 40 %)",
}


def fields_of(name: str) -> tuple[str, ...]:
    """The parts a metric carries beside its value (`forget_loss_ks.p`), for the requirement grammar."""
    if name.endswith("_loss_ks"):
        return "statistic", "p"
    return ("auc", "reference_auc") if name == "privleak" else ()


def reference_metrics_of(results_u: dict, results_r: dict, metrics_u: dict, metrics_r: dict, mode: str,
                         acc: str) -> dict:
    """The metrics that compare U with R, from both models' per-set results (per-sample losses, accuracies)
    and report metrics (MIA-Efficacy). `acc`: the task's accuracy name (speech: word accuracy)."""
    out = {}
    for name in KS_SETS:
        if name in results_u and name in results_r:
            u, r = results_u[name].losses, results_r[name].losses
            n, (statistic, p) = len(u) + len(r), loss_ks(u, r)
            out[f"{name}_loss_ks"] = metric(
                statistic, f"two-sample KS statistic between the per-sample losses on {name} under this model and "
                           "under the reference; fields.p is its p-value (forget quality: p >= 0.05 means the two "
                           "cannot be told apart at 5 %)", n, target=0.0,
                fields=dict(zip(fields_of(f"{name}_loss_ks"), (statistic, p))), source=SOURCES["loss_ks"])
            out[f"{name}_loss_emd"] = metric(
                loss_emd(u, r), f"Wasserstein-1 distance between the per-sample losses on {name} under this model "
                                "and under the reference", n, target=0.0, source=SOURCES["loss_emd"])
    unseen = "forget_test" if "forget_test" in results_u else "test" if mode == "sample" else None
    if "forget" in results_u and unseen in results_u and unseen in results_r:
        auc_u = loss_attack_auc(results_u["forget"].losses, results_u[unseen].losses)
        auc_r = loss_attack_auc(results_r["forget"].losses, results_r[unseen].losses)
        out["privleak"] = metric(
            privleak(auc_u, auc_r),
            f"MUSE privacy leakage: ((1 − AUC_U) − (1 − AUC_R)) / (1 − AUC_R) × 100, AUC of a loss attack telling "
            f"forget from {unseen} samples, for this model (U) and the reference (R); negative: under-unlearned, "
            "positive: over-unlearned",
            results_u["forget"].n + results_u[unseen].n, target=0.0,
            fields=dict(zip(fields_of("privleak"), (auc_u, auc_r))), source=SOURCES["privleak"])
    tow_sets = [name for name in TOW_SETS if name in results_u and name in results_r]
    if tow_sets:
        value = tug_of_war({n: results_u[n].accuracy for n in tow_sets},
                           {n: results_r[n].accuracy for n in tow_sets})
        out["tow"] = metric(value, f"tug of war: Π over {', '.join(tow_sets)} of (1 − |{acc} − reference {acc}|)",
                            sum(results_u[n].n for n in tow_sets), target=1.0, source=SOURCES["tow"])
    gap_names = [name for name in GAP_SETS
                 if _value(metrics_u, name) is not None and _value(metrics_r, name) is not None]
    if gap_names:
        value = average_gap({n: metrics_u[n].value for n in gap_names}, {n: metrics_r[n].value for n in gap_names})
        out["avg_gap"] = metric(value, "mean absolute gap to the reference over "
                                       f"{', '.join(GAP_SETS[n] for n in gap_names)} (UA = 1 − forget {acc})",
                                max(metrics_u[n].n for n in gap_names), target=0.0, source=SOURCES["avg_gap"])
    return out


def _value(metrics: dict, name: str):
    return metrics[name].value if name in metrics else None


MEMBERSHIP_METRICS = ("mia_logreg_loss_cv", "mia_efficacy")


def target_the_reference(metrics: dict, reference: dict) -> None:
    """With a model retrained without the forget data, its own membership scores are the targets: the
    attack's accuracy on it is what "never saw the forget set" looks like on this data."""
    for name in MEMBERSHIP_METRICS:
        if name in metrics and name in reference and reference[name].value is not None:
            metrics[name].target = reference[name].value
            metrics[name].higher_is_better = None
            metrics[name].definition += "; target: the reference model's value"


def add_reference_metrics(metrics: dict, results: dict, reference_metrics: dict, reference_results: dict, mode: str,
                          acc: str) -> dict:
    """`metrics` (one model's) with the metrics that compare it with the reference, and the membership
    metrics targeted at the reference's values."""
    metrics.update(reference_metrics_of(results, reference_results, metrics, reference_metrics, mode, acc))
    target_the_reference(metrics, reference_metrics)
    return metrics
