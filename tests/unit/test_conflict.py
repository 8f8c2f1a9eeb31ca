"""Gradient conflict has the sign the loss changes say: the samples reported as in conflict are exactly
the retain samples whose loss a small ascent step on the forget set raises (real model, real digits)."""

from __future__ import annotations

import copy

import pytest
import torch

from orthograd_cli.gradients.conflict import conflict_share, in_conflict
from orthograd_cli.gradients.per_sample import batch_grad, per_sample_grads, trainable_parameters
from orthograd_cli.models.lora import trainable_model
from orthograd_cli.loading import load_checkpoint_and_info
from orthograd_cli.methods.loop import apply_update
from orthograd_cli.models.registry import load_model
from orthograd_cli.tasks.classification import mean_loss, per_sample_losses


@pytest.fixture(scope="module")
def class_forgetting_model(trained_model, recipe, image_sets):
    """The trained resnet18 with LoRA after three plain ascent steps on digit 7, in float64 (so that a
    small step's loss changes are first-order terms plus second-order ones, with no rounding on top)."""
    checkpoint, info = load_checkpoint_and_info(trained_model, recipe)
    model, params = trainable_model(load_model(checkpoint, info).eval(), recipe, info)
    model = copy.deepcopy(model).double()
    params = trainable_parameters(model)
    forget = image_sets["class_forget"]
    for step in range(3):
        inputs, labels = forget.batch(torch.arange(step * 16, step * 16 + 32))
        g_u, _ = batch_grad(model, params, inputs.double(), labels, mean_loss)
        apply_update(params, {n: -g for n, g in g_u.items()}, 0.05, None)  # d = −g_u: ascent
    return model, params


def test_samples_in_conflict_are_exactly_those_whose_loss_ascent_raises(class_forgetting_model, image_sets):
    model, params = class_forgetting_model
    forget, retain = image_sets["class_forget"], image_sets["class_retain"]
    forget_inputs, forget_labels = forget.batch(torch.arange(32))
    retain_inputs, retain_labels = retain.batch(torch.arange(64))
    retain_inputs = retain_inputs.double()
    g_u, _ = batch_grad(model, params, forget_inputs.double(), forget_labels, mean_loss)
    rows, before = per_sample_grads(model, params, retain_inputs, retain_labels, mean_loss, "hooks")
    dots = sum(rows[n].reshape(64, -1) @ g_u[n].reshape(-1) for n in params)
    conflicting = in_conflict(dots)

    step = 1e-4  # Δθ = +η·g_u/‖g_u‖: one small step of plain ascent
    norm = torch.sqrt(sum((g ** 2).sum() for g in g_u.values()))
    saved = {n: p.detach().clone() for n, p in params.items()}
    with torch.no_grad():
        for n, p in params.items():
            p.add_(step * g_u[n] / norm)
        after = per_sample_losses(model(retain_inputs), retain_labels)
        for n, p in params.items():
            p.copy_(saved[n])
    change = after - before
    predicted = step * dots / norm  # the first-order change ⟨g_i, Δθ⟩
    rose = change > 0
    # a sample may only disagree where the second-order remainder is as large as the first-order term
    disagree = rose != conflicting
    second_order = (change - predicted).abs()
    assert bool((second_order[disagree] >= predicted[disagree].abs()).all())
    assert int(disagree.sum()) <= 2, f"{int(disagree.sum())} of 64 samples disagree"
    assert 0 < int(conflicting.sum()) < 64, "the check needs samples on both sides"
    assert float(conflict_share(dots)) == pytest.approx(float(rose.double().mean()), abs=2 / 64)


def test_inspect_reports_the_share_and_strongest_conflicts_on_the_rising_side(cli, trained_model, digits, tmp_path):
    import json

    folder = digits / "class7"
    result = cli("inspect", trained_model, "--forget", folder / "forget.csv", "--retain", folder / "retain.csv",
                 "--plot", tmp_path / "conflict.png", "--json")
    assert result.code == 0, result.err
    conflict = json.loads(result.out)["gradient_conflict"]
    cosines = [entry["cosine"] for entry in conflict["retain_cosines"]]
    assert len(cosines) == conflict["retain_batch_size"] == 64
    assert conflict["share_in_conflict"] == pytest.approx(sum(c > 0 for c in cosines) / len(cosines))
    strongest = [entry["cosine"] for entry in conflict["strongest_conflicts"]]
    assert strongest == sorted(strongest, reverse=True) and all(c > 0 for c in strongest)
    assert strongest[0] == max(cosines)
    assert "⟨g_u, g_i⟩ > 0" in conflict["conflict_definition"]
    assert (tmp_path / "conflict.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("retain_grads", ["per_sample", "mean", "none"])
def test_a_conflict_share_is_reported_only_where_each_samples_gradient_is_known(class_forgetting_model, image_sets,
                                                                                retain_grads):
    """The mean/none ablations see one mean retain gradient: a share of samples computed from it would be 0 or 1
    and mean nothing."""
    from orthograd_cli.methods.orthograd import orthograd_direction
    from orthograd_cli.recipe import MethodSpec

    model, params = class_forgetting_model
    forget, retain = image_sets["class_forget"], image_sets["class_retain"]
    inputs, labels = forget.batch(torch.arange(16))
    retain_inputs, retain_labels = retain.batch(torch.arange(16))
    spec = MethodSpec.model_validate({"projection": {"retain_grads": retain_grads}})
    direction = orthograd_direction(model, params, (inputs.double(), labels),
                                    (retain_inputs.double(), retain_labels), spec, mean_loss)
    read = direction.stats.read()
    assert ("conflict_share" in read) == (retain_grads == "per_sample")
    if retain_grads == "per_sample":
        rows, _ = per_sample_grads(model, params, retain_inputs.double(), retain_labels, mean_loss, "loop")
        g_u, _ = batch_grad(model, params, inputs.double(), labels, mean_loss)
        dots = sum(rows[n].reshape(16, -1) @ g_u[n].reshape(-1) for n in params)
        assert read["conflict_share"] == pytest.approx(float((dots > 0).double().mean()), abs=1e-12)


def test_inspects_retain_rank_is_the_rank_the_projection_uses():
    """One sample with a huge gradient (a badly fit one) must not hide the other directions: the projection
    counts rank on unit-norm rows, and so must `inspect`."""
    from orthograd_cli.gradients.projection import project
    from orthograd_cli.jobs.inspect import unit_row_spectrum

    generator = torch.Generator().manual_seed(0)
    rows = {"a": torch.randn(6, 30, generator=generator, dtype=torch.float64),
            "b": torch.randn(6, 4, 5, generator=generator, dtype=torch.float64)}
    for tensor in rows.values():
        tensor[0] *= 1e9
    unlearn_grad = {name: torch.randn(r.shape[1:], generator=generator, dtype=torch.float64)
                    for name, r in rows.items()}
    _, stats = project(unlearn_grad, rows, "global", 1e-6, "gram")
    spectrum = unit_row_spectrum(rows, 6)
    assert int(stats.retain_rank) == int((spectrum > 1e-6 * spectrum[0]).sum()) == 6
