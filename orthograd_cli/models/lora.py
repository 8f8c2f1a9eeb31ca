"""LoRA adapters (peft): wrapping a model for unlearning, saving, loading and merging adapters.

Adapters are plain peft folders (`adapter_config.json` + `adapter_model.safetensors`) plus
`orthograd_adapter.json`, which records the base checkpoint's sha256 and architecture so that
`orthograd merge` can refuse a base it was not trained on.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

from orthograd_cli.errors import CheckpointError, UsageError
from orthograd_cli.models.checkpoint import read_checkpoint

ADAPTER_INFO = "orthograd_adapter.json"


def adaptable_layers() -> tuple:
    """The layer types LoRA adapts here: Linear, Conv1d, Conv2d, and transformers' `Conv1D` (GPT-2's linear
    layers, weight stored transposed; peft adapts it with fan_in_fan_out). Their adapters are Linear or
    convolution layers, which hooks.py differentiates exactly."""
    import torch.nn as nn

    return nn.Linear, nn.Conv1d, nn.Conv2d, *transposed_linear()


def transposed_linear() -> tuple:
    """transformers' Conv1D where transformers is installed (it comes with peft), else nothing."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:
        return ()
    return (Conv1D,)


def wrap_with_lora(model, r: int, alpha: float, targets: list[str]):
    """Wrap `model` in a peft LoRA model on the named modules: base weights frozen, adapters trainable."""
    from peft import LoraConfig, get_peft_model

    targets = lora_targets(model, targets)
    names = dict(model.named_modules())
    # GPT-2's Conv1D stores its weight transposed; peft needs to be told (it would warn and flip the setting)
    transposed = all(isinstance(names[t], transposed_linear()) for t in targets) if transposed_linear() else False
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=exactly(targets), lora_dropout=0.0, bias="none",
                        fan_in_fan_out=transposed)
    with warnings.catch_warnings():  # peft asks transformers models a deprecated attribute; not the user's concern
        warnings.simplefilter("ignore", FutureWarning)
        return with_conv_geometry(get_peft_model(model, config))


def lora_targets(model, targets: list[str]) -> list[str]:
    """The module names LoRA goes on (patterns expanded), each checked to take an adapter peft can merge."""
    import torch.nn as nn

    from orthograd_cli.errors import RecipeError, did_you_mean

    names = dict(model.named_modules())
    targets = expand_patterns(targets, names)
    unknown = [t for t in targets if t not in names]
    if unknown:
        raise RecipeError(f"lora.target_modules: no module named '{unknown[0]}' in the model",
                          did_you_mean(unknown[0], names) or "inspect the checkpoint to see its module names")
    # the layers LoRA adapts here, and that the per-sample backends differentiate exactly
    unsupported = [t for t in targets if not isinstance(names[t], adaptable_layers())]
    if unsupported:
        module = names[unsupported[0]]
        raise RecipeError(f"lora.target_modules: '{unsupported[0]}' is a {type(module).__name__}, which takes no "
                          "LoRA adapter", "name Linear, Conv1d or Conv2d layers (or set lora.enabled: false)")
    if transposed_linear() and 0 < sum(isinstance(names[t], transposed_linear()) for t in targets) < len(targets):
        raise RecipeError("lora.target_modules: mixes transformers Conv1D layers with Linear or convolution layers, "
                          "which peft adapts with different weight layouts (fan_in_fan_out)",
                          "adapt one kind of layer per run")
    grouped = [t for t in targets if isinstance(names[t], (nn.Conv1d, nn.Conv2d)) and names[t].groups > 1]
    if grouped:  # depthwise/grouped convolutions (MobileNet, EfficientNet): peft cannot merge LoRA into them
        raise RecipeError(f"lora.target_modules: '{grouped[0]}' is a grouped convolution (groups="
                          f"{names[grouped[0]].groups}), which peft's LoRA cannot merge",
                          "leave it out (the default targets skip grouped convolutions)")
    if not targets:
        raise RecipeError("lora.target_modules: the model has no layer to put LoRA adapters on",
                          "name Linear, Conv1d or Conv2d layers, or set lora.enabled: false")
    return targets


def lora_parameter_count(model, targets: list[str], r: int) -> int:
    """The trainable parameters of rank-r adapters on `targets` as peft builds them, without building them: a
    Linear's A (r × in) and B (out × r); a convolution's A (r × in × kernel) and B (out × r, 1 × 1)."""
    import math

    import torch.nn as nn

    names = dict(model.named_modules())
    count = 0
    for target in targets:
        layer = names[target]
        if isinstance(layer, nn.Linear):
            count += r * (layer.in_features + layer.out_features)
        elif isinstance(layer, transposed_linear()):  # Conv1D: weight (in, out)
            count += r * sum(layer.weight.shape)
        else:
            count += r * layer.in_channels * math.prod(layer.kernel_size) + layer.out_channels * r
    return count


def exactly(names: list[str]) -> str:
    """peft's target_modules for exactly these module names. A list would be matched by suffix (`conv1` adapts
    every `*.conv1` of a resnet); a string is matched whole against each module name (re.fullmatch)."""
    import re

    return "^(?:" + "|".join(re.escape(name) for name in names) + ")$"


def adapted_modules(model, target_modules) -> list[str]:
    """The module names peft adapts for `target_modules`: a string as a whole-name pattern, a list by suffix (how
    adapters written by other tools, or by earlier orthograd versions, name them)."""
    import re

    names = [name for name, _ in model.named_modules() if name]
    if isinstance(target_modules, str):
        return [name for name in names if re.fullmatch(target_modules, name)]
    targets = list(target_modules or [])
    return [name for name in names if any(name == t or name.endswith("." + t) for t in targets)]


def with_conv_geometry(peft_model):
    """peft's LoRA convolution wrappers do not pass on their base layer's `stride`, which models read
    (Whisper's encoder sizes its input from `conv1.stride` and `conv2.stride`); give it to them."""
    from peft.tuners.lora import LoraLayer

    for module in peft_model.modules():
        if isinstance(module, LoraLayer) and hasattr(module.get_base_layer(), "stride"):
            module.stride = module.get_base_layer().stride
    return peft_model


def expand_patterns(targets: list[str], names) -> list[str]:
    """Target names with `*` stand for every Linear, Conv1d or Conv2d module whose name matches (fnmatch), in
    module order, e.g. `model.encoder.layers.*.self_attn.*_proj` for every encoder layer of any depth; other names
    stay."""
    import fnmatch

    expanded = []
    for target in targets:
        if "*" not in target:
            expanded.append(target)
            continue
        matches = [name for name, module in names.items() if fnmatch.fnmatchcase(name, target)
                   and isinstance(module, adaptable_layers())]
        if not matches:
            from orthograd_cli.errors import RecipeError

            raise RecipeError(f"lora.target_modules: the pattern '{target}' matches no Linear, Conv1d or Conv2d "
                              "module", "inspect the checkpoint to see its module names")
        expanded += [name for name in matches if name not in expanded]
    return expanded


def trainable_model(model, recipe, info):
    """The module to unlearn and its trainable parameters: LoRA adapters on the recipe's targets (else the
    model source's defaults), or every weight with `lora.enabled: false`."""
    import torch

    from orthograd_cli.gradients.per_sample import trainable_parameters

    torch.manual_seed(recipe.seed)  # LoRA's A matrices are initialised at random
    if recipe.lora.enabled:
        targets = recipe.lora.target_modules or info.source.default_lora_targets(model)
        model = wrap_with_lora(model, recipe.lora.r, recipe.lora.alpha, targets)
    model.eval()
    return model, trainable_parameters(model)


def save_adapter(peft_model, directory: Path, base_sha256: str, merged_metadata: dict[str, str]) -> None:
    """Write the peft adapter folder plus the base's sha256 and the merged checkpoint's metadata,
    so that `orthograd merge` reproduces the merged file exactly."""
    from orthograd_cli.outputs import with_umask

    peft_model.save_pretrained(str(directory))
    for path in directory.iterdir():  # safetensors writes through a private temporary file (0600)
        with_umask(path)
    (directory / ADAPTER_INFO).write_text(json.dumps({"base_sha256": base_sha256, "metadata": merged_metadata},
                                                     indent=2, sort_keys=True))


def read_adapter_info(directory: Path) -> dict:
    path = Path(directory) / ADAPTER_INFO
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def load_adapter_into(model, directory: Path):
    """Wrap `model` with the adapter in `directory`, refusing one whose targets or shapes do not fit."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    directory = Path(directory)
    config_path = directory / "adapter_config.json"
    weights_path = directory / "adapter_model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise UsageError(f"{directory}: not an adapter folder (missing {path.name})",
                             "pass the adapter/ folder that `orthograd forget` wrote")
    try:
        config = LoraConfig.from_pretrained(str(directory), trust_remote_code=False)
    except (ValueError, TypeError, KeyError, OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_path}: not a valid LoRA adapter config ({type(exc).__name__}: {exc})",
                              "pass the adapter/ folder that `orthograd forget` wrote, unchanged") from None
    try:
        adapted = adapted_modules(model, config.target_modules)
    except re.error:
        raise CheckpointError(f"{config_path}: target_modules is not a valid pattern",
                              "pass the adapter/ folder that `orthograd forget` wrote, unchanged") from None
    if not isinstance(config.target_modules, str):  # named modules: each must be in the base
        names = dict(model.named_modules())
        missing = [t for t in sorted(config.target_modules or []) if not any(n == t or n.endswith("." + t) for n in names)]
        if missing:
            raise CheckpointError(f"{directory}: adapter targets module '{missing[0]}', which the base model lacks",
                                  "the adapter was trained on another architecture")
    if not adapted:
        raise CheckpointError(f"{directory}: the adapter's target_modules match no module of the base model",
                              "the adapter was trained on another architecture")
    weights = read_checkpoint(weights_path).state_dict  # truncated, pickled or non-finite: a CheckpointError
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = with_conv_geometry(get_peft_model(model, config))
    expected = {k: v.shape for k, v in peft_model.state_dict().items() if "lora_" in k}
    for key, tensor in weights.items():
        full = _peft_state_key(key, expected)
        if full is None:
            raise CheckpointError(f"{weights_path}: tensor '{key}' has no place in the base model",
                                  "the adapter was trained on another architecture")
        if tuple(expected[full]) != tuple(tensor.shape):
            raise CheckpointError(f"{weights_path}: '{key}' has shape {tuple(tensor.shape)}, the base needs "
                                  f"{tuple(expected[full])}", "the adapter does not fit this base model")
    # a missing lora_B would merge as a zero change, a missing lora_A fail later: both are a broken adapter
    given = {_peft_state_key(key, expected) for key in weights}
    absent = sorted(set(expected) - given)
    if absent:
        raise CheckpointError(f"{weights_path}: no tensor for '{_saved_key(absent[0])}' ({len(absent)} of "
                              f"{len(expected)} adapter tensors missing)", "the adapter folder is incomplete; "
                              "pass the adapter/ folder that `orthograd forget` wrote, unchanged")
    set_peft_model_state_dict(peft_model, weights)
    return peft_model


def _saved_key(live_key: str) -> str:
    return live_key.replace(".lora_A.default.weight", ".lora_A.weight").replace(".lora_B.default.weight",
                                                                               ".lora_B.weight")


def _peft_state_key(saved_key: str, expected: dict) -> str | None:
    """peft saves `...lora_A.weight`; the live model names it `...lora_A.default.weight`."""
    live = saved_key.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")
    return live if live in expected else None


def merged_state_dict(peft_model, reference: dict, info) -> dict:
    """Merge the adapters into the base weights; keys, shapes and dtypes follow `reference`. A merge that
    gives non-finite weights (or ones that overflow the base's dtype) is refused."""
    import torch

    from orthograd_cli.models.registry import checkpoint_state

    state = checkpoint_state(peft_model.merge_and_unload(), info, reference)
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"merging the adapter gives non-finite values in '{key}'",
                                  "the adapter is corrupt or diverged; nothing was written")
    return state


def merge_adapter(base, info, adapter_dir: Path) -> dict:
    """Base checkpoint + adapter folder, merged on the CPU; keys, shapes and dtypes are the base's."""
    from orthograd_cli.models.registry import load_model

    peft_model = load_adapter_into(load_model(base, info), adapter_dir)
    return merged_state_dict(peft_model, base.state_dict, info)
