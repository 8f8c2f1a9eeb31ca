"""Architectures: which model source builds a checkpoint (models/sources/), what its task needs
(classes, vocabulary), and a strict load into it.

Explicit beats metadata: `--arch` over the recipe's `model.arch` over the file's `orthograd.arch`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from orthograd_cli.errors import CheckpointError, did_you_mean
from orthograd_cli.models.checkpoint import META_PREFIX, Checkpoint
from orthograd_cli.models.sources import all_sources, source_for


@dataclass
class ModelInfo:
    """What it takes to rebuild a checkpoint's model: the builder, its arguments and the task's outputs."""

    arch: str
    num_classes: int  # classification: classes; asr: vocabulary size (the CTC head's outputs)
    labels: list[str] | None = None
    task: str = "classification"
    config: dict | None = None  # builder keyword arguments (torchaudio size parameters); a folder's config.json
    vocab: list[str] | None = None  # asr: CTC tokens, blank first
    sample_rate: int | None = None  # asr: the rate the model was trained at
    folder: str | None = None  # a Hugging Face model folder whose processor files the task reads (Whisper)
    processor: dict | None = None  # what the task takes from those files (Whisper: features, prompt, end token)

    @property
    def source(self):
        return source_of(self.arch)

    def metadata(self) -> dict[str, str]:
        meta = {
            META_PREFIX + "arch": self.arch,
            META_PREFIX + "task": self.task,
            META_PREFIX + "num_classes": str(self.num_classes),
        }
        if self.labels:
            meta[META_PREFIX + "labels"] = json.dumps(self.labels)
        if self.config and not self.source.reads_config_from_folder:
            meta[META_PREFIX + "arch_config"] = json.dumps(self.config, sort_keys=True)
        if self.vocab:
            meta[META_PREFIX + "vocab"] = json.dumps(self.vocab)
        if self.sample_rate:
            meta[META_PREFIX + "sample_rate"] = str(self.sample_rate)
        return meta


def source_of(arch: str):
    """The model source that builds `arch`; an unknown name is a CheckpointError with a did-you-mean."""
    source = source_for(arch)
    if source is None:
        known = [name for s in all_sources() for name in s.architectures()]
        raise CheckpointError(f"unknown architecture '{arch}'", did_you_mean(arch, known) or
                              "any name torchvision.models.list_models() gives, a torchaudio CTC builder, or a "
                              "Hugging Face model folder")
    return source


def classifier_weight_key(state_dict: dict) -> str | None:
    """The last 2-D floating weight in the state dict: the classifier head in torchvision models."""
    keys = [k for k, t in state_dict.items() if k.endswith("weight") and t.dim() == 2 and t.is_floating_point()]
    return keys[-1] if keys else None


def resolve_model_info(checkpoint: Checkpoint, arch: str | None = None, spec=None, task: str | None = None
                       ) -> ModelInfo:
    """Explicit arguments (command line, the recipe's `model` section `spec`) over the checkpoint's
    metadata, then inference from the weights; the task fills in what it needs."""
    from orthograd_cli.recipe import ModelSpec
    from orthograd_cli.tasks import get_task

    spec = spec or ModelSpec()
    arch = arch or spec.arch or checkpoint.meta("arch")
    if not arch:
        guess = guess_arch(checkpoint.state_dict)
        hint = f"it looks like '{guess}': set the architecture to {guess} (model.arch)" if guess else \
            "set the architecture (model.arch)"
        raise CheckpointError(f"{checkpoint.path}: no architecture given and no 'orthograd.arch' metadata", hint)
    source = source_of(arch)
    tasks = source.tasks_of(arch)
    task = task or checkpoint.meta("task") or tasks[0]
    if task not in tasks:
        raise CheckpointError(f"'{arch}' is a {source.name} model for {', '.join(tasks)}, but the task is "
                              f"'{task}'", f"set task: {tasks[0]}")
    config = spec.config or checkpoint.config or checkpoint.meta_json("arch_config")
    return get_task(task).complete_info(checkpoint, arch, spec, config)


def build_model(info: ModelInfo):
    return info.source.build(info)


def guess_arch(state_dict: dict) -> str | None:
    """Name the common architecture whose parameter names match the checkpoint's exactly."""
    return next((guess for source in all_sources() if (guess := source.guess_arch(state_dict))), None)


def check_fits(checkpoint: Checkpoint, info: ModelInfo) -> None:
    """Keys and shapes of the checkpoint against the architecture, built on the meta device (no memory)."""
    import torch

    from orthograd_cli.tasks import get_task

    with torch.device("meta"):
        model = build_model(info)
    names = info.source.checkpoint_keys(model, set(checkpoint.state_dict))
    expected = {names[key]: tensor for key, tensor in model.state_dict().items() if key in names}
    missing = [k for k in expected if k not in checkpoint.state_dict]
    unexpected = [k for k in checkpoint.state_dict if k not in expected]
    if missing or unexpected:
        guess = guess_arch(checkpoint.state_dict)
        hint = f"it looks like '{guess}': set the architecture to {guess} (model.arch)" if guess and \
            guess != info.arch else "check that the checkpoint and the architecture (model.arch) match"
        raise CheckpointError(
            f"{checkpoint.path}: keys do not fit '{info.arch}' ({len(missing)} missing, e.g. "
            f"{missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]})", hint)
    for key, tensor in expected.items():
        got = checkpoint.state_dict[key]
        if tuple(got.shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{checkpoint.path}: '{key}' has shape {tuple(got.shape)}, '{info.arch}' with {info.num_classes} "
                f"outputs expects {tuple(tensor.shape)}", get_task(info.task).shape_hint(info))


def load_model(checkpoint: Checkpoint, info: ModelInfo):
    """Build the architecture and load the (already checked) checkpoint strictly."""
    model = build_model(info)
    names = info.source.checkpoint_keys(model, set(checkpoint.state_dict))
    stored = {key: checkpoint.state_dict[names[key]] for key in names}
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in stored.items()})
    return model.float()


def checkpoint_state(model, info: ModelInfo, reference: dict) -> dict:
    """The module's weights under the checkpoint's names, with the checkpoint's keys, order and dtypes."""
    state = model.state_dict()
    by_file_name = {file_key: state[key] for key, file_key in info.source.checkpoint_keys(model, set(reference)).items()}
    return {key: by_file_name[key].detach().to("cpu", tensor.dtype).contiguous() for key, tensor in reference.items()}
