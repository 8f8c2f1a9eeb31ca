"""The gate: requirements a run's output must meet before a pipeline may ship it, and the verdict.

A requirement is a built-in check (`target_reached`, `not_at_chance`, `test_kept`) or a comparison of a
report metric with a number or another metric, read with a small grammar (never `eval`):

    requirement := NAME OP NUMBER | NAME OP NAME [(+|-) NUMBER] | CHECK | !CHECK
    NAME        := metric ["." field]          e.g. forget_acc, forget_loss_ks.p, original_test_acc
    OP          := <= | >= | < | > | ==

`original_X` and `reference_X` read metric X of the original and the reference model. `!CHECK` drops a
built-in check. Every name is checked against what the run will produce before any model work
(`Gate.check`), so a typo or a reference metric without `--reference` is a usage error, not a failed run.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, field

from orthograd_cli.errors import UsageError, clip, did_you_mean

EXIT_NOT_MET = 5  # the documented exit code of a completed command whose output failed a requirement

CHECKS = {
    "target_reached": "the run ended at or under its stop target (forget)",
    "not_at_chance": "the output is better than chance on the retain and test sets",
    "test_kept": "the test accuracy fell at most eval.max_test_drop below the original model's (no test set or "
                 "original model: not applicable)",
}
RUN_ONLY_CHECKS = ("target_reached",)  # need a forget run; evaluate measures a model that exists

OPERATORS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}
_NAME = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?"
_UNSIGNED = r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER = rf"[+-]?{_UNSIGNED}"
_EXPRESSION = re.compile(rf"\s*(?P<left>{_NAME})\s*(?P<op><=|>=|==|<|>)\s*(?:(?P<number>{_NUMBER})|"
                         rf"(?P<right>{_NAME})\s*(?:(?P<sign>[+-])\s*(?P<offset>{_UNSIGNED}))?)\s*")
_CHECK = re.compile(r"\s*(?P<drop>!?)\s*(?P<name>[A-Za-z_]+)\s*")
PREFIXES = ("original_", "reference_")  # the original model's and the reference model's own metrics
FIELDS = {"value"}  # every metric's value; a test's other parts are its `fields` (forget_loss_ks.p)


@dataclass(frozen=True)
class Comparison:
    text: str
    left: str
    op: str
    right: str | None  # another metric, or None for a number
    offset: float  # the number, or what is added to `right`

    @property
    def names(self) -> list[str]:
        return [self.left] + ([self.right] if self.right else [])


def parse(text: str) -> Comparison | tuple[str, bool]:
    """A comparison, or (check name, kept) for a built-in check or its `!` drop; UsageError if malformed."""
    check = _CHECK.fullmatch(text)
    if check and check["name"] in CHECKS:
        return check["name"], not check["drop"]
    if check and check["drop"]:
        raise UsageError(f"--require {clip(text)}: only a built-in check can be dropped with !",
                         f"the checks are {', '.join(CHECKS)}")
    match = _EXPRESSION.fullmatch(text)
    if match is None:
        hint = did_you_mean(text.strip(), CHECKS) if check else None
        raise UsageError(f"--require {clip(text)}: not a requirement",
                         hint or "write METRIC OP NUMBER or METRIC OP METRIC±NUMBER, e.g. forget_acc<=0.05 or "
                                 "test_acc>=original_test_acc-0.02 (quote it in the shell)")
    if match["number"] is not None:
        return Comparison(text.strip(), match["left"], match["op"], None, float(match["number"]))
    offset = float(match["offset"]) if match["offset"] else 0.0
    signed = -offset if match["sign"] == "-" else offset
    return Comparison(text.strip(), match["left"], match["op"], match["right"], signed)


@dataclass(frozen=True)
class Plan:
    """What a command will measure, known before any model work: which metrics it can produce."""

    sets: frozenset[str]
    mode: str
    extras: frozenset[str]  # the task's extra per-set metrics (speech: wer); all tasks' before the task is known
    original: bool  # the original model is scored (forget: always; evaluate: --original)
    reference: bool

    def metrics(self, reference: bool | None = None, original: bool | None = None) -> set[str]:
        from orthograd_cli.metrics.reference import KS_SETS

        reference = self.reference if reference is None else reference
        original = self.original if original is None else original
        sets = self.sets
        per_set = [m for m in self.extras if not m.startswith("mia_")]  # the task's attacks are named whole
        names = {f"{s}_{m}" for s in sets for m in ("acc", *per_set)}
        if original and "test" in sets:
            names.add("original_test_acc")
            if "forget" in sets:
                names.add("uis")
        # an attack needs the forget set and its unseen counterpart (forget_test; sample-wise, else test)
        attackable = "forget" in sets and ("forget_test" in sets or (self.mode == "sample" and "test" in sets))
        if attackable:
            names.add("mia_logreg_loss_cv")
            names |= {m for m in self.extras if m.startswith("mia_")}
        if {"forget", "retain", "test"} <= sets:
            names.add("mia_efficacy")
        own, compared = set(names), set()
        if reference:
            compared = {f"{s}_loss_{kind}" for s in KS_SETS if s in sets for kind in ("ks", "emd")}
            if attackable:
                compared.add("privleak")
            if sets & {"forget", "retain", "test"}:
                compared |= {"tow", "avg_gap"}
            names |= compared | {"reference_" + n for n in own}
        if original:  # the original's own metrics, and how it compares with the reference
            names |= {"original_" + n for n in own | compared}
        return names


def task_metric_names(task) -> frozenset[str]:
    """A task's own metrics: per-set ones (`wer`, made `<set>_wer`) and its attacks (`mia_zlib_auc`, whole)."""
    from orthograd_cli.tasks.base import attack_metric

    return frozenset(task.extra_metrics) | {attack_metric(name) for name in task.attacks}


def every_metric_plan() -> Plan:
    """The plan that produces every metric name there is (the universe a name is checked against)."""
    from orthograd_cli.tasks import TASKS

    extras = frozenset(key for name in TASKS for key in task_metric_names(TASKS[name]))
    return Plan(frozenset({"forget", "forget_holdout", "forget_test", "retain", "retain_holdout", "test"}), "sample",
                extras, True, True)


@dataclass
class Gate:
    """The requirements of one command: built-in checks kept, and comparisons."""

    checks: list[str]
    comparisons: list[Comparison] = field(default_factory=list)
    command: str = "forget"

    @classmethod
    def of(cls, recipe_require: list[str], cli_require: list[str] | None, command: str) -> "Gate":
        """The recipe's `require` list and the command line's `--require`s; the built-in checks hold unless
        dropped (`!target_reached`). evaluate has no run, so `target_reached` does not apply there."""
        checks = {name: True for name in CHECKS if command != "evaluate" or name not in RUN_ONLY_CHECKS}
        comparisons = []
        for source, items in (("recipe", recipe_require), ("cli", cli_require or [])):
            for text in items:
                parsed = parse(str(text))
                if isinstance(parsed, Comparison):
                    if parsed not in comparisons:
                        comparisons.append(parsed)
                    continue
                name, kept = parsed
                if name in RUN_ONLY_CHECKS and command == "evaluate":
                    if source == "cli" and kept:
                        raise UsageError(f"--require {name}: evaluate measures a model; only forget and compare "
                                         "runs have a stop target", "require a metric, e.g. forget_acc<=0.05")
                    continue
                checks[name] = kept
        return cls([name for name, kept in checks.items() if kept], comparisons, command)

    @property
    def texts(self) -> list[str]:
        return [*self.checks, *(c.text for c in self.comparisons)]

    def check(self, plan: Plan) -> None:
        """Every name is a metric there is and one this command will produce; UsageError otherwise."""
        universe = every_metric_plan().metrics()
        producible = plan.metrics()
        for comparison in self.comparisons:
            for name in comparison.names:
                base, _, part = name.partition(".")
                if base not in universe:
                    raise UsageError(f"--require {comparison.text}: unknown metric '{base}'",
                                     did_you_mean(base, universe) or "see the metric table in the README "
                                                                     "(docs/metrics.md)")
                if base not in producible:
                    raise UsageError(f"--require {comparison.text}: this command does not produce '{base}'",
                                     _what_produces(base, plan))
                if part and part not in FIELDS and part not in _fields_of(base):
                    raise UsageError(f"--require {comparison.text}: '{base}' has no field '{part}'",
                                     f"its fields: {', '.join(sorted(FIELDS | _fields_of(base)))}")

    def verdict(self, metrics: dict, original: dict | None = None, reference: dict | None = None,
                checks: dict[str, tuple[bool, str]] | None = None, hints: dict[str, str] | None = None):
        """Each requirement with its value and verdict. `checks`: the built-in checks' outcomes (passed,
        detail); `hints`: what to change when one fails, by check name (comparisons share "comparison")."""
        from orthograd_cli.report import Requirement, Verdict

        checks, hints = checks or {}, hints or {}
        rows = []
        for name in self.checks:
            passed, detail = checks.get(name, (True, "not applicable"))
            rows.append(Requirement(requirement=name, passed=passed, detail=detail))
        values = _Values(metrics, original or {}, reference or {})
        for comparison in self.comparisons:
            left = values.read(comparison.left)
            right = comparison.offset if comparison.right is None else values.read(comparison.right)
            threshold = None if right is None else right + (comparison.offset if comparison.right else 0.0)
            measured = left is not None and threshold is not None and math.isfinite(left) and math.isfinite(threshold)
            passed = measured and OPERATORS[comparison.op](left, threshold)
            detail = (f"{left:.6g} {comparison.op} {threshold:.6g}" if measured
                      else "not measured (the metric has no value on this data)")
            rows.append(Requirement(requirement=comparison.text, passed=bool(passed), value=left,
                                    threshold=threshold, detail=detail))
        failed = [row for row in rows if not row.passed]
        hint = None
        if failed:
            keys = [row.requirement if row.requirement in CHECKS else "comparison" for row in failed]
            hint = "; ".join(dict.fromkeys(hints[k] for k in keys if k in hints)) or None
        return Verdict(passed=not failed, requirements=rows, hint=hint)


def _fields_of(base: str) -> set[str]:
    from orthograd_cli.metrics.reference import fields_of

    return set(fields_of(base.removeprefix("original_")))


def _what_produces(name: str, plan: Plan) -> str:
    if name in plan.metrics(reference=True) and not plan.reference:
        return "it compares with a model retrained without the forget data: give --reference MODEL"
    if name in plan.metrics(original=True) and not plan.original:
        return "it needs the model before unlearning: give --original MODEL"
    return "it needs data this command was not given (e.g. --test, --forget-test, or a task that reports it)"


class _Values:
    def __init__(self, metrics: dict, original: dict, reference: dict):
        self.sources = {"": metrics, "original_": original, "reference_": reference}

    def read(self, name: str) -> float | None:
        base, _, part = name.partition(".")
        entry = self.sources[""].get(base)
        for prefix in PREFIXES:
            if entry is None and base.startswith(prefix):
                entry = self.sources[prefix].get(base[len(prefix):])
        if entry is None:
            return None
        if part and part != "value":
            return (entry.fields or {}).get(part)
        return entry.value


def failure_lines(verdict) -> list[str]:
    """One line per failed requirement, for stderr."""
    return [f"requirement not met: {row.requirement} ({row.detail})" for row in verdict.requirements if not row.passed]
