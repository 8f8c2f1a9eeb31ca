"""Where and how a run computes: device, precision, seed and (for multi-process runs) rank and world size.

One object, made once from the recipe at the top of a job and handed down, instead of device strings
and flags threaded through every call.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from orthograd_cli.errors import UsageError


def pick_device(requested: str) -> str:
    """`auto`: CUDA when present, else the CPU; `cuda` without a CUDA device is an error."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError("device: cuda was asked for, but no CUDA device is available", "set device: auto")
    return requested


@dataclass(frozen=True)
class Runtime:
    device: str = "cpu"
    precision: str = "float32"  # float32 | bf16 (the unlearning passes under autocast)
    seed: int = 0
    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_recipe(cls, recipe, rank: int = 0, world_size: int = 1) -> "Runtime":
        return cls(device=pick_device(recipe.device), precision=recipe.precision, seed=recipe.seed, rank=rank,
                   world_size=world_size)

    @property
    def is_main(self) -> bool:
        """The process that writes outputs and draws progress (rank 0)."""
        return self.rank == 0

    def unlearning_passes(self) -> contextlib.AbstractContextManager:
        """The block in which the unlearning forward/backward passes run in the recipe's precision."""
        from orthograd_cli.gradients.batching import pass_precision

        return pass_precision(self.precision, self.device)
