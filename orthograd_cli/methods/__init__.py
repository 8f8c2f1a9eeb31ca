"""Unlearning methods, each one short file over the shared loop (loop.py); see base.py for the contract.

The registry is built from the method files listed here: adding a method is its file plus one entry.
Every list of method names (the recipe's choices, `--help`, `compare`'s checks, error hints) is
read from `METHODS`.
"""

from __future__ import annotations

from orthograd_cli.errors import UsageError, did_you_mean
from orthograd_cli.methods import finetune, gdr_gma, neggrad, neggrad_plus, orthograd, random_label, salun, scrub
from orthograd_cli.methods.base import MethodInfo

METHODS: dict[str, MethodInfo] = {}


def register(info: MethodInfo) -> MethodInfo:
    """Add a method to the registry (its name must be new); returns it, so a file can register itself."""
    if info.name in METHODS:
        raise ValueError(f"a method named '{info.name}' is registered already")
    METHODS[info.name] = info
    return info


for _module in (orthograd, finetune, neggrad, neggrad_plus, random_label, scrub, salun, gdr_gma):
    register(_module.METHOD)


def get_method(name: str) -> MethodInfo:
    if name not in METHODS:
        raise UsageError(f"unknown method '{name}'", did_you_mean(name, METHODS) or f"choose from {', '.join(METHODS)}")
    return METHODS[name]


def methods_for(task: str) -> list[str]:
    return [name for name, info in METHODS.items() if info.supports(task)]


def check_method_fits_task(name: str, task: str) -> None:
    info = get_method(name)
    if not info.supports(task):
        raise UsageError(f"method '{name}' is defined for {', '.join(info.tasks)} only, not '{task}'"
                         + (f" ({info.task_reason})" if info.task_reason else ""),
                         f"use one of {', '.join(methods_for(task))}")


def help_list() -> str:
    """The methods as the `--help` texts list them, one per line."""
    lines = []
    for name, info in METHODS.items():
        limits = f" [{', '.join(info.tasks)} only]" if info.tasks else ""
        lines.append(f"  {name:13s} {info.summary}{limits}")
    return "\n".join(lines)
