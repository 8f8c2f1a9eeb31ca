"""The run report: provenance, resolved recipe, metrics. Written atomically as JSON."""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path

from orthograd_cli import __version__
from orthograd_cli.models.checkpoint import write_text_atomic


def provenance(device: str, seed: int | None = None, **hashes: str | None) -> dict:
    import peft
    import torch
    import torchaudio
    import torchvision

    info = {
        "orthograd_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torchaudio": torchaudio.__version__,
        "peft": peft.__version__,
        "device": device,
        "threads": torch.get_num_threads(),
    }
    if seed is not None:
        info["seed"] = seed
    info["sha256"] = {name: value for name, value in hashes.items() if value}
    return info


def write_report(report: dict, path: Path) -> None:
    write_text_atomic(Path(path), json.dumps(report, indent=2, sort_keys=False) + "\n")


def provenance_metadata(prov: dict) -> dict[str, str]:
    """Provenance flattened into safetensors' string metadata; no timestamp, so that same-seed
    runs write byte-identical checkpoints (the report keeps the time)."""
    meta = {"orthograd.version": prov["orthograd_version"]}
    for name, value in prov["sha256"].items():
        meta[f"orthograd.sha256.{name}"] = value
    return meta
