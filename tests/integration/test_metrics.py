"""Metrics that mean what they say (real digits, the real CLI): class-wise splits of the test set, the
class-wise MIA against a model retrained without the class, MIA-Efficacy, data-derived stop targets,
small retain sets, and a tuned `compare`."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FORGET_CLASS

pytestmark = pytest.mark.slow


def test_class_wise_forget_splits_the_full_test_set_itself(class_run, digits):
    report = json.loads((class_run / "report.json").read_text())
    labels = [line.rsplit(",", 1)[1] for line in (digits / "test.csv").read_text().splitlines()[1:]]
    others, forgotten = sum(label != str(FORGET_CLASS) for label in labels), labels.count(str(FORGET_CLASS))
    after = report["metrics"]["after"]
    assert after["test_acc"]["n"] == others and after["forget_test_acc"]["n"] == forgotten
    assert any("split by the forgotten class" in note for note in report["notes"])
    # UIS is computed on the other classes: the forgotten class's (rightly) lost test accuracy is no damage
    o_t, u_t, u_u = report["metrics"]["before"]["test_acc"]["value"], after["test_acc"]["value"], after["forget_acc"]["value"]
    assert after["uis"]["value"] == pytest.approx(0.5 * (abs(o_t - u_t) + u_u) / o_t, abs=1e-12)
    assert after["forget_test_acc"]["value"] <= 0.1 < report["metrics"]["before"]["forget_test_acc"]["value"]


def test_class_wise_mia_is_near_a_model_retrained_without_the_class(cli, class_run, digits, retrained_without_class):
    out = class_run
    folder = digits / f"class{FORGET_CLASS}"
    result = cli("evaluate", out / "model.safetensors", "--forget", folder / "forget.csv", "--retain",
                 folder / "retain.csv", "--test", digits / "test.csv", "--mode", "class", "--reference",
                 retrained_without_class, "--json")
    assert result.code == 0, result.err
    evaluated = json.loads(result.out)
    ours, theirs = evaluated["metrics"]["mia_logreg_loss_cv"], evaluated["reference_metrics"]["mia_logreg_loss_cv"]
    assert "forget_test" in ours["definition"]  # the forgotten class's training vs test images
    assert abs(ours["value"] - theirs["value"]) <= 0.1, (ours["value"], theirs["value"])
    assert ours["target"] == theirs["value"]  # with a reference, its value is the target
    assert evaluated["reference_metrics"]["forget_acc"]["value"] == 0.0  # it never learned the class
    assert 0 <= evaluated["metrics"]["mia_efficacy"]["value"] <= 1


def test_a_retain_set_smaller_than_k_is_used_whole(cli, trained_model, digits, tmp_path):
    lines = (digits / "sample/retain.csv").read_text().splitlines()
    (tmp_path / "small_retain.csv").write_text("\n".join(lines[:21]).replace("../images", str(digits / "images"))
                                               + "\n")
    result = cli("forget", trained_model, "--forget", digits / "sample/forget.csv", "--retain",
                 tmp_path / "small_retain.csv", "--test", digits / "test.csv", "--set", "method.max_steps=3",
                 "--require", "!target_reached",
                 "--set", "method.retain_batch_size=64", "--out", tmp_path / "run", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["retain_batch_size"] == 20
    assert any("k = 20, the whole retain set" in note for note in report["notes"])
    assert "k = 20" in result.err


def test_sample_wise_target_is_the_original_accuracy_on_unseen_samples(cli, trained_model, digits, tmp_path):
    result = cli("forget", trained_model, "--forget", digits / "sample/forget.csv", "--retain",
                 digits / "sample/retain.csv", "--test", digits / "test.csv", "--set", "method.max_steps=2",
                 "--require", "!target_reached",
                 "--out", tmp_path / "run", "--quiet", "--json")
    report = json.loads(result.out)
    assert report["target_forget_acc"] == report["metrics"]["before"]["test_acc"]["value"]
    assert report["target_source"] == "the original model's test accuracy"


def test_a_tuned_compare_gives_every_method_the_same_budget_and_scrub_forgets(cli, trained_model, digits, tmp_path):
    folder = digits / f"class{FORGET_CLASS}"
    out = tmp_path / "compare"
    result = cli("compare", trained_model, "--forget", folder / "forget.csv", "--retain", folder / "retain.csv",
                 "--test", digits / "test.csv", "--set", "eval.mode=class", "--methods", "scrub,orthograd",
                 "--sweep", "method.lr=0.05,0.2", "--set", "method.max_steps=60",
                 "--require", "!target_reached", "--out", out, "--quiet", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    candidates = report["sweep"]["candidates"]
    assert {m: len(c) for m, c in candidates.items()} == {"scrub": 2, "orthograd": 2}  # every candidate kept
    rows = {row["method"]: row for row in report["summary"]}
    for method, row in rows.items():
        best = min((c for c in candidates[method] if c["score"] is not None), key=lambda c: c["score"])
        assert row["chosen"] == best["setting"] and set(row["chosen"]) == {"method.lr"}
        assert row["mia_efficacy"]["n"] == 1
    assert 1 - rows["scrub"]["ua"]["mean"] <= 0.05  # SCRUB as published forgets class-wise
    table = (out / "compare.md").read_text()
    assert "chosen setting" in table and "method.lr=" in table and "MIA-Eff" in table
    # provenance names the recipe each run used (its method and chosen lr), in the report and in the checkpoint
    from safetensors import safe_open

    from orthograd_cli.recipe import parse_recipe, recipe_sha256

    digests = set()
    for method in rows:
        run = json.loads((out / method / "seed0" / "report.json").read_text())
        held = recipe_sha256(parse_recipe(run["recipe"], "report"))
        assert run["recipe"]["method"]["name"] == method
        assert run["recipe"]["method"]["lr"] == rows[method]["chosen"]["method.lr"]
        assert run["provenance"]["sha256"]["recipe"] == held
        with safe_open(str(out / method / "seed0" / "model.safetensors"), "pt") as weights:
            assert weights.metadata()["orthograd.sha256.recipe"] == held
        digests.add(held)
    assert len(digests) == 2 and report["recipe_sha256"] == recipe_sha256(parse_recipe(report["recipe"], "compare"))
