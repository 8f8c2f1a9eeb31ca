"""Scores for a report: accuracy, the Unlearning Impact Score and a loss-based membership inference.

Every metric is a `report.Metric` {value, higher_is_better | target, definition, n}, so a reader of the
JSON never has to guess what a number means.
"""

from __future__ import annotations


def metric(value: float | None, definition: str, n: int, higher_is_better: bool | None = None,
           target: float | str | None = None, fields: dict | None = None, source: str | None = None):
    from orthograd_cli.report import Metric

    return Metric(value=None if value is None else float(value), definition=definition, n=int(n),
                  higher_is_better=None if target is not None else higher_is_better, target=target, fields=fields,
                  source=source)


def accuracy(logits, labels) -> float:
    return float((logits.argmax(1) == labels).float().mean()) if len(labels) else float("nan")


def unlearning_impact_score(original_test: float, unlearned_test: float, unlearned_forget: float, mode: str) -> float:
    """UIS, 0 ideal. Sample-wise: ½(|O_t−U_t| + |O_t−U_u|)/O_t; class-wise: ½(|O_t−U_t| + U_u)/O_t."""
    forget_term = abs(original_test - unlearned_forget) if mode == "sample" else unlearned_forget
    return 0.5 * (abs(original_test - unlearned_test) + forget_term) / original_test


UIS_DEFINITION = {
    "sample": "½(|O_t−U_t| + |O_t−U_u|)/O_t: O_t original test acc, U_t unlearned test acc, U_u unlearned forget acc",
    "class": "½(|O_t−U_t| + U_u)/O_t: O_t original test acc, U_t unlearned test acc, U_u unlearned forget acc",
}


def mia_logreg_loss_cv(forget_losses, test_losses, seed: int = 0) -> float | None:
    """Stratified 5-fold CV accuracy of a logistic regression telling forget from test samples by loss.

    The larger group is subsampled (seeded) to the smaller one's size, so chance is 0.5: a value
    near 0.5 means an attacker cannot tell the forgotten samples from unseen ones.
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    forget_losses = np.asarray(forget_losses, dtype=np.float64)
    test_losses = np.asarray(test_losses, dtype=np.float64)
    n = min(len(forget_losses), len(test_losses))
    if n < 5:
        return None
    forget_losses = rng.choice(forget_losses, size=n, replace=False)
    test_losses = rng.choice(test_losses, size=n, replace=False)
    # log-loss spreads the near-zero losses of memorised samples apart
    features = np.log(np.concatenate([forget_losses, test_losses]) + 1e-12)[:, None]
    members = np.concatenate([np.ones(n), np.zeros(n)])
    model = make_pipeline(StandardScaler(), LogisticRegression())
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    return float(cross_val_score(model, features, members, cv=folds, scoring="accuracy").mean())


def mia_efficacy(retain_losses, test_losses, forget_losses, seed: int = 0) -> float | None:
    """MIA-Efficacy (SalUn, Fan et al. 2024; the SVC attack of Jia et al. 2023): an SVC (RBF kernel, C=3,
    gamma='auto') learns members (retain samples) from non-members (test samples) by the confidence
    exp(−loss), the probability of the true label for cross-entropy; the share of forget samples it then
    calls non-members is the efficacy (higher: the forget set looks unseen; a retrained model is the
    reference). Groups are balanced by seeded subsampling."""
    import numpy as np
    from sklearn.svm import SVC

    rng = np.random.default_rng(seed)
    retain, test, forget = (np.asarray(x, dtype=np.float64) for x in (retain_losses, test_losses, forget_losses))
    n = min(len(retain), len(test))
    if n < 5 or len(forget) == 0:
        return None
    members = np.exp(-rng.choice(retain, size=n, replace=False))
    non_members = np.exp(-rng.choice(test, size=n, replace=False))
    attack = SVC(C=3, gamma="auto", kernel="rbf")
    attack.fit(np.concatenate([members, non_members])[:, None], np.concatenate([np.ones(n), np.zeros(n)]))
    return float((attack.predict(np.exp(-forget)[:, None]) == 0).mean())
