"""From paths on the command line to a model and decoded sets, validating everything first."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from orthograd_cli.data.streaming import SampleCache
from orthograd_cli.models.checkpoint import Checkpoint, read_checkpoint
from orthograd_cli.models.registry import ModelInfo, check_fits, load_model, resolve_model_info
from orthograd_cli.recipe import Recipe, with_checkpoint_preprocessing


@dataclass
class Loaded:
    checkpoint: Checkpoint
    info: ModelInfo
    sets: dict  # name -> the task's data set
    manifests: dict  # name -> Manifest
    recipe: Recipe  # as given, with the checkpoint's recorded preprocessing for the data keys it leaves unset
    notes: list = field(default_factory=list)  # how the sets were derived, for the report
    data_sha256: dict = field(default_factory=dict)  # manifest name -> content hash of the files it lists, as given
    data_samples: dict = field(default_factory=dict)  # manifest name -> its rows, as given

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
        return [sample.path for manifest in self.manifests.values() for sample in manifest.samples
                if sample.path is not None]


def load_checkpoint_and_info(model_path: str | Path, recipe: Recipe, arch: str | None = None, weights: bool = True):
    """The checkpoint and its ModelInfo, its keys and shapes checked against the architecture (once);
    `weights=False`: from its header alone (read_checkpoint)."""
    checkpoint = read_checkpoint(model_path, weights)
    info = resolve_model_info(checkpoint, arch, recipe.model, recipe.task)
    check_fits(checkpoint, info)
    return checkpoint, info


def load_everything(model_path: str | Path, recipe: Recipe, manifest_paths: dict[str, str | Path | None],
                    arch: str | None = None, recorded_mode: bool = False, weights: bool = True) -> Loaded:
    """Checkpoint, then every manifest validated, then the data sets; the model is built on demand.
    `recorded_mode`: a recipe that leaves eval.mode unset takes the mode a forget run recorded in the
    checkpoint (orthograd.mode), so evaluating an output measures it as its run did. `weights=False`
    (`--dry-run`): the checkpoint's header only, and no hash of the data files."""
    from orthograd_cli.data.manifest import check_disjoint, content_sha256, read_manifest
    from orthograd_cli.tasks import get_task

    checkpoint, info = load_checkpoint_and_info(model_path, recipe, arch, weights)
    recipe = with_checkpoint_preprocessing(recipe, checkpoint.meta_json("data"))
    if recorded_mode:
        recipe = with_recorded_mode(recipe, checkpoint)
    task = get_task(info.task)
    manifests = {name: read_manifest(path, task, info) for name, path in manifest_paths.items() if path is not None}
    if "forget" in manifests:  # a forgotten sample can be neither kept nor scored as unseen
        for role in ("retain", "test", "forget_test"):
            if role in manifests:
                check_disjoint(manifests["forget"], manifests[role], role)
    data_sha256 = {name: content_sha256(manifest) for name, manifest in manifests.items()} if weights else {}
    data_samples = {name: len(manifest) for name, manifest in manifests.items()}
    notes = split_test_by_forgotten_classes(manifests, task) if recipe.eval.mode == "class" else []
    cache = SampleCache(int(recipe.data.cache_gb * 2**30))  # one budget for the run, filled by the sets read first
    sets = {name: task.load_set(name, manifest, recipe, info, cache) for name, manifest in manifests.items()}
    return Loaded(checkpoint=checkpoint, info=info, sets=sets, manifests=manifests, recipe=recipe, notes=notes,
                  data_sha256=data_sha256, data_samples=data_samples)


def with_recorded_mode(recipe: Recipe, checkpoint: Checkpoint) -> Recipe:
    recorded = checkpoint.meta("mode")
    if recorded not in ("sample", "class") or "mode" in recipe.eval.model_fields_set:
        return recipe
    spec = recipe.eval.model_copy(update={"mode": recorded})
    return recipe.model_copy(update={"eval": spec})


def split_test_by_forgotten_classes(manifests: dict, task) -> list[str]:
    """Class-wise unlearning knows the forgotten classes from the forget manifest. A test manifest that
    still holds them is split in place: `test` keeps the other classes (U_t, what must be kept) and the
    forgotten classes' test samples become `forget_test` (they should be forgotten like the forget set),
    unless a forget_test manifest was given. Returns what was done, for the report."""
    if "forget" not in manifests or "test" not in manifests or task.class_of(manifests["forget"].samples[0]) is None:
        return []
    forgotten = {task.class_of(s) for s in manifests["forget"].samples}
    test = manifests["test"]
    others = test.where(lambda s: task.class_of(s) not in forgotten)
    theirs = test.where(lambda s: task.class_of(s) in forgotten)
    if not theirs.samples:
        return []
    if not others.samples:
        from orthograd_cli.errors import ManifestError

        raise ManifestError(f"{test.path}: every test sample is of a forgotten class, so nothing measures what is "
                            "kept", "give test samples of the other classes")
    manifests["test"] = others
    classes = ", ".join(str(c) for c in sorted(forgotten))
    note = (f"class-wise: {test.path} split by the forgotten class(es) {classes}: test = its {len(others)} samples "
            f"of the other classes")
    if "forget_test" in manifests:
        return [note + f"; its {len(theirs)} samples of the forgotten classes are left out (forget_test was given)"]
    manifests["forget_test"] = theirs
    return [note + f", forget_test = its {len(theirs)} samples of the forgotten classes"]


def load_set(manifest_path: str | Path, info: ModelInfo, recipe: Recipe, name: str = "set"):
    """One manifest, validated against the model, as the task's data set (cached within data.cache_gb), with
    the recipe's preprocessing as given."""
    from orthograd_cli.data.manifest import read_manifest
    from orthograd_cli.tasks import get_task

    task = get_task(info.task)
    cache = SampleCache(int(recipe.data.cache_gb * 2**30))
    return task.load_set(name, read_manifest(manifest_path, task, info), recipe, info, cache)
