"""`forget --tune`: candidates tried on validation splits (never the test set) under a damage limit, every one in
the report, a candidate that breaks the limit stopped at that check, and the real run with the chosen setting."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FORGET_CLASS


def rows(path) -> int:
    return len(path.read_text().splitlines()) - 1


def check_tuning(report: dict, retain_rows: int) -> dict:
    """What every tuned run must show; returns the chosen candidate."""
    tuning = report["tuning"]
    candidates = tuning["candidates"]
    assert len(candidates) == len(tuning["space"]["method.lr"]) * len(tuning["space"].get("method.alpha", [0]))
    # validation: retain_val (a fifth of the retain set) stands in for the test set; the test set is never read
    for candidate in candidates:
        assert candidate["status"] == "ok", candidate
        assert candidate["metrics"]["test_acc"]["n"] == round(0.2 * retain_rows)
    chosen = next(c for c in candidates if c["setting"] == tuning["chosen"])
    assert tuning["met"] and chosen["met"] and chosen["target_reached"]
    assert tuning["max_damage"] == 0.02 and chosen["damage"] <= tuning["max_damage"]
    # the cheapest candidate that met the constraints: none that met them took fewer steps
    assert chosen["steps"] == min(c["steps"] for c in candidates if c["met"])
    # the real run used the chosen setting
    for key, value in tuning["chosen"].items():
        section, name = key.split(".")
        assert report["recipe"][section][name] == value
    return chosen


@pytest.mark.slow
def test_tune_on_the_digits_meets_its_constraints_and_stops_a_damaging_candidate_early(cli, trained_model, digits,
                                                                                       tmp_path):
    folder = digits / f"class{FORGET_CLASS}"
    result = cli("forget", trained_model, "--forget", folder / "forget.csv", "--retain", folder / "retain.csv",
                 "--test", digits / "test.csv", "--recipe", "resnet18_digits_class", "--tune",
                 "--set", "method.tune.space={method.lr: [2.0, 0.5, 0.1]}", "--out", tmp_path / "run", "--json",
                 "--quiet")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    chosen = check_tuning(report, rows(folder / "retain.csv"))
    first, *_ = report["tuning"]["candidates"]
    # the longest step breaks the damage limit and ends at that check, long before its step budget
    assert first["stop_reason"] == "damage_limit" and not first["met"] and first["damage"] > 0.02
    assert first["steps"] == report["recipe"]["method"]["stop"]["check_every"] < report["recipe"]["method"]["max_steps"]
    assert chosen["setting"] != first["setting"]
    # later candidates run at most the steps of the cheapest one met before them
    for i, candidate in enumerate(report["tuning"]["candidates"]):
        before = [c["steps"] for c in report["tuning"]["candidates"][:i] if c["met"]]
        assert candidate["capped_at"] == (min(before) if before else None)
        assert candidate["steps"] <= (candidate["capped_at"] or report["recipe"]["method"]["max_steps"])
    # the real run on the real sets: the class forgotten, the others kept
    after, before = report["metrics"]["after"], report["metrics"]["before"]
    assert report["target_reached"] and after["forget_test_acc"]["value"] <= 0.05
    assert after["test_acc"]["value"] >= before["test_acc"]["value"] - 0.02
    assert (tmp_path / "run/model.safetensors").is_file()


@pytest.mark.slow
def test_tune_on_the_speech_demo_meets_its_constraints_and_reports_every_candidate(cli, asr_model, forget_voice,
                                                                                   tmp_path):
    result = cli("forget", asr_model, "--forget", forget_voice / "forget.csv", "--retain", forget_voice / "retain.csv",
                 "--test", forget_voice / "test.csv", "--forget-test", forget_voice / "forget_test.csv",
                 "--recipe", "wav2vec2_model_espeak_speaker", "--tune", "--tune-budget", "3",
                 "--out", tmp_path / "run", "--json", "--quiet")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    tuning = report["tuning"]
    # the default space, the recipe's step first and never longer, cut to the budget
    recipe_lr = 0.2  # wav2vec2_model_espeak_speaker's
    assert tuning["space"]["method.lr"] == [recipe_lr, recipe_lr / 2, recipe_lr / 4, recipe_lr / 8]
    assert [c["setting"]["method.lr"] for c in tuning["candidates"]] == [0.2, 0.2, 0.1]
    for candidate in tuning["candidates"]:
        assert candidate["status"] == "ok"
        assert candidate["metrics"]["test_acc"]["n"] == round(0.2 * rows(forget_voice / "retain.csv"))
    chosen = next(c for c in tuning["candidates"] if c["setting"] == tuning["chosen"])
    assert tuning["met"] and chosen["met"] and chosen["damage"] <= 0.02
    # the limit's resolution is one word of retain_val, not one utterance (the demo's transcripts are 2+ digits)
    val_words = 1 / tuning["val_unit"]
    assert val_words == pytest.approx(round(val_words)) and val_words >= 2 * round(0.2 * rows(forget_voice / "retain.csv"))
    assert chosen["steps"] == min(c["steps"] for c in tuning["candidates"] if c["met"])
    assert report["recipe"]["method"]["lr"] == tuning["chosen"]["method.lr"]
    assert report["target_reached"]


def test_a_search_no_candidate_met_for_a_limit_finer_than_one_sample_says_what_to_set(cli, trained_model, digits,
                                                                                       tmp_path):
    folder = digits / f"class{FORGET_CLASS}"
    result = cli("forget", trained_model, "--forget", folder / "forget.csv", "--retain", folder / "retain.csv",
                 "--recipe", "resnet18_digits_class", "--tune", "--set", "method.tune.space={method.lr: [2.0]}",
                 "--set", "method.tune.max_damage=0.001", "--require", "!target_reached", "--out", tmp_path / "run",
                 "--json", "--quiet")
    assert result.code in (0, 5), result.err
    report = json.loads(result.out)
    tuning = report["tuning"]
    (candidate,) = tuning["candidates"]
    val_images = candidate["metrics"]["test_acc"]["n"]
    assert val_images == round(0.2 * rows(folder / "retain.csv")) and tuning["val_unit"] == pytest.approx(1 / val_images)
    assert not tuning["met"] and candidate["stop_reason"] == "damage_limit" and candidate["damage"] >= 1 / val_images - 1e-6
    (warning,) = [w for w in report["warnings"] if w.startswith("--tune: no candidate met")]
    assert f"of retain_val is {1 / val_images:.4f}, more than method.tune.max_damage (0.001)" in warning
    assert f"method.tune.max_damage={1 / val_images:.4f}" in warning


def test_a_dry_run_shows_the_search_it_would_run(cli, trained_model, digits, tmp_path):
    folder = digits / f"class{FORGET_CLASS}"
    args = ["forget", trained_model, "--forget", folder / "forget.csv", "--retain", folder / "retain.csv", "--test",
            digits / "test.csv", "--recipe", "resnet18_digits_class", "--tune", "--tune-budget", "3", "--out",
            tmp_path / "run", "--dry-run"]
    planned = cli(*args, "--json")
    assert planned.code == 0, planned.err
    tune = json.loads(planned.out)["tune"]
    # the recipe's lr 0.1 and α 0.5: its step first, then half and a quarter of it; α the recipe's, which is the
    # space's other α too (README, "Tuning for your model")
    assert tune["candidates"] == [{"method.lr": 0.1, "method.alpha": 0.5}, {"method.lr": 0.05, "method.alpha": 0.5},
                                  {"method.lr": 0.025, "method.alpha": 0.5}]
    assert tune["retain_val"] == round(0.2 * rows(folder / "retain.csv"))
    assert tune["retain_fit"] + tune["retain_val"] == rows(folder / "retain.csv")
    shown = cli(*args)
    assert shown.code == 0 and "tune: 3 candidate(s)" in shown.out and "lr=0.025, alpha=0.5" in shown.out
    assert not list(tmp_path.iterdir())  # nothing written
    # retain_val's accuracy moves in steps of one image; a limit finer than that is named, with the value to set
    assert tune["val_unit"] == pytest.approx(1 / tune["retain_val"])
    assert ("of retain_val is" in shown.out) == (1 / tune["retain_val"] > tune["max_damage"])
    fine = cli(*args, "--set", "method.tune.max_damage=0.001")
    assert fine.code == 0, fine.err
    assert f"one sample (speech: one word) of retain_val is {1 / tune['retain_val']:.4f}" in fine.out
    assert f"method.tune.max_damage={1 / tune['retain_val']:.4f}" in fine.out
