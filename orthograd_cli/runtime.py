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
    deterministic: bool = True
    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_recipe(cls, recipe, rank: int = 0, world_size: int = 1) -> "Runtime":
        device = pick_device(recipe.device)
        if recipe.deterministic and device == "cuda":
            import os

            # cuBLAS reads this at its first call, before any unlearning step (PyTorch's reproducibility notes)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        return cls(device=device, precision=recipe.precision, seed=recipe.seed,
                   deterministic=recipe.deterministic, rank=rank, world_size=world_size)

    @property
    def is_main(self) -> bool:
        """The process that writes outputs and draws progress (rank 0)."""
        return self.rank == 0

    def reproducible(self) -> "Reproducibility":
        """The block in which a run computes: deterministic kernels when the recipe asks for them."""
        return Reproducibility(self.deterministic)

    def unlearning_passes(self) -> contextlib.AbstractContextManager:
        """The block in which the unlearning forward/backward passes run in the recipe's precision."""
        from orthograd_cli.gradients.batching import pass_precision

        return pass_precision(self.precision, self.device)


class Reproducibility:
    """torch.use_deterministic_algorithms for a block (warn-only: a kernel without a deterministic version
    still runs, and is noticed), restored after. `.deterministic` afterwards: the flag was on and no such
    kernel ran. (CUBLAS_WORKSPACE_CONFIG is set earlier, in Runtime.from_recipe.)"""

    NOTICE = "does not have a deterministic implementation"

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.deterministic: bool | None = None

    def __enter__(self) -> "Reproducibility":
        import warnings

        import torch

        self._before = (torch.are_deterministic_algorithms_enabled(),
                        torch.is_deterministic_algorithms_warn_only_enabled())
        if self.enabled:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self._warnings = warnings.catch_warnings(record=True)
        self._seen = self._warnings.__enter__()
        warnings.simplefilter("always")  # within the block every warning is recorded, then passed on below
        return self

    def __exit__(self, *exc) -> None:
        import warnings

        import torch

        self._warnings.__exit__(*exc)
        nondeterministic = [w for w in self._seen if self.NOTICE in str(w.message)]
        passed_on = set()
        for w in self._seen:  # hand each distinct warning on to whoever listens outside, once
            key = (str(w.message), w.category, w.filename, w.lineno)
            if key not in passed_on:
                passed_on.add(key)
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self.deterministic = self.enabled and not nondeterministic
        torch.use_deterministic_algorithms(self._before[0], warn_only=self._before[1])
