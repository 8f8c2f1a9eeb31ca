"""Every unlearning method through the real CLI on real digits, class-wise and sample-wise; `compare`."""

from __future__ import annotations

import json

import pytest

from orthograd_cli.methods import METHODS
from tests.conftest import FORGET_CLASS

SCENARIOS = {
    "class": (f"class{FORGET_CLASS}/forget.csv", f"class{FORGET_CLASS}/retain.csv", f"class{FORGET_CLASS}/test.csv"),
    "sample": ("sample/forget.csv", "sample/retain.csv", "test.csv"),
}


# finetune forgets only through drift (about 130 steps to the sample-wise target here); others within 40
MAX_STEPS = {"finetune": 150}


def scenario_args(digits, mode: str) -> list:
    forget, retain, test = SCENARIOS[mode]
    return ["--forget", digits / forget, "--retain", digits / retain, "--test", digits / test,
            "--set", f"eval.mode={mode}"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["class", "sample"])
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_moves_forget_accuracy_down(cli, trained_model, digits, tmp_path, method, mode):
    result = cli("forget", trained_model, *scenario_args(digits, mode), "--set", f"method.name={method}",
                 "--set", f"method.max_steps={MAX_STEPS.get(method, 40)}", "--out", tmp_path / "run", "--quiet", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["method"] == method and report["recipe"]["method"]["name"] == method
    before, after = report["metrics"]["before"], report["metrics"]["after"]
    assert after["forget_acc"]["value"] < before["forget_acc"]["value"]
    assert after["test_acc"]["value"] > 0.5, "a short run must not destroy the model"
    assert (tmp_path / "run/model.safetensors").exists() and (tmp_path / "run/adapter").is_dir()
    if method == "orthograd":
        assert "kept_norm_ratio" in report["diagnostics"]
    else:
        assert "kept_norm_ratio" not in report["diagnostics"]  # no projection, no projection diagnostics


@pytest.mark.slow
def test_compare_with_three_seeds_writes_table_json_csv_markdown_and_plot(cli, trained_model, digits, tmp_path):
    out = tmp_path / "compare"
    result = cli("compare", trained_model, *scenario_args(digits, "sample"), "--methods", "orthograd,neggrad",
                 "--seeds", "3", "--set", "method.max_steps=10", "--out", out, "--quiet")
    assert result.code == 0, result.err
    assert "orthograd" in result.out and "UIS" in result.out
    report = json.loads((out / "compare.json").read_text())
    assert [len(report["runs"][m]) for m in ("orthograd", "neggrad")] == [3, 3]
    assert {run["seed"] for run in report["runs"]["orthograd"]} == {0, 1, 2}
    uis = [row["uis"]["mean"] for row in report["summary"]]
    assert uis == sorted(uis)
    for row in report["summary"]:
        runs = report["runs"][row["method"]]
        values = [r["metrics"]["test_acc"]["value"] for r in runs]
        assert row["test_acc"]["mean"] == pytest.approx(sum(values) / 3) and row["test_acc"]["n"] == 3
    assert (out / "orthograd/seed2/model.safetensors").exists()
    assert (out / "compare.csv").read_text().startswith("method,runs,failed,forget_acc_mean")
    assert (out / "compare.md").read_text().count("\n") == 4  # header, rule, two methods
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_failing_method_is_reported_and_the_others_still_run(cli, trained_model, digits, tmp_path, monkeypatch):
    from types import SimpleNamespace

    def make(*args, **kwargs):
        raise RuntimeError("this method cannot run here")

    monkeypatch.setitem(METHODS, "neggrad", SimpleNamespace(make=make))
    out = tmp_path / "compare"
    result = cli("compare", trained_model, *scenario_args(digits, "sample"), "--methods", "orthograd,neggrad",
                 "--set", "method.max_steps=3", "--out", out, "--quiet", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    by_method = {row["method"]: row for row in report["summary"]}
    assert by_method["neggrad"]["failed"] == 1 and "cannot run here" in by_method["neggrad"]["failures"][0]
    assert by_method["orthograd"]["failed"] == 0 and by_method["orthograd"]["uis"]["mean"] is not None
    assert report["summary"][-1]["method"] == "neggrad"  # failed methods sort last


def test_compare_refuses_an_unknown_method_before_any_work(cli, trained_model, digits, tmp_path):
    result = cli("compare", trained_model, *scenario_args(digits, "sample"), "--methods", "orthograd,neggrd",
                 "--out", tmp_path / "compare")
    assert result.code == 2 and "did you mean 'neggrad'" in result.err
    assert not (tmp_path / "compare").exists()
