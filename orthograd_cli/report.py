"""The typed reports every command writes (`report.json`, `--json`), and their provenance.

Each report is a pydantic model with a `schema_version`; `orthograd report-schema` prints the JSON
schema. Bump SCHEMA_VERSION when a field changes meaning or goes away (adding a field does not).

Version history:
  1  first typed schema (orthograd 0.1): forget, evaluate, compare, inspect, merge, demo reports.
  2  forget: history rows name the stop hold-out's scores `forget_holdout_*` (they were `forget_*`); the
     forgotten sets' metric `target` is the number the run stopped at (sample-wise it was the text "original
     test acc"); `diagnostics.conflict_share` is absent under the retain_grads mean/none ablations.
  3  forget: `stop_reason` is a code (target, already_at_target, max_steps, time_budget), the text moved to
     `stop_message`; history rows carry `wall_s`;
     `target_reached`, `verdict`, `audit`, and with --reference `reference_metrics`. evaluate: `verdict`,
     `audit`. compare: a run's `status` may be `not_met` (it ran, its requirements failed), runs carry their
     `verdict`, summary cells carry a 95 % t-interval, and rows say whether the method `passed`.
"""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from orthograd_cli import __version__

SCHEMA_VERSION = 3


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Metric(_Strict):
    """One number with what it means: either a direction (higher_is_better) or a target value."""

    value: float | None
    definition: str
    n: int
    higher_is_better: bool | None = None
    target: float | str | None = None
    fields: dict[str, float | None] | None = Field(
        None, description="a test's parts beside its value, e.g. the KS test's statistic and p (read as name.p)")
    source: str | None = Field(None, description="where the metric is published")

    @property
    def parts(self) -> dict[str, float | None]:
        """The fields beside the value (a test's statistic is its value), as read by name.part."""
        return {part: value for part, value in (self.fields or {}).items() if part != "statistic"}

    @model_serializer(mode="wrap")
    def _one_of_direction_or_target(self, handler) -> dict:
        data = handler(self)
        data.pop("higher_is_better" if self.target is not None else "target", None)
        for optional in ("fields", "source"):
            if data.get(optional) is None:
                data.pop(optional, None)
        return data


Metrics = dict[str, Metric]


class Provenance(_Strict):
    orthograd_version: str
    created: str
    python: str
    torch: str
    torchvision: str
    torchaudio: str
    peft: str
    device: str
    threads: int
    seed: int | None = None
    deterministic: bool | None = Field(None, description="forget: every kernel of the run had a deterministic "
                                                         "implementation (same seed, same device type: same bytes)")
    world_size: int = Field(1, description="processes that ran the steps together (--nproc, torchrun)")
    distributed_backend: str | None = Field(None, description="gloo (CPU) or nccl (CUDA) when world_size > 1")
    communicated_bytes_per_step: int | None = Field(None, description="bytes rank 0 put into collectives per step")
    sha256: dict[str, str] = Field(description="sha256 of every input: checkpoints, recipe, manifests")


class _Report(_Strict):
    schema_version: int = SCHEMA_VERSION


class Requirement(_Strict):
    """One requirement of the gate and what the run showed."""

    requirement: str = Field(description="as written: an expression such as forget_acc<=0.05, or a built-in check "
                                         "(target_reached, not_at_chance, test_kept)")
    passed: bool
    value: float | None = Field(None, description="the left-hand side as measured (None: not measured)")
    threshold: float | None = Field(None, description="the right-hand side as measured")
    detail: str = ""


class Verdict(_Strict):
    """Whether the output can ship: every requirement passed. A command exits 5 when one did not."""

    passed: bool
    requirements: list[Requirement]
    hint: str | None = Field(None, description="what to change when a requirement failed")


class Audit(_Strict):
    """What an auditor needs to tie the output to its inputs."""

    command_line: list[str] = Field(description="the command's arguments as given (no environment)")
    data_sha256: dict[str, str] = Field(
        description="per manifest: sha256 over the sha256 of every file it lists, in manifest order (so a file "
                    "changed under the same CSV changes it)")
    output_sha256: dict[str, str] = Field({}, description="sha256 of each checkpoint the command wrote")


class BeforeAfter(_Strict):
    before: Metrics
    after: Metrics


class SweepCandidate(_Strict):
    setting: dict[str, Any]
    status: Literal["ok", "failed"]
    score: float | None = Field(None, description="validation score, lower is better (see jobs/sweep.py)")
    steps: int | None = None
    reason: str | None = None
    metrics: Metrics | None = None
    stop_reason: str | None = None
    written_step: int | None = None
    target_reached: bool | None = Field(None, description="the written check reached the stop target")
    damage: float | None = Field(None, description="with a damage limit: the largest fall below the original on the "
                                                   "watched validation set at the last check (what ended a "
                                                   "damage_limit run)")
    wall_s: float | None = None
    met: bool | None = Field(None, description="--tune: the candidate met the constraints")
    capped_at: int | None = Field(None, description="--tune: the step budget it ran under, that of the cheapest "
                                                    "candidate met before it (more steps could not win)")


class Tuning(_Strict):
    """`forget --tune`: every candidate tried, and the one the real run used."""

    space: dict[str, list[Any]]
    order: str = Field(description="the order candidates are tried in")
    budget_runs: int
    budget_minutes: float | None = None
    validation: str = Field(description="how the validation split was carved")
    constraints: str
    max_damage: float = Field(description="the damage limit every candidate ran under (method.tune.max_damage)")
    val_unit: float | None = Field(None, description="the smallest fall retain_val can show: one sample (speech: one "
                                                     "word); above max_damage, a single one lost breaks the limit")
    target_forget_acc: float
    rule: str = Field(description="how the chosen candidate was picked")
    chosen: dict[str, Any] | None = Field(description="the setting the real run used; None: the recipe's own")
    met: bool = Field(description="the chosen candidate met the constraints")
    candidates: list[SweepCandidate]
    wall_s: float


class ForgetReport(_Report):
    command: Literal["forget"] = "forget"
    method: str
    task: str
    mode: Literal["sample", "class"]
    steps: int
    resumed_from_step: int | None = Field(None, description="--resume: the step this run continued after (the "
                                                            "interrupted run's last saved state); None: not resumed")
    written_step: int | None = Field(None, description="the step whose weights were written: the last step, or with "
                                                       "method.stop.max_damage the check `written_rule` chose")
    written_rule: str = Field("the last step", description="how the written step was chosen")
    stop_reason: Literal["target", "already_at_target", "max_steps", "time_budget", "damage_limit"] = Field(
        description="why the steps ended: the stop target was reached, was met before any step, the step "
                    "budget ran out, the time budget (method.stop.max_minutes) did, or a check broke the damage "
                    "limit (method.stop.max_damage)")
    stop_message: str = Field(description="stop_reason in words, with the numbers")
    target_reached: bool = Field(description="the watched forget accuracy of the written step is at or under the stop "
                                             "target")
    target_forget_acc: float
    target_source: str = Field("", description="where the stop target comes from")
    retain_batch_size: int = Field(0, description="k, the retain samples per step (the whole retain set if smaller)")
    wall_s: float
    trainable_parameters: int
    metrics: BeforeAfter
    reference: str | None = Field(None, description="--reference: a model retrained without the forget data")
    reference_metrics: Metrics | None = Field(None, description="the reference model's own metrics on the same sets")
    tuning: Tuning | None = Field(None, description="--tune: the search that chose the run's setting")
    verdict: Verdict
    diagnostics: dict[str, dict[str, float | int]] = Field(
        description="per-step summaries (first, last, min, median, max) of retain_rank, kept_norm_ratio "
                    "(‖g⊥‖/‖g_u‖), conflict_share (see gradients/conflict.py), unlearn_loss, retain_loss")
    history: list[dict[str, float | int]] = Field(
        description="one row per stop-rule check: step, wall_s (seconds since the first check began) and each set's "
                    "metrics")
    retain_ids_sha256: str
    notes: list[str] = []
    warnings: list[str] = []  # what makes the run not the success it may look like (also on stderr)
    recipe: dict[str, Any]
    provenance: Provenance
    audit: Audit
    outputs: dict[str, str] = {}


class EvaluateReport(_Report):
    command: Literal["evaluate"] = "evaluate"
    model: str
    task: str
    mode: Literal["sample", "class"]
    metrics: Metrics
    provenance: Provenance
    original_metrics: Metrics | None = None
    reference: str | None = None
    reference_metrics: Metrics | None = None
    gap_to_reference: dict[str, float] | None = None
    verdict: Verdict
    audit: Audit
    notes: list[str] = []  # how the sets were derived
    warnings: list[str] = []  # what may make the numbers misleading


class CompareRun(_Strict):
    status: Literal["ok", "not_met", "failed"] = Field(
        description="ok: ran and met every requirement; not_met: ran, a requirement failed; failed: did not run")
    seed: int
    reason: str | None = None
    steps: int | None = None
    wall_s: float | None = None
    stop_reason: str | None = None
    metrics: Metrics | None = None
    verdict: Verdict | None = None
    report: str | None = None


class MeanStd(_Strict):
    mean: float | None
    std: float | None = Field(description="sample standard deviation over the seeds (None with one)")
    n: int
    ci95: tuple[float, float] | None = Field(None, description="95 % Student-t interval of the mean (n >= 2)")


class CompareRow(_Strict):
    method: str
    runs: int
    failed: int
    passed: int = Field(0, description="runs that met every requirement")
    failures: list[str]
    chosen: dict[str, Any] = Field({}, description="the swept setting chosen on the validation split (--sweep)")
    ua: MeanStd  # unlearning accuracy, 1 − forget acc
    retain_acc: MeanStd  # RA
    test_acc: MeanStd  # TA
    mia_efficacy: MeanStd
    mia: MeanStd  # mia_logreg_loss_cv
    uis: MeanStd
    steps: MeanStd
    wall_s: MeanStd


class Sweep(_Strict):
    grid: dict[str, list[Any]]
    select: str
    validation: str = Field(description="how the validation split was carved")
    target_forget_acc: float
    candidates: dict[str, list[SweepCandidate]]


class CompareReport(_Report):
    command: Literal["compare"] = "compare"
    model: str
    mode: Literal["sample", "class"]
    seeds: int
    methods: list[str]
    summary: list[CompareRow]
    runs: dict[str, list[CompareRun]]
    recipe: dict[str, Any]
    recipe_sha256: str
    sweep: Sweep | None = None
    reference: str | None = None
    reference_metrics: Metrics | None = None
    requirements: list[str] = Field([], description="each run's gate (the recipe's require list and --require)")
    passing_methods: list[str] = Field([], description="methods whose every run met every requirement")


class InspectReport(_Report):
    command: Literal["inspect"] = "inspect"
    path: str
    sha256: str
    arch: str | None
    arch_source: Literal["given", "metadata", "guessed"]
    tensors: int
    parameters: int
    dtypes: dict[str, int]
    metadata: dict[str, str]
    key_groups: dict[str, dict[str, int]]
    gradient_conflict: dict[str, Any] | None = None


class MergeReport(_Report):
    command: Literal["merge"] = "merge"
    base: str
    adapter: str
    out: str
    base_sha256: str
    tensors: int
    card: str | None = Field(None, description="the forget run's model card, kept beside the merged checkpoint")


class DemoReport(_Report):
    command: Literal["demo"] = "demo"
    scenario: Literal["image", "asr", "text"]
    checkpoint: str
    data: str
    runs: dict[str, ForgetReport]
    forget_voice: str | None = None


REPORTS = {model.model_fields["command"].default: model
           for model in (ForgetReport, EvaluateReport, CompareReport, InspectReport, MergeReport, DemoReport)}


def json_schema() -> dict:
    """The JSON schema of every report, keyed by command."""
    return {"schema_version": SCHEMA_VERSION,
            "reports": {command: model.model_json_schema() for command, model in REPORTS.items()}}


def dump(report: BaseModel) -> dict:
    return report.model_dump(mode="json")


def provenance(device: str, seed: int | None = None, deterministic: bool | None = None,
               **hashes: str | None) -> Provenance:
    import peft
    import torch
    import torchaudio
    import torchvision

    return Provenance(
        orthograd_version=__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        python=platform.python_version(),
        torch=torch.__version__, torchvision=torchvision.__version__, torchaudio=torchaudio.__version__,
        peft=peft.__version__,
        device=device,
        threads=torch.get_num_threads(),
        seed=seed,
        deterministic=deterministic,
        sha256={name: value for name, value in hashes.items() if value},
    )


def write_report(report: BaseModel, path: Path) -> None:
    from orthograd_cli.models.checkpoint import write_text_atomic

    write_text_atomic(Path(path), json.dumps(dump(report), indent=2) + "\n")


def provenance_metadata(prov: Provenance) -> dict[str, str]:
    """Provenance flattened into safetensors' string metadata; no timestamp, so that same-seed
    runs write byte-identical checkpoints (the report keeps the time)."""
    meta = {"orthograd.version": prov.orthograd_version}
    for name, value in prov.sha256.items():
        meta[f"orthograd.sha256.{name}"] = value
    return meta
