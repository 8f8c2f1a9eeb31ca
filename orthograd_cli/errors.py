"""Error types of our own. Each carries the exit code and a hint; the CLI prints them as one line."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class OrthogradError(Exception):
    """A problem the user can fix. `str(err)` names the file, row or key; `hint` says how to fix it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class UsageError(OrthogradError):
    exit_code = 2


class RecipeError(OrthogradError):
    exit_code = 2


class ManifestError(OrthogradError):
    exit_code = 2


class CheckpointError(OrthogradError):
    exit_code = 3


class NumericalError(OrthogradError):
    exit_code = 4


def clip(text: str, limit: int = 200) -> str:
    """A value from a user's file or command line, short enough for a one-line error."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A hint naming the closest valid choice, or None when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'?" if close else None
