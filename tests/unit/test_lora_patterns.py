"""lora.target_modules patterns: `*` names every Linear/Conv1d/Conv2d whose name matches, at any depth."""

from __future__ import annotations

import pytest


def test_a_pattern_names_every_matching_layer_and_nothing_else():
    import torchvision

    from orthograd_cli.errors import RecipeError
    from orthograd_cli.models.lora import expand_patterns, wrap_with_lora

    model = torchvision.models.resnet18(num_classes=10)
    names = dict(model.named_modules())
    expected = [f"layer1.{block}.conv{i}" for block in range(2) for i in (1, 2)]
    assert expand_patterns(["layer1.*.conv*", "fc"], names) == expected + ["fc"]
    assert expand_patterns(["layer1.*"], names) == expected  # BatchNorm and blocks match the name, not the type
    wrapped = wrap_with_lora(model, 4, 8, ["layer1.*.conv*"])
    adapted = {name.removesuffix(".lora_A.default.weight") for name, p in wrapped.named_parameters()
               if p.requires_grad and name.endswith("lora_A.default.weight")}
    assert adapted == {f"base_model.model.{name}" for name in expected}
    with pytest.raises(RecipeError, match="matches no Linear, Conv1d or Conv2d"):
        expand_patterns(["encoder.*"], names)


@pytest.mark.parametrize("named", [["conv1"], ["fc", "layer1.0.conv1"], ["layer2.0.downsample.0"]])
def test_named_targets_adapt_exactly_the_named_modules(named):
    """peft matches a list of names by suffix (`conv1` would adapt all nine `*.conv1` of a resnet18)."""
    import torchvision

    from orthograd_cli.models.lora import adapted_modules, wrap_with_lora

    wrapped = wrap_with_lora(torchvision.models.resnet18(num_classes=10), 2, 4, named)
    adapted = {name.removeprefix("base_model.model.").removesuffix(".lora_A.default.weight")
               for name, p in wrapped.named_parameters() if p.requires_grad and name.endswith("lora_A.default.weight")}
    assert adapted == set(named)
    assert set(adapted_modules(torchvision.models.resnet18(), wrapped.peft_config["default"].target_modules)) == \
        set(named)
