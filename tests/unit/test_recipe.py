"""Recipes: every shipped file validates; bad keys and values are refused with the key path."""

from pathlib import Path

import pytest

from orthograd_cli.errors import RecipeError
from orthograd_cli.recipe import load_recipe, shipped_recipes_dir

SHIPPED = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


def test_shipped_recipes_are_found_from_the_installed_package():
    assert sorted(p.name for p in shipped_recipes_dir().glob("*.yaml")) == [p.name for p in SHIPPED]
    assert len(SHIPPED) >= 3


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_recipe_validates_and_names_its_command(path):
    recipe, sha = load_recipe(str(path))
    assert len(sha) == 64
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert any("orthograd forget" in line for line in header), "header comment must give the exact command"
    assert path.stem.count("_") >= 2, "recipes are named <model>_<data>_<scenario>.yaml"
    # for Hugging Face folders, whose config.json names the architecture (Whisper comes only as a folder)
    if "_hf_" in path.stem or path.stem.startswith("whisper_"):
        assert recipe.model.arch is None
    else:
        assert recipe.model.arch and path.stem.startswith(recipe.model.arch)


def test_overrides_reach_nested_keys_and_parse_values_as_yaml():
    recipe, _ = load_recipe("resnet18_digits_class", ["method.projection.scope=global", "method.lr=0.01",
                                                      "data.mean=[0.1, 0.2, 0.3]"])
    assert recipe.method.projection.scope == "global"
    assert recipe.method.lr == 0.01
    assert recipe.data.mean == [0.1, 0.2, 0.3]


@pytest.mark.parametrize("override,fragment", [
    ("method.alhpa=0.5", "did you mean 'alpha'"),
    ("method.projection.scop=global", "did you mean 'scope'"),
    ("method.lr=-1", "method.lr"),
    ("method.alpha=1.5", "method.alpha"),
    ("method.retain_batch_size=0", "method.retain_batch_size"),
    ("method.projection.scope=diagonal", "method.projection.scope"),
    ("lora.r=eight", "lora.r"),
])
def test_bad_recipe_values_name_the_key(override, fragment):
    with pytest.raises(RecipeError) as caught:
        load_recipe(None, [override])
    assert fragment in f"{caught.value} {caught.value.hint}"


def test_malformed_yaml_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method:\n  lr: [0.1\n")
    with pytest.raises(RecipeError, match="bad.yaml.*line"):
        load_recipe(str(bad))


@pytest.mark.parametrize("overrides,fragment", [
    (["method.name=neggrad", "method.alpha=0.5"], "method neggrad has no retain weight α"),
    (["method.name=scrub", "method.alpha=0"], "method scrub has no retain weight α"),
    (["method.per_sample.backend=gram", "method.projection.scope=global", "method.projection.solver=qr"],
     "solver qr cannot apply"),
    (["precision=bf16", "method.per_sample.backend=vmap"], "bf16 cannot reach into the vmap backend"),
], ids=["alpha-neggrad", "alpha-scrub", "qr-with-gram", "bf16-with-vmap"])
def test_settings_that_would_be_ignored_are_refused(overrides, fragment):
    with pytest.raises(RecipeError, match=fragment):
        load_recipe(None, overrides)


def test_a_yaml_alias_bomb_in_an_override_is_refused_before_it_expands():
    import time

    bomb = "[&a [x,x,x,x,x,x,x,x,x], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b], " + \
        ", ".join(f"&{n} [{','.join(['*' + p] * 9)}]" for p, n in zip("cdefghi", "defghij")) + "]"
    started = time.monotonic()
    with pytest.raises(RecipeError, match="anchors and aliases"):
        load_recipe(None, [f"lora.target_modules={bomb}"])
    assert time.monotonic() - started < 1
    with pytest.raises(RecipeError, match="characters long"):
        load_recipe(None, ["lora.target_modules=[" + "a," * 5000 + "]"])


def test_a_sweep_varies_only_how_a_method_unlearns():
    from orthograd_cli.errors import UsageError
    from orthograd_cli.jobs.sweep import candidates_for, parse_sweep

    for bad, fragment in [("task=asr,classification", "varies method.* and lora.*"), ("seed=0,1", "varies method"),
                          ("method.name=neggrad,orthograd", "varies method"), ("method.lr=[0.1", "not valid YAML")]:
        with pytest.raises((UsageError, RecipeError), match=fragment):
            parse_sweep([bad])
    grid = parse_sweep(["method.alpha=0,0.5", "method.lr=0.1,0.2"])
    assert len(candidates_for("orthograd", grid)) == 4
    # neggrad has no α: its candidates differ in lr only, not in a setting it would ignore
    assert candidates_for("neggrad", grid) == [{"method.lr": 0.1}, {"method.lr": 0.2}]


def test_per_sample_rows_under_bf16_refuse_vmap_when_auto_falls_back_to_it():
    import torch

    from orthograd_cli.gradients.batching import pass_precision
    from orthograd_cli.gradients.per_sample import per_sample_grads

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))  # LayerNorm: hooks cannot
    params = dict(model.named_parameters())
    inputs, labels = torch.randn(3, 4), torch.randint(0, 4, (3,))
    with pass_precision("bf16", "cpu"), pytest.raises(RecipeError, match="vmap cannot run under precision: bf16"):
        per_sample_grads(model, params, inputs, labels, torch.nn.functional.cross_entropy, "auto")
