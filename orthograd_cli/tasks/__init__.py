"""Tasks: what a model predicts, its loss, and how a set is scored.

Each task module offers the same functions, so the jobs and the unlearning loop stay task-agnostic:
`mean_loss(outputs, targets)`, `per_sample_losses(outputs, targets)`, `load_set(name, manifest,
recipe, info)` and `score(model, dataset, batch_size, device) -> SetResult`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

TASKS = ("classification", "asr")


@dataclass
class SetResult:
    n: int
    accuracy: float  # classification: top-1; asr: word accuracy max(0, 1 − WER)
    losses: "torch.Tensor"  # noqa: F821  per-sample losses (the MIA's feature)
    wer: float | None = None  # asr only


def get_task(name: str):
    if name not in TASKS:
        from orthograd_cli.errors import RecipeError

        raise RecipeError(f"unknown task '{name}'", f"choose from {', '.join(TASKS)}")
    return import_module(f"orthograd_cli.tasks.{name}")
