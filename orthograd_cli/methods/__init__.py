"""Unlearning methods, each one short file over the shared loop (loop.py); see base.py for the contract.

The registry (registry.py) names the method files listed here: adding a method is its file plus one entry.
Every list of method names (the recipe's choices, `--help`, `compare`'s checks, error hints) is
read from `METHODS`.
"""

from __future__ import annotations

from orthograd_cli.errors import UsageError
from orthograd_cli.methods.base import MethodInfo
from orthograd_cli.registry import Registry

# each file's METHOD, imported when first asked for; the file is named after the method
METHODS: Registry[MethodInfo] = Registry("method", MethodInfo, UsageError, {
    name: f"orthograd_cli.methods.{name}:METHOD"
    for name in ("orthograd", "finetune", "neggrad", "neggrad_plus", "random_label", "scrub", "salun", "gdr_gma")})


def register(info: MethodInfo) -> MethodInfo:
    """Add a method to the registry (its name must be new); returns it, so a file can register itself."""
    return METHODS.register(info.name, info)


def get_method(name: str) -> MethodInfo:
    return METHODS.get_or_error(name)


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
