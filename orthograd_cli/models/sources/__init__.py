"""Model sources: the libraries that build a checkpoint's architecture (torchvision, torchaudio,
Hugging Face transformers for model folders).

Each source is one file with a `SOURCE` object (see base.py) and one entry below; the first source
that recognises an architecture name builds it.
"""

from __future__ import annotations

from importlib import import_module

from orthograd_cli.models.sources.base import ModelSource

# tried in this order; imported on first use
SOURCES = ("orthograd_cli.models.sources.transformers", "orthograd_cli.models.sources.torchaudio",
           "orthograd_cli.models.sources.torchvision")


def all_sources() -> list[ModelSource]:
    return [import_module(name).SOURCE for name in SOURCES]


def source_for(arch: str) -> ModelSource | None:
    return next((source for source in all_sources() if source.handles(arch)), None)
