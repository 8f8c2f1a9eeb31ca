"""Architectures: which torchvision builder a checkpoint belongs to, and a strict load into it.

Explicit beats metadata: `--arch` over the recipe's `model.arch` over the file's `orthograd.arch`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from orthograd_cli.errors import CheckpointError, did_you_mean
from orthograd_cli.models.checkpoint import META_PREFIX, Checkpoint

# Builders tried, on the meta device, to name the likely architecture of a mismatched checkpoint.
COMMON_ARCHS = [
    "resnet18", "resnet34", "resnet50", "resnet101", "wide_resnet50_2", "vit_b_16", "vit_b_32",
    "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny",
    "densenet121", "vgg11", "vgg16", "squeezenet1_0", "regnet_y_400mf", "shufflenet_v2_x1_0",
]


@dataclass
class ModelInfo:
    arch: str
    num_classes: int
    labels: list[str] | None
    task: str = "classification"

    def metadata(self) -> dict[str, str]:
        meta = {
            META_PREFIX + "arch": self.arch,
            META_PREFIX + "task": self.task,
            META_PREFIX + "num_classes": str(self.num_classes),
        }
        if self.labels:
            meta[META_PREFIX + "labels"] = json.dumps(self.labels)
        return meta


def classifier_weight_key(state_dict: dict) -> str | None:
    """The last 2-D floating weight in the state dict: the classifier head in torchvision models."""
    keys = [k for k, t in state_dict.items() if k.endswith("weight") and t.dim() == 2 and t.is_floating_point()]
    return keys[-1] if keys else None


def resolve_model_info(checkpoint: Checkpoint, arch: str | None = None, num_classes: int | None = None,
                       labels: list[str] | None = None) -> ModelInfo:
    arch = arch or checkpoint.meta("arch")
    if not arch:
        guess = guess_arch(checkpoint.state_dict)
        hint = f"it looks like '{guess}': pass --arch {guess}" if guess else "pass --arch or set model.arch in the recipe"
        raise CheckpointError(f"{checkpoint.path}: no architecture given and no 'orthograd.arch' metadata", hint)
    labels = labels or checkpoint.meta_json("labels")
    if num_classes is None and checkpoint.meta("num_classes"):
        num_classes = int(checkpoint.meta("num_classes"))
    if num_classes is None:
        key = classifier_weight_key(checkpoint.state_dict)
        if key is None:
            raise CheckpointError(f"{checkpoint.path}: cannot infer num_classes", "set model.num_classes")
        num_classes = int(checkpoint.state_dict[key].shape[0])
    if labels is not None and len(labels) != num_classes:
        raise CheckpointError(f"{checkpoint.path}: {len(labels)} labels given for {num_classes} classes",
                              "model.labels needs one name per class")
    return ModelInfo(arch=arch, num_classes=num_classes, labels=labels,
                     task=checkpoint.meta("task") or "classification")


def build_model(arch: str, num_classes: int):
    import torchvision

    known = torchvision.models.list_models()
    if arch not in known:
        raise CheckpointError(f"unknown architecture '{arch}'",
                              did_you_mean(arch, known) or "any name torchvision.models.list_models() gives")
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


def guess_arch(state_dict: dict) -> str | None:
    """Name the common architecture whose parameter names match the checkpoint's exactly."""
    import torch
    import torchvision

    keys = set(state_dict)
    for name in COMMON_ARCHS:
        with torch.device("meta"):
            model = torchvision.models.get_model(name, weights=None)
        if set(model.state_dict()) == keys:
            return name
    return None


def check_fits(checkpoint: Checkpoint, info: ModelInfo) -> None:
    """Keys and shapes of the checkpoint against the architecture, built on the meta device (no memory)."""
    import torch

    with torch.device("meta"):
        expected = build_model(info.arch, info.num_classes).state_dict()
    missing = [k for k in expected if k not in checkpoint.state_dict]
    unexpected = [k for k in checkpoint.state_dict if k not in expected]
    if missing or unexpected:
        guess = guess_arch(checkpoint.state_dict)
        hint = f"it looks like '{guess}': pass --arch {guess}" if guess and guess != info.arch else \
            "check that the checkpoint and --arch/model.arch match"
        raise CheckpointError(
            f"{checkpoint.path}: keys do not fit '{info.arch}' ({len(missing)} missing, e.g. "
            f"{missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]})", hint)
    for key, tensor in expected.items():
        got = checkpoint.state_dict[key]
        if tuple(got.shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{checkpoint.path}: '{key}' has shape {tuple(got.shape)}, '{info.arch}' with "
                f"num_classes={info.num_classes} expects {tuple(tensor.shape)}",
                "set model.num_classes to match the checkpoint, or pass the right --arch")


def load_model(checkpoint: Checkpoint, info: ModelInfo):
    """Build the architecture and load the checkpoint strictly; mismatches become CheckpointError."""
    check_fits(checkpoint, info)
    model = build_model(info.arch, info.num_classes)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in checkpoint.state_dict.items()})
    return model.float()
