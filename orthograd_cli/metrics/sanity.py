"""Is the original model any good on this data? A model at chance (wrong preprocessing, a shuffled
vocabulary, the wrong checkpoint) has nothing to forget, and "unlearning" it would look like success."""

from __future__ import annotations

from orthograd_cli.errors import CheckpointError

CHECKED_SETS = ("retain", "test")  # data the model should know or generalise to


def chance_problems(results: dict, task, info) -> list[str]:
    """One line per checked set on which the model is at chance (task.at_chance decides)."""
    problems = []
    for name in CHECKED_SETS:
        if name in results:
            why = task.at_chance(results[name], info)
            if why:
                problems.append(f"on the {name} set {why}")
    return problems


def require_better_than_chance(results: dict, task, info, model_path, enabled: bool) -> None:
    """Stop before unlearning when the original model is at chance (eval.require_better_than_chance)."""
    problems = chance_problems(results, task, info)
    if enabled and problems:
        raise CheckpointError(f"{model_path}: the original model is at chance {problems[0]}, so there is nothing "
                              "to unlearn", f"{task.chance_hint}; eval.require_better_than_chance=false runs anyway")
