"""The metrics that compare with a reference model, each against an independent float64 computation of its
published formula (or an exact value) on fixed arrays: KS, EMD, the loss attack's AUC, privleak, ToW, Avg. Gap."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from orthograd_cli.metrics.reference import (average_gap, loss_attack_auc, loss_emd, loss_ks, privleak,
                                             reference_metrics_of, tug_of_war)
from orthograd_cli.metrics.scores import metric
from orthograd_cli.tasks import SetResult

U = np.array([0.05, 0.3, 0.31, 1.2, 2.5, 0.02, 0.9, 0.4])
R = np.array([0.5, 0.7, 1.9, 2.2, 0.3, 3.1, 0.8, 1.4, 0.45, 2.0])


def ecdf_distance(a, b) -> float:
    """max over the pooled points of |F_a − F_b|, the KS statistic by its definition."""
    points = np.concatenate([a, b])
    return max(abs((a <= x).mean() - (b <= x).mean()) for x in points)


def pairwise_auc(forget, unseen) -> float:
    """P(unseen loss > forget loss) + ½ P(tie), over every pair: the ROC-AUC with unseen = positive."""
    wins = sum(1.0 if u > f else 0.5 if u == f else 0.0 for f, u in itertools.product(forget, unseen))
    return wins / (len(forget) * len(unseen))


def test_ks_statistic_is_the_largest_ecdf_gap_and_identical_samples_give_p_one():
    statistic, p = loss_ks(U, R)
    assert statistic == pytest.approx(ecdf_distance(U, R), abs=1e-12)
    assert 0 < p < 1
    same_statistic, same_p = loss_ks(U, U.copy())
    assert same_statistic == 0.0 and same_p == 1.0


def test_ks_on_disjoint_samples_has_statistic_one_and_the_exact_p_value():
    low, high = np.arange(5) * 0.1, 10 + np.arange(5) * 0.1
    statistic, p = loss_ks(low, high)
    # exact two-sided p for n = m = 5 and D = 1: the 2 orderings of C(10, 5) that separate the samples fully
    assert statistic == 1.0 and p == pytest.approx(2 / math.comb(10, 5), abs=1e-12)


def test_emd_is_the_mean_gap_of_sorted_samples_for_equal_sizes_and_zero_for_identical_ones():
    a, b = U, np.array([0.1, 0.35, 0.5, 1.0, 3.0, 0.0, 0.7, 0.2])
    assert loss_emd(a, b) == pytest.approx(np.mean(np.abs(np.sort(a) - np.sort(b))), abs=1e-12)
    assert loss_emd(U, U.copy()) == 0.0
    assert loss_emd([0.0, 1.0], [5.0, 6.0]) == pytest.approx(5.0, abs=1e-12)  # disjoint: the shift


def test_loss_attack_auc_counts_pairs_and_takes_torch_losses():
    forget, unseen = np.array([0.1, 0.2, 0.2, 0.9]), np.array([0.2, 0.5, 1.5])
    assert loss_attack_auc(forget, unseen) == pytest.approx(pairwise_auc(forget, unseen), abs=1e-12)
    assert loss_attack_auc(torch.tensor(forget, dtype=torch.float64), unseen) == pytest.approx(
        pairwise_auc(forget, unseen), abs=1e-12)
    assert loss_attack_auc([0.0, 0.1], [1.0, 2.0]) == 1.0  # every forget loss below every unseen one


def test_privleak_follows_openunlearnings_formula():
    assert privleak(0.8, 0.6) == pytest.approx(((1 - 0.8) - (1 - 0.6)) / ((1 - 0.6) + 1e-10) * 100, abs=1e-12)
    assert privleak(0.55, 0.55) == 0.0
    assert privleak(1.0, 0.5) == pytest.approx(-100.0, abs=1e-6)  # remembered where the reference cannot tell


def test_tug_of_war_and_average_gap_by_hand():
    acc_u = {"forget": 0.1, "retain": 0.95, "test": 0.9}
    acc_r = {"forget": 0.0, "retain": 1.0, "test": 0.92}
    assert tug_of_war(acc_u, acc_r) == pytest.approx(0.9 * 0.95 * 0.98, abs=1e-12)
    assert tug_of_war(acc_r, acc_r) == 1.0
    values_u = {"forget_acc": 0.1, "retain_acc": 0.95, "test_acc": 0.9, "mia_efficacy": 0.7}
    values_r = {"forget_acc": 0.0, "retain_acc": 1.0, "test_acc": 0.92, "mia_efficacy": 1.0}
    assert average_gap(values_u, values_r) == pytest.approx((0.1 + 0.05 + 0.02 + 0.3) / 4, abs=1e-12)


def _results(losses: dict[str, np.ndarray], accuracy: dict[str, float]) -> dict[str, SetResult]:
    return {name: SetResult(n=len(v), accuracy=accuracy[name], losses=torch.tensor(v, dtype=torch.float64))
            for name, v in losses.items()}


def test_the_report_metrics_carry_the_numbers_their_fields_and_their_sources():
    forget_test = np.array([0.6, 0.2, 1.1, 0.8, 1.7])
    test = np.array([0.3, 0.4, 0.2, 0.9, 0.1, 0.5])
    accuracy_u = {"forget": 0.25, "forget_test": 0.4, "retain": 0.97, "test": 0.91}
    accuracy_r = {"forget": 0.2, "forget_test": 0.4, "retain": 0.99, "test": 0.9}
    ours = _results({"forget": U, "forget_test": forget_test, "retain": test, "test": test}, accuracy_u)
    theirs = _results({"forget": R, "forget_test": forget_test[::-1].copy(), "retain": test, "test": test}, accuracy_r)
    metrics_u = {"forget_acc": metric(0.25, "", 8), "retain_acc": metric(0.97, "", 6), "test_acc": metric(0.91, "", 6)}
    metrics_r = {"forget_acc": metric(0.2, "", 10), "retain_acc": metric(0.99, "", 6), "test_acc": metric(0.9, "", 6)}
    out = reference_metrics_of(ours, theirs, metrics_u, metrics_r, "sample", "accuracy")
    assert out["forget_loss_ks"].value == pytest.approx(ecdf_distance(U, R), abs=1e-12)
    assert out["forget_loss_ks"].fields["p"] == loss_ks(U, R)[1] and out["forget_loss_ks"].n == len(U) + len(R)
    assert out["forget_test_loss_ks"].fields == {"statistic": 0.0, "p": 1.0}  # same losses, another order
    assert out["forget_test_loss_emd"].value == 0.0
    # the attack reads forget vs forget_test (the forgotten group's unseen samples), for both models
    expected = privleak(pairwise_auc(U, forget_test), pairwise_auc(R, forget_test))
    assert out["privleak"].value == pytest.approx(expected, abs=1e-9)
    assert out["tow"].value == pytest.approx((1 - 0.05) * (1 - 0.02) * (1 - 0.01), abs=1e-12)
    assert out["avg_gap"].value == pytest.approx((0.05 + 0.02 + 0.01) / 3, abs=1e-12)  # no MIA-Efficacy: 3 gaps
    assert "MIA-Efficacy" not in out["avg_gap"].definition
    assert all(entry.source for entry in out.values())
    assert {entry.target for entry in out.values()} == {0.0, 1.0}


def test_without_an_unseen_set_privleak_is_absent_not_zero():
    ours = _results({"forget": U}, {"forget": 0.3})
    out = reference_metrics_of(ours, _results({"forget": R}, {"forget": 0.2}), {}, {}, "class", "accuracy")
    assert "privleak" not in out and "avg_gap" not in out
    assert set(out) == {"forget_loss_ks", "forget_loss_emd", "tow"}
