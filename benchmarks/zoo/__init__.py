"""Models trained by code other than the tool's (benchmarks/zoo_forget.py builds and uses them)."""

from __future__ import annotations

import json
from pathlib import Path

INFO = "member.json"  # what a built member's folder says of it: its files and how a user would call the tool


def built_before(cache: Path, name: str) -> tuple[Path, dict | None]:
    """CACHE/<name>/ and the member built there before, or None."""
    folder = cache / name
    info = folder / INFO
    return folder, json.loads(info.read_text()) if info.is_file() else None
