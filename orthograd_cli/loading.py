"""From paths on the command line to a model and decoded sets, validating everything first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orthograd_cli.models.checkpoint import Checkpoint, read_checkpoint
from orthograd_cli.models.registry import ModelInfo, check_fits, load_model, resolve_model_info
from orthograd_cli.recipe import Recipe


@dataclass
class Loaded:
    checkpoint: Checkpoint
    info: ModelInfo
    sets: dict  # name -> the task's data set
    manifests: dict  # name -> Manifest

    @property
    def task(self):
        from orthograd_cli.tasks import get_task

        return get_task(self.info.task)

    def build_model(self, device: str = "cpu"):
        return load_model(self.checkpoint, self.info).to(device).eval()

    @property
    def input_paths(self) -> list[Path]:
        """The checkpoint and the manifests, as given (outputs must stay clear of them)."""
        return [self.checkpoint.path, *(m.path for m in self.manifests.values())]

    @property
    def sample_paths(self) -> list[Path]:
        """Every file the manifests list, resolved."""
        return [sample.path for manifest in self.manifests.values() for sample in manifest.samples]


def load_checkpoint_and_info(model_path: str | Path, recipe: Recipe, arch: str | None = None):
    """The checkpoint and its ModelInfo, its keys and shapes checked against the architecture (once)."""
    checkpoint = read_checkpoint(model_path)
    info = resolve_model_info(checkpoint, arch, recipe.model, recipe.task)
    check_fits(checkpoint, info)
    return checkpoint, info


def load_everything(model_path: str | Path, recipe: Recipe, manifest_paths: dict[str, str | Path | None],
                    arch: str | None = None) -> Loaded:
    """Checkpoint, then every manifest validated, then the data sets; the model is built on demand."""
    from orthograd_cli.data.manifest import check_disjoint, read_manifest
    from orthograd_cli.tasks import get_task

    checkpoint, info = load_checkpoint_and_info(model_path, recipe, arch)
    task = get_task(info.task)
    manifests = {name: read_manifest(path, task, info) for name, path in manifest_paths.items() if path is not None}
    if "forget" in manifests:  # a forgotten sample can be neither kept nor scored as unseen
        for role in ("retain", "test", "forget_test"):
            if role in manifests:
                check_disjoint(manifests["forget"], manifests[role], role)
    sets = {name: task.load_set(name, manifest, recipe, info) for name, manifest in manifests.items()}
    return Loaded(checkpoint=checkpoint, info=info, sets=sets, manifests=manifests)


def load_set(manifest_path: str | Path, info: ModelInfo, recipe: Recipe, name: str = "set"):
    """One manifest, validated against the model, as the task's data set."""
    from orthograd_cli.data.manifest import read_manifest
    from orthograd_cli.tasks import get_task

    task = get_task(info.task)
    return task.load_set(name, read_manifest(manifest_path, task, info), recipe, info)
