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
