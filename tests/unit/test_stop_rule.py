"""The damage limit's choice of the written check (methods/stop.chosen_check), on constructed histories whose
right answer follows from the declared rule: among checks within the limit, the one that reached the target with
the least damage, else the last one."""

import pytest

from orthograd_cli.methods.stop import chosen_check


def history(*rows):
    """Rows of (step, forget accuracy, damage)."""
    return [{"step": step, "forget_acc": acc, "damage": damage} for step, acc, damage in rows]


def chosen_step(rows, target=0.5, max_damage=0.02):
    return chosen_check(history(*rows), "forget_acc", target, max_damage)["step"]


def test_a_run_that_reached_its_target_within_the_limit_writes_that_check():
    assert chosen_step([(0, 1.0, 0.0), (5, 0.8, 0.004), (10, 0.45, 0.012)]) == 10


def test_an_overshoot_past_the_limit_writes_the_last_check_within_it():
    # the target was reached at step 15, but only by breaking the limit: step 10 is written
    assert chosen_step([(0, 1.0, 0.0), (5, 0.8, 0.004), (10, 0.6, 0.018), (15, 0.4, 0.031)]) == 10


def test_among_checks_that_reached_the_target_the_least_damaged_wins_and_the_earliest_of_equals():
    assert chosen_step([(0, 1.0, 0.0), (5, 0.5, 0.015), (10, 0.3, 0.006), (15, 0.2, 0.019)]) == 10
    assert chosen_step([(0, 1.0, 0.0), (5, 0.5, 0.01), (10, 0.3, 0.01)]) == 5


def test_damage_that_comes_back_under_the_limit_counts_again():
    assert chosen_step([(0, 1.0, 0.0), (5, 0.9, 0.03), (10, 0.7, 0.01), (15, 0.6, 0.05)]) == 10


def test_a_fall_of_exactly_the_limit_is_within_it():
    # 24 of 50 correct where the original had 25: a fall of 1/50 = 0.02, a hair over in float32 accuracies
    import numpy as np

    fall = float(np.float32(25 / 50)) - float(np.float32(24 / 50))
    assert fall > 0.02
    assert chosen_step([(0, 1.0, 0.0), (5, 0.7, fall)]) == 5
    assert chosen_step([(0, 1.0, 0.0), (5, 0.7, 0.0201)]) == 0


def test_the_first_check_past_the_limit_writes_the_weights_before_any_step():
    assert chosen_step([(0, 1.0, 0.0), (5, 0.2, 0.2)]) == 0


def test_a_history_without_a_check_within_the_limit_is_refused():
    with pytest.raises(ValueError, match="no check within the damage limit"):
        chosen_step([(5, 0.2, 0.2)])
