"""What a command must prove, shared by forget, evaluate and compare: its requirements (the gate), the
reference model it is compared with, and the command line it records.

`Proof.check` reads only the command line and the recipe, so a malformed requirement, an unknown metric
or a reference metric without `--reference` is a usage error before any model is read. Once the
checkpoint tells the task, `check_task` checks the task's own metrics (speech: WER) before any model work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orthograd_cli.errors import UsageError
from orthograd_cli.requirements import Gate, Plan

TARGET_HINT = ("the run stopped short of its stop target: raise method.max_steps (now {max_steps}) or method.lr (now "
               "{lr}), or let `orthograd compare --sweep method.lr=0.02,0.05,0.1` choose; --require '!target_reached' "
               "accepts a run that stops short")
BUDGET_HINT = ("the time budget ended the run before its stop target: raise --max-minutes (method.stop.max_minutes, "
               "now {minutes:g}) or method.lr (now {lr}); --require '!target_reached' accepts a run that stops short")
DAMAGE_HINT = ("the damage limit ended the run before its stop target, and the last check within it was written: "
               "lower method.lr (now {lr}), raise method.alpha or method.retain_batch_size, or allow more damage "
               "(method.stop.max_damage, now {max_damage:g}); --require '!target_reached' accepts the written model")
CHANCE_HINT = ("the output is at chance: lower method.lr, or keep more of the model with a larger retain weight "
               "(method.alpha) or retain batch (method.retain_batch_size); --require '!not_at_chance' accepts it")
KEPT_HINT = ("the rest of the model lost more than eval.max_test_drop allows (now {max_drop:g}): lower method.lr (now "
             "{lr}) or let `forget --tune` choose, or watch the damage while unlearning (method.stop.max_damage); "
             "raise eval.max_test_drop, or --require '!test_kept', to accept it")
COMPARISON_HINT = "the outputs are written for inspection; change the recipe (method.lr, method.max_steps, " \
                  "method.alpha) or the requirement"


@dataclass
class Proof:
    gate: Gate
    command_line: list[str] = field(default_factory=list)
    reference_path: str | None = None
    _reference: tuple | None = None  # (checkpoint, info), read once
    _reference_results: dict | None = None  # the reference scored on the loaded sets, once per command

    @classmethod
    def of(cls, recipe, require: list[str] | None, command: str, reference_path: str | None = None,
           command_line: list[str] | None = None) -> "Proof":
        return cls(Gate.of(recipe.require, require, command), list(command_line or []), reference_path)

    def check(self, manifests: dict, recipe, original: bool, extras: frozenset[str] | None = None,
              mode_known: bool = True) -> None:
        """Every requirement names a metric this command will produce from these manifests (names only given:
        before the checkpoint is read, with every task's metrics; `extras`: the task's, once known). Without
        `mode_known` (evaluate takes an output's recorded mode) what either mode produces passes."""
        from orthograd_cli.requirements import every_metric_plan

        given = {name for name, path in manifests.items() if path is not None}
        stop = recipe.method.stop
        if self.gate.command != "evaluate":
            given |= {f"{role}_holdout" for role in ("forget", "retain")
                      if getattr(stop, f"{role}_holdout") > 0 and role in given}
            if stop.max_damage is not None and not {"retain_holdout", "test"} & given:
                raise UsageError(f"method.stop.max_damage={stop.max_damage:g} watches the retain set's held-out "
                                 "share and the test set, and neither is there",
                                 "set method.stop.retain_holdout (e.g. 0.2) or give --test")
        if self.gate.command == "forget" and recipe.method.tune.enabled:
            from orthograd_cli.jobs.tune import search_space

            search_space(recipe)  # its keys, before any model work
        if self.gate.command == "compare" and recipe.method.tune.enabled:
            raise UsageError("method.tune.enabled: compare gives every method the same search with --sweep; "
                             "--tune is forget's", "drop method.tune.enabled and use --sweep KEY=V1,V2")
        if (recipe.eval.mode == "class" or not mode_known) and {"forget", "test"} <= given:
            given.add("forget_test")  # split off the test set (loading.split_test_by_forgotten_classes)
        mode = recipe.eval.mode if mode_known else "sample"  # sample-wise, the test set also serves the MIA
        plan = Plan(frozenset(given), mode, every_metric_plan().extras if extras is None else extras,
                    original, self.reference_path is not None)
        self.gate.check(plan)

    def check_task(self, loaded, original: bool) -> None:
        from orthograd_cli.requirements import task_metric_names

        self.check(loaded.manifests, loaded.recipe, original, task_metric_names(loaded.task))

    def reference(self, recipe, arch: str | None):
        from orthograd_cli.loading import load_checkpoint_and_info

        if self.reference_path is not None and self._reference is None:
            self._reference = load_checkpoint_and_info(self.reference_path, recipe, arch)
        return self._reference

    def reference_results(self, loaded, device: str, collective=None) -> dict | None:
        """The reference model scored on the loaded sets (once; compare's runs share it)."""
        from orthograd_cli.metrics.evaluation import measure
        from orthograd_cli.models.registry import load_model

        reference = self.reference(loaded.recipe, None)
        if reference is None:
            return None
        if self._reference_results is None:
            model = load_model(*reference).to(device).eval()
            self._reference_results = measure(model, loaded.sets, loaded.recipe.eval.batch_size, device, loaded.task,
                                              collective)
        return self._reference_results


def chance_check(results: dict, task, info) -> tuple[bool, str]:
    """The built-in not_at_chance check on a model's results."""
    from orthograd_cli.metrics.sanity import chance_problems

    problems = chance_problems(results, task, info)
    if problems:
        return False, "at chance " + "; ".join(problems)
    checked = [name for name in ("retain", "test") if name in results]
    return True, f"better than chance on {', '.join(checked)}" if checked else "no retain or test set to check"


def kept_check(after: dict, before: dict | None, max_drop: float) -> tuple[bool, str]:
    """The built-in test_kept check: the test accuracy (`test_acc`; speech: word accuracy) after, against the
    original model's. Not applicable without a test set or an original model to compare with."""
    kept, original = after.get("test_acc"), (before or {}).get("test_acc")
    if kept is None or original is None or kept.value is None or original.value is None:
        return True, "not applicable (no test set, or no original model to compare with)"
    drop = original.value - kept.value
    detail = f"test accuracy {original.value:.4f} -> {kept.value:.4f} (fell {drop:.4f}; allowed {max_drop:g})"
    return drop <= max_drop + 1e-9, detail  # accuracies are ratios of counts: a fall of exactly the limit is within


def target_hint(stop_reason: str, spec) -> str:
    """What to change when a run ended short of its target, by what ended it."""
    if stop_reason == "damage_limit":
        return DAMAGE_HINT.format(lr=spec.lr, max_damage=spec.stop.max_damage)
    if stop_reason == "time_budget":
        return BUDGET_HINT.format(minutes=spec.stop.max_minutes, lr=spec.lr)
    return TARGET_HINT.format(max_steps=spec.max_steps, lr=spec.lr)
