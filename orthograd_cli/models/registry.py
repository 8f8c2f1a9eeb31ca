"""Architectures: which torchvision or torchaudio builder a checkpoint belongs to, and a strict load into it.

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


TORCHAUDIO_CTC_BUILDERS = [
    "wav2vec2_model", "wav2vec2_base", "wav2vec2_large", "wav2vec2_large_lv60k", "wav2vec2_xlsr_300m",
    "wav2vec2_xlsr_1b", "wav2vec2_xlsr_2b", "hubert_base", "hubert_large", "hubert_xlarge",
]


@dataclass
class ModelInfo:
    """What it takes to rebuild a checkpoint's model: the builder, its arguments and the task's outputs."""

    arch: str
    num_classes: int  # classification: classes; asr: vocabulary size (the CTC head's outputs)
    labels: list[str] | None = None
    task: str = "classification"
    config: dict | None = None  # builder keyword arguments (torchaudio size parameters)
    vocab: list[str] | None = None  # asr: CTC tokens, blank first
    sample_rate: int | None = None  # asr: the rate the model was trained at

    @property
    def source(self) -> str:
        """Which library builds it. A third source (Hugging Face model folders such as Whisper: a
        config.json beside the weights) slots in here and in `build_model`; the tasks stay as they are."""
        return "torchaudio" if self.arch in TORCHAUDIO_CTC_BUILDERS else "torchvision"

    def metadata(self) -> dict[str, str]:
        meta = {
            META_PREFIX + "arch": self.arch,
            META_PREFIX + "task": self.task,
            META_PREFIX + "num_classes": str(self.num_classes),
        }
        if self.labels:
            meta[META_PREFIX + "labels"] = json.dumps(self.labels)
        if self.config:
            meta[META_PREFIX + "arch_config"] = json.dumps(self.config, sort_keys=True)
        if self.vocab:
            meta[META_PREFIX + "vocab"] = json.dumps(self.vocab)
        if self.sample_rate:
            meta[META_PREFIX + "sample_rate"] = str(self.sample_rate)
        return meta


def classifier_weight_key(state_dict: dict) -> str | None:
    """The last 2-D floating weight in the state dict: the classifier head in torchvision models."""
    keys = [k for k, t in state_dict.items() if k.endswith("weight") and t.dim() == 2 and t.is_floating_point()]
    return keys[-1] if keys else None


def resolve_model_info(checkpoint: Checkpoint, arch: str | None = None, num_classes: int | None = None,
                       labels: list[str] | None = None, task: str | None = None, config: dict | None = None,
                       vocab: list[str] | None = None, sample_rate: int | None = None) -> ModelInfo:
    """Explicit arguments (command line, recipe) over the checkpoint's metadata, then inference."""
    arch = arch or checkpoint.meta("arch")
    if not arch:
        guess = guess_arch(checkpoint.state_dict)
        hint = f"it looks like '{guess}': pass --arch {guess}" if guess else "pass --arch or set model.arch in the recipe"
        raise CheckpointError(f"{checkpoint.path}: no architecture given and no 'orthograd.arch' metadata", hint)
    if arch.startswith("hf:"):
        raise CheckpointError(f"'{arch}': Hugging Face model folders are not supported yet",
                              "convert the model to a torchvision/torchaudio checkpoint")
    task = task or checkpoint.meta("task") or ("asr" if arch in TORCHAUDIO_CTC_BUILDERS else "classification")
    config = config or checkpoint.meta_json("arch_config")
    if task == "asr":
        return _speech_info(checkpoint, arch, config, vocab, sample_rate)
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
    return ModelInfo(arch=arch, num_classes=num_classes, labels=labels, task=task, config=config)


def _speech_info(checkpoint: Checkpoint, arch: str, config: dict | None, vocab: list[str] | None,
                 sample_rate: int | None) -> ModelInfo:
    vocab = vocab or checkpoint.meta_json("vocab")
    if not vocab:
        raise CheckpointError(f"{checkpoint.path}: a speech model needs its vocabulary, and there is no "
                              "'orthograd.vocab' metadata", "set model.vocab in the recipe (CTC blank first)")
    if len(set(vocab)) != len(vocab):
        raise CheckpointError(f"{checkpoint.path}: the vocabulary repeats a token", "every token once, blank first")
    rate = sample_rate or int(checkpoint.meta("sample_rate") or 16_000)
    return ModelInfo(arch=arch, num_classes=len(vocab), task="asr", config=config, vocab=list(vocab), sample_rate=rate)


def build_model(info: ModelInfo):
    if info.source == "torchaudio":
        return _build_torchaudio(info)
    import torchvision

    known = torchvision.models.list_models()
    if info.arch not in known:
        raise CheckpointError(f"unknown architecture '{info.arch}'",
                              did_you_mean(info.arch, known + TORCHAUDIO_CTC_BUILDERS)
                              or "any name torchvision.models.list_models() gives, or a torchaudio CTC builder")
    return torchvision.models.get_model(info.arch, weights=None, num_classes=info.num_classes, **(info.config or {}))


def _build_torchaudio(info: ModelInfo):
    """A torchaudio wav2vec2-family model whose CTC head (`aux`) has one output per vocabulary token."""
    import torchaudio

    if info.task != "asr":
        raise CheckpointError(f"'{info.arch}' is a speech model, but the task is '{info.task}'", "set task: asr")
    builder = getattr(torchaudio.models, info.arch)
    try:
        return builder(**(info.config or {}), aux_num_out=info.num_classes)
    except TypeError as exc:
        raise CheckpointError(f"'{info.arch}' cannot be built from its arguments ({exc})",
                              "set model.config to the builder's size parameters (orthograd.arch_config)") from None


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
        expected = build_model(info).state_dict()
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
                f"{'a vocabulary of' if info.task == 'asr' else 'num_classes='}{info.num_classes} expects "
                f"{tuple(tensor.shape)}", "set model.vocab to the checkpoint's tokens" if info.task == "asr" else
                "set model.num_classes to match the checkpoint, or pass the right --arch")


def load_model(checkpoint: Checkpoint, info: ModelInfo):
    """Build the architecture and load the checkpoint strictly; mismatches become CheckpointError."""
    check_fits(checkpoint, info)
    model = build_model(info)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in checkpoint.state_dict.items()})
    return model.float()
