"""Tasks: what a model predicts, its loss, its data and how a set is scored (see base.py).

Each task is a package with a `TASK` object; the registry below (registry.py) names them. Nothing outside
`tasks/` branches on a task's name: it asks the task.
"""

from __future__ import annotations

from orthograd_cli.errors import RecipeError
from orthograd_cli.registry import Registry
from orthograd_cli.tasks.base import ExtraMetric, SetResult, Task  # noqa: F401  (the contract, re-exported)

# imported on first use, so `orthograd --help` does not pay for them
TASKS: Registry[Task] = Registry("task", Task, RecipeError, {
    name: f"orthograd_cli.tasks.{name}:TASK" for name in ("classification", "asr", "asr_seq2seq", "causal_lm")})


def get_task(name: str) -> Task:
    return TASKS.get_or_error(name)
