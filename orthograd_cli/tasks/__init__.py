"""Tasks: what a model predicts, its loss, its data and how a set is scored (see base.py).

Each task is a package with a `TASK` object; the registry below names them. Nothing outside
`tasks/` branches on a task's name: it asks the task.
"""

from __future__ import annotations

from importlib import import_module

from orthograd_cli.tasks.base import ExtraMetric, SetResult, Task  # noqa: F401  (the contract, re-exported)

# name -> package; imported on first use, so `orthograd --help` does not pay for them
TASKS = {"classification": "orthograd_cli.tasks.classification", "asr": "orthograd_cli.tasks.asr",
         "asr_seq2seq": "orthograd_cli.tasks.asr_seq2seq"}


def get_task(name: str) -> Task:
    if name not in TASKS:
        from orthograd_cli.errors import RecipeError, did_you_mean

        raise RecipeError(f"unknown task '{name}'", did_you_mean(name, TASKS) or f"choose from {', '.join(TASKS)}")
    return import_module(TASKS[name]).TASK
