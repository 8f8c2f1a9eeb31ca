"""The one registry type behind methods, tasks and model sources: entries load on first use, are checked
against their kind's base type, keep their names unique, and unknown names get the kind's error with a
did-you-mean."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orthograd_cli.errors import CheckpointError, RecipeError, UsageError
from orthograd_cli.registry import Registry


def test_every_registered_entry_loads_as_its_kind_under_its_own_name():
    from orthograd_cli.methods import METHODS
    from orthograd_cli.models.sources import SOURCES
    from orthograd_cli.tasks import TASKS

    assert all(info.name == name for name, info in METHODS.items())
    assert all(task.name == name for name, task in TASKS.items())
    assert all(source.name == name for name, source in SOURCES.items())


def test_entries_are_imported_only_when_asked_for():
    """`orthograd --help` must not import torch: listing names loads nothing."""
    code = ("import sys\nfrom orthograd_cli.methods import METHODS\nfrom orthograd_cli.tasks import TASKS\n"
            "names = list(METHODS), list(TASKS), 'orthograd' in METHODS\n"
            "print('orthograd_cli.methods.scrub' in sys.modules, 'torch' in sys.modules)\n"
            "METHODS['scrub']\nprint('orthograd_cli.methods.scrub' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "False", "True"], done.stderr


@pytest.mark.parametrize("kind, error", [("methods", UsageError), ("tasks", RecipeError),
                                         ("models.sources", CheckpointError)])
def test_an_unknown_name_is_the_kinds_own_error_with_a_suggestion(kind, error):
    import importlib

    registry = {"methods": "METHODS", "tasks": "TASKS", "models.sources": "SOURCES"}[kind]
    entries = getattr(importlib.import_module(f"orthograd_cli.{kind}"), registry)
    close = next(iter(entries))[:-1] + "x"
    with pytest.raises(error, match=f"unknown .*'{close}'") as caught:
        entries.get_or_error(close)
    assert "did you mean" in caught.value.hint


def test_a_wrong_type_or_a_second_entry_of_one_name_is_refused():
    registry: Registry[int] = Registry("number", int, UsageError, {"pi": "math:pi"})
    with pytest.raises(TypeError, match="number 'pi' is a float, not a int"):
        registry["pi"]
    registry.register("one", 1)
    with pytest.raises(ValueError, match="a number named 'one' is registered already"):
        registry.register("one", 1)
    with pytest.raises(ValueError, match="registered already"):
        registry.add("one", "math:e")
