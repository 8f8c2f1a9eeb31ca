"""UIS and the loss-based MIA against values worked out by hand."""

import numpy as np
import pytest

from orthograd_cli.metrics.scores import mia_logreg_loss_cv, unlearning_impact_score


def test_sample_wise_uis_follows_the_paper_formula():
    # O_t=0.9, U_t=0.85, U_u=0.95: ½(0.05 + 0.05)/0.9
    assert unlearning_impact_score(0.9, 0.85, 0.95, "sample") == pytest.approx(0.05 / 0.9, abs=1e-12)


def test_class_wise_uis_counts_remaining_forget_accuracy():
    # O_t=0.8, U_t=0.8, U_u=0.1: ½(0 + 0.1)/0.8
    assert unlearning_impact_score(0.8, 0.8, 0.1, "class") == pytest.approx(0.0625, abs=1e-12)
    assert unlearning_impact_score(0.8, 0.8, 0.0, "class") == 0.0


def test_mia_is_near_chance_for_one_distribution_and_near_one_for_separated_losses():
    rng = np.random.default_rng(0)
    same = mia_logreg_loss_cv(rng.exponential(0.1, 400), rng.exponential(0.1, 400))
    apart = mia_logreg_loss_cv(rng.exponential(0.001, 400), rng.exponential(1.0, 400))
    assert 0.4 < same < 0.6
    assert apart > 0.9
    assert mia_logreg_loss_cv([0.1, 0.2], [0.3, 0.4]) is None
