"""The contract of a model source: from an architecture name (and its arguments) to a module."""

from __future__ import annotations


class ModelSource:
    name: str = ""
    tasks: tuple[str, ...] = ("classification",)  # the tasks its models do; the first is the default

    def handles(self, arch: str) -> bool:
        raise NotImplementedError

    def architectures(self) -> list[str]:
        """Every name it builds (for did-you-mean)."""
        raise NotImplementedError

    def build(self, info):
        """An untrained module for `info` (a ModelInfo), its head sized by the task's outputs."""
        raise NotImplementedError

    def default_lora_targets(self, model) -> list[str]:
        """Module names that get LoRA adapters when the recipe names none."""
        raise NotImplementedError

    def guess_arch(self, state_dict: dict) -> str | None:
        """The common architecture whose parameter names match the checkpoint's exactly, if any."""
        return None
