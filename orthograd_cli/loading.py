"""From paths on the command line to a model and decoded sets, validating everything first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orthograd_cli.models.checkpoint import Checkpoint, read_checkpoint
from orthograd_cli.models.registry import ModelInfo, check_fits, load_model, resolve_model_info
from orthograd_cli.recipe import Recipe


def pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        from orthograd_cli.errors import UsageError

        raise UsageError("device: cuda was asked for, but no CUDA device is available", "use --set device=auto")
    return requested


@dataclass
class Loaded:
    checkpoint: Checkpoint
    info: ModelInfo
    sets: dict  # name -> ImageSet or AudioSet
    manifests: dict  # name -> Manifest

    @property
    def task(self):
        from orthograd_cli.tasks import get_task

        return get_task(self.info.task)

    def build_model(self, device: str = "cpu"):
        return load_model(self.checkpoint, self.info).to(device).eval()


def load_checkpoint_and_info(model_path: str | Path, recipe: Recipe, arch: str | None = None):
    checkpoint = read_checkpoint(model_path)
    spec = recipe.model
    info = resolve_model_info(checkpoint, arch or spec.arch, spec.num_classes, spec.labels, recipe.task, spec.config,
                              spec.vocab, spec.sample_rate)
    check_fits(checkpoint, info)
    return checkpoint, info


def load_everything(model_path: str | Path, recipe: Recipe, manifest_paths: dict[str, str | Path | None],
                    arch: str | None = None) -> Loaded:
    """Checkpoint, then every manifest validated, then images or audio decoded; the model is built on demand."""
    from orthograd_cli.data.manifest import check_disjoint, read_manifest
    from orthograd_cli.tasks import get_task

    checkpoint, info = load_checkpoint_and_info(model_path, recipe, arch)
    manifests = {name: read_manifest(path, task=info.task, num_classes=info.num_classes, labels=info.labels,
                                     vocab=info.vocab)
                 for name, path in manifest_paths.items() if path is not None}
    if "forget" in manifests and "retain" in manifests:
        check_disjoint(manifests["forget"], manifests["retain"])
    task = get_task(info.task)
    sets = {name: task.load_set(name, manifest, recipe, info) for name, manifest in manifests.items()}
    return Loaded(checkpoint=checkpoint, info=info, sets=sets, manifests=manifests)
