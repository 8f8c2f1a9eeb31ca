"""LoRA adapters (peft) on torchvision models: default targets, wrapping, saving and merging.

Adapters are plain peft folders (`adapter_config.json` + `adapter_model.safetensors`) plus
`orthograd_adapter.json`, which records the base checkpoint's sha256 and architecture so that
`orthograd merge` can refuse a base it was not trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

from orthograd_cli.errors import CheckpointError, UsageError

ADAPTER_INFO = "orthograd_adapter.json"


ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def default_target_modules(model) -> list[str]:
    """Speech models: the attention projections. Image models: every Conv2d and Linear outside
    nn.MultiheadAttention.

    torchaudio's wav2vec2/HuBERT attention uses plain Linear q/k/v/out projections, which LoRA and
    the per-sample hooks handle exactly; the convolutional feature extractor stays frozen.

    peft's LoRA inside MultiheadAttention mutates `.data` and breaks under vmap, and LoRA on its
    `out_proj` is silently ignored, so attention stays frozen: on a torchvision ViT this selects
    the MLP linears and the head; on a ResNet every convolution and the final linear layer.
    """
    import torch.nn as nn

    projections = [name for name, module in model.named_modules()
                   if isinstance(module, nn.Linear) and name.rpartition(".")[2] in ATTENTION_PROJECTIONS
                   and ".attention." in f".{name}"]
    if projections:
        return projections
    inside_attention = {
        f"{name}.{child}" if name else child
        for name, module in model.named_modules() if isinstance(module, nn.MultiheadAttention)
        for child, _ in module.named_modules()
    }
    return [
        name for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear)) and name not in inside_attention
        and not any(name.startswith(prefix + ".") or name == prefix for prefix in inside_attention)
    ]


def wrap_with_lora(model, r: int, alpha: float, target_modules: list[str] | None):
    """Wrap `model` in a peft LoRA model: base weights frozen, adapters trainable."""
    from peft import LoraConfig, get_peft_model

    names = dict(model.named_modules())
    targets = target_modules or default_target_modules(model)
    unknown = [t for t in targets if t not in names]
    if unknown:
        from orthograd_cli.errors import RecipeError, did_you_mean

        raise RecipeError(f"lora.target_modules: no module named '{unknown[0]}' in the model",
                          did_you_mean(unknown[0], names) or "run `orthograd inspect MODEL` to see module names")
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0, bias="none")
    return get_peft_model(model, config)


def save_adapter(peft_model, directory: Path, base_sha256: str, merged_metadata: dict[str, str]) -> None:
    """Write the peft adapter folder plus the base's sha256 and the merged checkpoint's metadata,
    so that `orthograd merge` reproduces the merged file exactly."""
    peft_model.save_pretrained(str(directory))
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
    from peft import LoraConfig, set_peft_model_state_dict
    from safetensors.torch import load_file
    from peft import get_peft_model

    directory = Path(directory)
    config_path = directory / "adapter_config.json"
    weights_path = directory / "adapter_model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise UsageError(f"{directory}: not an adapter folder (missing {path.name})",
                             "pass the adapter/ folder that `orthograd forget` wrote")
    try:
        config = LoraConfig.from_pretrained(str(directory))
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_path}: not a valid LoRA adapter config ({exc})") from None
    names = dict(model.named_modules())
    targets = sorted(config.target_modules) if isinstance(config.target_modules, (set, list)) else []
    # peft may shorten target names to suffixes ("conv1" for every "*.conv1"), so match as peft does
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise CheckpointError(f"{directory}: adapter targets module '{missing[0]}', which the base model lacks",
                              "the adapter was trained on another architecture")
    weights = load_file(str(weights_path))
    peft_model = get_peft_model(model, config)
    expected = {k: v.shape for k, v in peft_model.state_dict().items() if "lora_" in k}
    for key, tensor in weights.items():
        full = _peft_state_key(key, expected)
        if full is None:
            raise CheckpointError(f"{weights_path}: tensor '{key}' has no place in the base model",
                                  "the adapter was trained on another architecture")
        if tuple(expected[full]) != tuple(tensor.shape):
            raise CheckpointError(f"{weights_path}: '{key}' has shape {tuple(tensor.shape)}, the base needs "
                                  f"{tuple(expected[full])}", "the adapter does not fit this base model")
    set_peft_model_state_dict(peft_model, weights)
    return peft_model


def _peft_state_key(saved_key: str, expected: dict) -> str | None:
    """peft saves `...lora_A.weight`; the live model names it `...lora_A.default.weight`."""
    live = saved_key.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")
    return live if live in expected else None


def merged_state_dict(peft_model, reference: dict) -> dict:
    """Merge the adapters into the base weights; keys, shapes and dtypes follow `reference`."""
    merged = peft_model.merge_and_unload().state_dict()
    return {key: merged[key].detach().to("cpu", reference[key].dtype).contiguous() for key in reference}
