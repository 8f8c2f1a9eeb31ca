"""The contract a task fulfils: everything that differs between image classification and speech
recognition lives behind it, so the loop, the gradients, the metrics and the jobs never ask which
task they run.

A task owns its manifest columns and row parsing, its data set class and batching, its loss and
per-sample loss, how a set is scored (accuracy and the task's own metrics, e.g. WER), what it
needs from the checkpoint's metadata (classes, vocabulary) and which per-sample backends it
supports. A new task is a package under `tasks/` with a `TASK` object and one line in
`tasks/__init__.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SetResult:
    n: int
    accuracy: float  # the task's accuracy (speech: word accuracy max(0, 1 − WER))
    losses: "torch.Tensor"  # noqa: F821  per-sample losses (the MIA's feature)
    extra: dict[str, float] = field(default_factory=dict)  # the task's other metrics, e.g. {"wer": 0.12}
    weight: float | None = None  # what its metrics average over when parts are combined (None: n; speech: words)
    attacks: dict = field(default_factory=dict)  # membership attack -> per-sample statistic (lower: member)


def attack_metric(name: str) -> str:
    """The report metric of a task's membership attack (`zlib` -> `mia_zlib_auc`)."""
    return f"mia_{name}_auc"


@dataclass(frozen=True)
class ExtraMetric:
    definition: str  # "word error rate"
    higher_is_better: bool


class Task:
    name: str = ""
    columns: tuple[str, ...] = ()  # required manifest columns (an `id` column is always allowed)
    accuracy_name: str = "accuracy"  # what `*_acc` means in reports
    max_test_drop: float = 0.02  # test_kept's default: how far `test_acc` may fall below the original's
    extra_metrics: dict[str, ExtraMetric] = {}  # keys of SetResult.extra, e.g. {"wer": ...}
    # membership attacks beyond the loss-based ones every task has: name -> what a sample's statistic is (keys of
    # SetResult.attacks; reported as mia_<name>_auc, forget set against its unseen counterpart)
    attacks: dict[str, str] = {}
    plot_metric: tuple[str, str] = ("acc", "accuracy")  # (report key suffix, axis label) for trade-off plots
    unsupported_backends: dict[str, tuple[str, str]] = {}  # per-sample backend -> (why, hint)

    # --- manifests and data ---------------------------------------------------------------------
    reads_files: bool = True  # rows name a file in `path` (images, audio); False: the row is the sample (text)

    def check_columns(self, columns: list[str], path) -> None:
        """Refuse a manifest header that lacks a required column or has one the task does not read."""
        from orthograd_cli.data.manifest import OPTIONAL
        from orthograd_cli.errors import ManifestError, did_you_mean

        missing = [c for c in self.columns if c not in columns]
        if missing:
            raise ManifestError(f"{path}: missing column '{missing[0]}' (header: {','.join(columns)})",
                                f"a {self.name} manifest needs the columns {','.join(self.columns)} (+ optional id)")
        extra = [c for c in columns if c not in self.columns and c not in OPTIONAL]
        if extra:
            allowed = self.columns + OPTIONAL
            raise ManifestError(f"{path}: unexpected column '{extra[0]}'",
                                did_you_mean(extra[0], allowed) or f"allowed: {','.join(allowed)}")

    def default_id(self, target) -> str:
        """A row's id when the manifest gives none and the task reads no files (those use the path)."""
        raise NotImplementedError

    def parse_row(self, values: dict[str, str], where: str, info) -> tuple[Any, str]:
        """(target, group) of one manifest row; raises ManifestError naming `where` (file and row)."""
        raise NotImplementedError

    def load_set(self, name: str, manifest, recipe, info, cache=None):
        """The data set of a validated manifest, nothing decoded yet (a data.streaming.StreamedSet with the
        task's decoder): `len()`, `.manifest`, `.batch(index, device)`, `.batches(size, device)`,
        `.subset(index)`. `cache`: the SampleCache it may keep decoded samples in."""
        raise NotImplementedError

    # --- the model ------------------------------------------------------------------------------
    def complete_info(self, checkpoint, arch: str, spec, config: dict | None):
        """The ModelInfo of a checkpoint of this task: what the recipe's `model` section gives, else the
        checkpoint's metadata, else inference from its weights."""
        raise NotImplementedError

    def class_of(self, sample):
        """The class a sample belongs to, for class-wise unlearning; None where the task has no classes."""
        return None

    def folder_metadata(self, folder, config: dict, processor: dict | None) -> dict[str, str]:
        """What a Hugging Face model folder of this task says beyond its weights (its processor, tokenizer and
        config settings), as `orthograd.*` metadata values; models/hf_folder.py asks for it."""
        from orthograd_cli.errors import CheckpointError

        raise CheckpointError(f"{folder}: the {self.name} task reads no Hugging Face model folders")

    def shape_hint(self, info) -> str:
        """How to fix a head whose shape does not fit the checkpoint."""
        return "check that the checkpoint and the architecture (model.arch) match"

    # --- losses and scores ----------------------------------------------------------------------
    def mean_loss(self, outputs, targets, label_weight=None, sample_weight=None):
        """The batch's loss, the mean of its per-sample losses. `sample_weight(sample_losses) -> weights` scales
        each sample's loss, `label_weight(label_losses) -> weights` each label's loss before a sample's mean; both
        are called without gradient (SimNPO's forget loss and its per-token variant, methods/orthograd.py)."""
        if sample_weight is not None:
            losses = self.per_sample_losses(outputs, targets)
            return (sample_weight(losses.detach()) * losses).mean()
        if label_weight is None:
            return self.per_sample_losses(outputs, targets).mean()
        losses, counted = self.label_losses(outputs, targets)
        counted = counted.to(losses.dtype)
        weighted = label_weight(losses.detach()) * losses * counted
        return (weighted.sum(1) / counted.sum(1).clamp(min=1)).mean()

    def per_sample_losses(self, outputs, targets):
        raise NotImplementedError

    def distill_kl(self, student, teacher, targets, temperature: float = 1.0):
        """SCRUB's KL(teacher ‖ student) of the batch, over what the task predicts: here the output distribution
        of each sample (classes); a sequence task averages each counted position's token distribution."""
        from orthograd_cli.methods.scrub import distill_kl

        return distill_kl(student, teacher, temperature)

    def label_losses(self, outputs, targets):
        """(losses, counted), both (B, L): the loss of each label a sample predicts and which of the L positions
        hold one; a sample's loss is the mean over its counted labels. A class, or a CTC transcript (whose loss
        sums over alignments, not tokens), is one label; a sequence-to-sequence transcript has one per token."""
        import torch

        losses = self.per_sample_losses(outputs, targets)[:, None]
        return losses, torch.ones_like(losses, dtype=torch.bool)

    def score(self, model, dataset, batch_size: int, device: str) -> SetResult:
        raise NotImplementedError

    def accuracy_unit(self, dataset) -> float:
        """The smallest change `score`'s accuracy on `dataset` can show: one sample (speech: one word)."""
        return 1 / max(len(dataset), 1)

    def combine(self, parts: list[SetResult]) -> SetResult:
        """The result of a whole set from the results of its consecutive parts (evaluation sharded over
        processes): metrics averaged with each part's weight, per-sample losses in order."""
        import torch

        weights = [part.n if part.weight is None else part.weight for part in parts]
        total = sum(weights) or 1

        def mean(values):
            return sum(w * v for w, v in zip(weights, values)) / total

        return SetResult(n=sum(part.n for part in parts), accuracy=mean([part.accuracy for part in parts]),
                         losses=torch.cat([part.losses for part in parts]),
                         extra={key: mean([part.extra[key] for part in parts]) for key in parts[0].extra},
                         weight=sum(weights),
                         attacks={key: torch.cat([part.attacks[key] for part in parts]) for key in parts[0].attacks})

    # where a model at chance usually comes from, for the sanity check's error (metrics/sanity.py)
    chance_hint: str = "check the preprocessing, the labels and that this is the trained checkpoint"

    def at_chance(self, result: SetResult, info) -> str | None:
        """Why `result` is no better than guessing (e.g. "top-1 accuracy 0.11, chance 0.10"), else None."""
        return None

    # --- what it can run ------------------------------------------------------------------------
    def check_recipe(self, recipe) -> None:
        """Refuse, before any work, settings this task cannot run."""
        from orthograd_cli.errors import RecipeError

        backend = recipe.method.per_sample.backend
        if backend in self.unsupported_backends:
            why, hint = self.unsupported_backends[backend]
            raise RecipeError(f"method.per_sample.backend: {backend} cannot run the {self.name} task ({why})", hint)
