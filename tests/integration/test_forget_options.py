"""`forget` options beyond the defaults: Adam, full parameters, a forget hold-out; LoRA on a ViT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file


def short_forget(cli, trained_model, digits, out, *sets):
    args = ["forget", trained_model, "--forget", digits / "sample/forget.csv", "--retain",
            digits / "sample/retain.csv", "--test", digits / "test.csv", "--set", "method.max_steps=3",
            "--require", "!target_reached",
            "--set", "method.retain_batch_size=16", "--set", "method.stop.check_every=1", "--out", out, "--quiet",
            "--json"]
    for assignment in sets:
        args += ["--set", assignment]
    result = cli(*args)
    assert result.code == 0, result.err
    return json.loads(result.out)


@pytest.mark.slow
def test_adam_runs_and_the_report_says_it_breaks_orthogonality(cli, trained_model, digits, tmp_path):
    report = short_forget(cli, trained_model, digits, tmp_path / "run", "method.optimizer=adam",
                          "method.lr=0.001")
    assert report["steps"] >= 1
    assert any("no longer exactly orthogonal" in note for note in report["notes"])


@pytest.mark.slow
def test_full_parameter_unlearning_writes_a_changed_checkpoint_without_adapter(cli, trained_model, digits, tmp_path):
    report = short_forget(cli, trained_model, digits, tmp_path / "run", "lora.enabled=false",
                          "method.projection.scope=global", "method.stop.target_forget_acc=0")
    assert report["trainable_parameters"] > 11_000_000
    assert not (tmp_path / "run/adapter").exists()
    base, after = load_file(str(trained_model)), load_file(str(tmp_path / "run/model.safetensors"))
    assert list(after) == list(base)
    assert any(not torch.equal(base[k], after[k]) for k in base if base[k].is_floating_point())


@pytest.mark.slow
def test_forget_holdout_is_measured_and_drives_the_stop_rule(cli, trained_model, digits, tmp_path):
    report = short_forget(cli, trained_model, digits, tmp_path / "run", "method.stop.forget_holdout=0.2")
    forget_n = len((digits / "sample/forget.csv").read_text().splitlines()) - 1
    holdout = report["metrics"]["after"]["forget_holdout_acc"]
    # the target is the number the run stopped at, the original test accuracy (no forget_test given)
    assert holdout["n"] == round(0.2 * forget_n) and holdout["target"] == report["target_forget_acc"]
    assert report["target_forget_acc"] == report["metrics"]["before"]["test_acc"]["value"]
    assert len(report["history"]) == report["steps"] + 1  # step 0 and every step, on the hold-out
    # each row names the set it measured: the hold-out, not the forget set
    assert all("forget_holdout_acc" in row and "forget_acc" not in row for row in report["history"])


def tiny_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                             num_classes=10).eval()


def test_vit_lora_targets_skip_attention_and_hooks_grads_equal_the_loop():
    from orthograd_cli.gradients.per_sample import per_sample_grads, trainable_parameters
    from orthograd_cli.models.lora import wrap_with_lora
    from orthograd_cli.models.sources.torchvision import SOURCE
    from orthograd_cli.tasks.classification import mean_loss

    model = tiny_vit()
    targets = SOURCE.default_lora_targets(model)
    assert "heads.head" in targets and "encoder.layers.encoder_layer_0.mlp.0" in targets
    assert not any("self_attention" in name for name in targets)
    model = wrap_with_lora(model, r=4, alpha=8, targets=targets).eval()
    params = trainable_parameters(model)
    with torch.no_grad():  # give lora_B weights so that lora_A has gradient too
        for name, p in params.items():
            p.normal_(0, 0.1)
    inputs, labels = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    fast, _ = per_sample_grads(model, params, inputs, labels, mean_loss, "auto")
    slow, _ = per_sample_grads(model, params, inputs, labels, mean_loss, "loop")
    for name in params:
        assert float((fast[name] - slow[name]).norm() / slow[name].norm()) <= 1e-4, name


@pytest.mark.slow
def test_full_parameter_unlearning_with_the_memory_light_gram_backend(cli, trained_model, digits, tmp_path):
    """The shipped full-parameter recipe (gram backend) forgets digit 7 and keeps the other classes."""
    folder = digits / "class7"
    result = cli("forget", trained_model, "--forget", folder / "forget.csv", "--retain", folder / "retain.csv",
                 "--test", folder / "test.csv", "--recipe", "resnet18_digits_full_params", "--out", tmp_path / "run",
                 "--quiet", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["recipe"]["method"]["per_sample"]["backend"] == "gram"
    before, after = report["metrics"]["before"], report["metrics"]["after"]
    assert after["forget_acc"]["value"] == 0.0
    assert after["test_acc"]["value"] >= before["test_acc"]["value"] - 0.03
    assert report["diagnostics"]["retain_rank"]["max"] == 64


@pytest.mark.slow
def test_bf16_passes_forget_a_class_like_float32(cli, trained_model, digits, tmp_path):
    folder = digits / "class7"
    result = cli("forget", trained_model, "--forget", folder / "forget.csv", "--retain", folder / "retain.csv",
                 "--test", folder / "test.csv", "--recipe", "resnet18_digits_class", "--set", "precision=bf16",
                 "--out", tmp_path / "run", "--quiet", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    before, after = report["metrics"]["before"], report["metrics"]["after"]
    assert report["recipe"]["precision"] == "bf16"
    assert after["forget_acc"]["value"] == 0.0
    assert after["test_acc"]["value"] >= before["test_acc"]["value"] - 0.02


def untrained_resnet(path: Path) -> Path:
    import torchvision

    from orthograd_cli.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(torchvision.models.resnet18(num_classes=10).state_dict(), path,
                    {"orthograd.arch": "resnet18", "orthograd.num_classes": "10"})
    return path


def test_a_model_at_chance_is_refused_before_unlearning(cli, digits, tmp_path):
    """An untrained network (what a wrong checkpoint or wrong preprocessing looks like) has nothing to forget: an
    error naming the cause, no output; evaluate says so as a warning; the key lets a benchmark run anyway."""
    model = untrained_resnet(tmp_path / "untrained.safetensors")
    args = ["forget", model, "--forget", digits / "sample/forget.csv", "--retain", digits / "sample/retain.csv",
            "--test", digits / "test.csv", "--set", "method.max_steps=1",
            "--require", "!target_reached", "--out", tmp_path / "run", "--quiet"]
    refused = cli(*args)
    assert refused.code == 3 and "at chance" in refused.err and "preprocessing" in refused.err
    assert refused.err.count("\n") == 1 and not (tmp_path / "run").exists()
    evaluated = cli("evaluate", model, "--test", digits / "test.csv", "--quiet", "--json")
    assert evaluated.code == 5 and "at chance on the test set" in evaluated.err  # never looks like success
    assert "requirement not met: not_at_chance" in evaluated.err
    assert any("at chance" in warning for warning in json.loads(evaluated.out)["warnings"])
    forced = cli(*args, "--set", "eval.require_better_than_chance=false", "--json")
    assert forced.code == 5 and "requirement not met: not_at_chance" in forced.err  # the output is at chance too
    assert (tmp_path / "run" / "model.safetensors").exists()
    # a model at chance has no test accuracy worth keeping: whatever one step does to it is accepted too
    forced = cli(*args, "--set", "eval.require_better_than_chance=false", "--require", "!not_at_chance",
                 "--require", "!test_kept", "--json", "--out", tmp_path / "accepted")
    assert forced.code == 0, forced.err


def test_a_model_that_lost_its_test_accuracy_fails_test_kept(cli, trained_model, digits, tmp_path):
    """evaluate --original: an untrained resnet measured against the trained one has lost most of the test
    accuracy, and the built-in test_kept check says so (exit 5, both numbers in its detail); with no original model
    it does not apply, and a recipe that allows the fall accepts it."""
    model = untrained_resnet(tmp_path / "untrained.safetensors")
    args = ["evaluate", model, "--test", digits / "test.csv", "--require", "!not_at_chance", "--json", "--quiet"]
    failed = cli(*args, "--original", trained_model)
    assert failed.code == 5 and "requirement not met: test_kept" in failed.err, failed.err
    report = json.loads(failed.out)
    kept = next(row for row in report["verdict"]["requirements"] if row["requirement"] == "test_kept")
    before, after = report["original_metrics"]["test_acc"]["value"], report["metrics"]["test_acc"]["value"]
    assert before > 0.9 and after < 0.3  # trained on the digits; untrained: near chance (0.1)
    assert f"{before:.4f} -> {after:.4f}" in kept["detail"] and "allowed 0.02" in kept["detail"]
    alone = cli(*args)
    assert alone.code == 0, alone.err
    assert "not applicable" in next(row["detail"] for row in json.loads(alone.out)["verdict"]["requirements"]
                                    if row["requirement"] == "test_kept")
    allowed = cli(*args, "--original", trained_model, "--set", "eval.max_test_drop=1")
    assert allowed.code == 0, allowed.err


def test_zero_steps_is_a_warning_not_a_quiet_success(cli, trained_model, digits, tmp_path):
    report = short_forget(cli, trained_model, digits, tmp_path / "run", "method.stop.target_forget_acc=1.0")
    assert report["steps"] == 0
    assert any("nothing was unlearned" in w for w in report["warnings"])
    assert any("nothing was unlearned" in note for note in report["notes"])
    result = cli("forget", trained_model, "--forget", digits / "sample/forget.csv", "--retain",
                 digits / "sample/retain.csv", "--set", "method.stop.target_forget_acc=1.0", "--out", tmp_path / "r2",
                 "--quiet")
    assert result.code == 0 and "warning: nothing was unlearned" in result.err


def test_lora_skips_grouped_convolutions_and_merges_a_mobilenet():
    """Depthwise convolutions (MobileNet) take no LoRA that peft can merge: the defaults leave them out, the
    adapter merges into the base exactly as the LoRA forward computes, and naming one is a recipe error."""
    import torchvision

    from orthograd_cli.errors import RecipeError
    from orthograd_cli.models.lora import wrap_with_lora
    from orthograd_cli.models.sources.torchvision import SOURCE

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
    modules = dict(model.named_modules())
    targets = SOURCE.default_lora_targets(model)
    assert targets and all(getattr(modules[t], "groups", 1) == 1 for t in targets)
    assert any(getattr(m, "groups", 1) > 1 for m in modules.values())
    grouped = next(name for name, m in modules.items() if getattr(m, "groups", 1) > 1)
    with pytest.raises(RecipeError, match="grouped convolution"):
        wrap_with_lora(torchvision.models.mobilenet_v3_small(num_classes=10), 8, 16, [grouped])
    wrapped = wrap_with_lora(model, 8, 16, targets).eval()
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
        images = torch.randn(2, 3, 64, 64)
        adapted = wrapped(images)
        merged = wrapped.merge_and_unload()(images)
    assert float((adapted - merged).abs().max()) <= 1e-4 * float(adapted.abs().max())


def damage_run(cli, trained_model, digits, out, *sets):
    """NegGrad (no retain term) on the digits with a forget target it cannot reach: only the damage limit, if
    any, ends it early. Returns the exit code and the report."""
    args = ["forget", trained_model, "--forget", digits / "sample/forget.csv", "--retain",
            digits / "sample/retain.csv", "--test", digits / "test.csv", "--set", "method.name=neggrad",
            "--set", "method.lr=0.03", "--set", "method.stop.retain_holdout=0.3", "--set", "method.stop.check_every=1",
            "--set", "method.stop.target_forget_acc=0", "--out", out, "--quiet", "--json"]
    for assignment in sets:
        args += ["--set", assignment]
    result = cli(*args)
    return result.code, json.loads(result.out)


@pytest.mark.slow
def test_a_damage_limit_ends_the_run_and_writes_the_last_check_within_it(cli, trained_model, digits, tmp_path):
    code, report = damage_run(cli, trained_model, digits, tmp_path / "limited", "method.stop.max_damage=0.02",
                              "method.max_steps=40")
    assert code == 5 and report["stop_reason"] == "damage_limit" and not report["target_reached"]
    history, written = report["history"], report["written_step"]
    assert history[-1]["damage"] > 0.02 and 1 <= written < report["steps"] == history[-1]["step"]
    row = next(row for row in history if row["step"] == written)
    assert row["damage"] <= 0.02 and row is history[-2]  # every step is checked: the one before the break
    # damage: the largest fall below the original on the watched sets, the retain holdout and the test set
    before = report["metrics"]["before"]
    for check in history:
        assert check["damage"] == pytest.approx(max(before["retain_holdout_acc"]["value"] - check["retain_holdout_acc"],
                                                    before["test_acc"]["value"] - check["test_acc"]), abs=1e-12)
    # the report's "after" is measured on the written file: the chosen check's scores, not the last one's
    after = report["metrics"]["after"]
    for name in ("forget", "test", "retain_holdout"):
        assert abs(after[f"{name}_acc"]["value"] - row[f"{name}_acc"]) <= 1 / after[f"{name}_acc"]["n"] + 1e-9
    assert report["written_rule"].startswith("the check that reached the stop target with the least damage")
    # the written file is what a run stopped at that step writes, to the bit
    code, short = damage_run(cli, trained_model, digits, tmp_path / "short", f"method.max_steps={written}")
    assert code == 5 and short["stop_reason"] == "max_steps" and short["written_step"] == written
    limited, stopped = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("limited", "short"))
    assert limited.keys() == stopped.keys() and all(torch.equal(limited[k], stopped[k]) for k in limited)
    base = load_file(str(trained_model))
    assert any(not torch.equal(base[k], limited[k]) for k in base if base[k].is_floating_point())
