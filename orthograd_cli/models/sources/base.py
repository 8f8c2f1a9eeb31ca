"""The contract of a model source: from an architecture name (and its arguments) to a module."""

from __future__ import annotations


class ModelSource:
    name: str = ""
    tasks: tuple[str, ...] = ("classification",)  # the tasks its models do; the first is the default

    reads_config_from_folder: bool = False  # the architecture's config lives in the model folder, not metadata

    def handles(self, arch: str) -> bool:
        raise NotImplementedError

    def tasks_of(self, arch: str) -> tuple[str, ...]:
        """The tasks `arch` can do; the first is its default when neither recipe nor checkpoint names one."""
        return self.tasks

    def architectures(self) -> list[str]:
        """Every name it builds (for did-you-mean)."""
        raise NotImplementedError

    def build(self, info):
        """An untrained module for `info` (a ModelInfo), its head sized by the task's outputs."""
        raise NotImplementedError

    def checkpoint_keys(self, model, stored: set[str]) -> dict[str, str]:
        """Each of the module's state-dict keys -> its name in checkpoint files (`stored`: the names a file
        holds). The same names, except where a library renames weights between file and module."""
        return {key: key for key in model.state_dict()}

    def default_lora_targets(self, model) -> list[str]:
        """Module names that get LoRA adapters when the recipe names none."""
        raise NotImplementedError

    def guess_arch(self, state_dict: dict) -> str | None:
        """The common architecture whose parameter names match the checkpoint's exactly, if any."""
        return None
