"""Model sources: the libraries that build a checkpoint's architecture (torchvision, torchaudio,
Hugging Face transformers for model folders).

Each source is one file with a `SOURCE` object (see base.py) and one entry in the registry below
(registry.py); the first source that recognises an architecture name builds it.
"""

from __future__ import annotations

from orthograd_cli.errors import CheckpointError
from orthograd_cli.models.sources.base import ModelSource
from orthograd_cli.registry import Registry

# tried in this order; imported on first use
SOURCES: Registry[ModelSource] = Registry("model source", ModelSource, CheckpointError, {
    name: f"orthograd_cli.models.sources.{name}:SOURCE" for name in ("transformers", "torchaudio", "torchvision")})


def all_sources() -> list[ModelSource]:
    return list(SOURCES.values())


def source_for(arch: str) -> ModelSource | None:
    return next((source for source in all_sources() if source.handles(arch)), None)
