"""The model card written beside every checkpoint `forget` writes (README.md, Hugging Face's format).

YAML front matter (machine-readable, under `orthograd:`) and a short text for a person, written with
huggingface_hub's ModelCard/ModelCardData so `ModelCard.load` reads it back. It says what was
forgotten by hashes and counts only (never a sample, never a path outside the run: the command line's
paths are replaced by `<path>`), and holds nothing that changes between same-seed runs (no time), so
the same run writes the same bytes.
"""

from __future__ import annotations

from pathlib import Path

from orthograd_cli.report import ForgetReport, Metrics

CARD_NAME = "README.md"
TAGS = ["orthograd", "machine-unlearning"]


def card_text(report: ForgetReport, counts: dict[str, int]) -> str:
    """The card of a forget run, as text (README.md); `counts`: each manifest's rows."""
    from huggingface_hub import ModelCardData

    prov = report.provenance
    checkpoint_sha256 = report.audit.output_sha256["model.safetensors"]
    data = {
        "checkpoint_sha256": checkpoint_sha256,
        "base_model_sha256": prov.sha256.get("base"),
        "task": report.task,
        "mode": report.mode,
        "method": report.method,
        "recipe_sha256": prov.sha256.get("recipe"),
        "seed": prov.seed,
        "steps": report.steps,
        "stop_reason": report.stop_reason,
        "target_reached": report.target_reached,
        "data": {name: {"manifest_sha256": prov.sha256.get(f"manifest_{name}"), "data_sha256": data_sha,
                        "samples": counts.get(name)}
                 for name, data_sha in report.audit.data_sha256.items()},
        "metrics": {"before": _values(report.metrics.before), "after": _values(report.metrics.after),
                    **({"reference": _values(report.reference_metrics)} if report.reference_metrics else {})},
        "verdict": {"passed": report.verdict.passed,
                    "requirements": [{"requirement": r.requirement, "passed": r.passed, "value": r.value,
                                      "threshold": r.threshold} for r in report.verdict.requirements]},
        "command_line": public_command_line(report.audit.command_line),
        "versions": {"orthograd": prov.orthograd_version, "python": prov.python, "torch": prov.torch,
                     "torchvision": prov.torchvision, "torchaudio": prov.torchaudio, "peft": prov.peft},
    }
    card_data = ModelCardData(library_name="orthograd", tags=[*TAGS, report.task], orthograd=data)
    return f"---\n{card_data.to_yaml()}\n---\n\n{_body(report, checkpoint_sha256, counts)}"


def write_card(text: str, folder: Path) -> Path:
    from orthograd_cli.models.checkpoint import write_text_atomic

    path = Path(folder) / CARD_NAME
    write_text_atomic(path, text)
    return path


def public_command_line(argv: list[str]) -> list[str]:
    """The arguments with every file system path replaced by `<path>` (a card travels with the model; the
    names of the user's files stay in the report)."""
    return ["<path>" if _is_path(arg) else arg for arg in argv]


def _is_path(arg: str) -> bool:
    if arg.startswith("-") or "=" in arg:
        return False
    return "/" in arg or Path(arg).exists() or Path(arg).suffix in (".csv", ".safetensors", ".yaml", ".yml", ".png")


def _values(metrics: Metrics | None) -> dict[str, float | None]:
    """Each metric's value, and a test's other parts as name.part (forget_loss_ks.p)."""
    values = {}
    for name, entry in (metrics or {}).items():
        values[name] = entry.value
        values.update({f"{name}.{part}": v for part, v in entry.parts.items()})
    return values


def _body(report: ForgetReport, checkpoint_sha256: str, counts: dict[str, int]) -> str:
    verdict = "met every requirement" if report.verdict.passed else "did NOT meet its requirements"
    lines = [
        "# Unlearned checkpoint (orthograd)",
        "",
        f"This checkpoint (sha256 `{checkpoint_sha256}`) is the base model (sha256 "
        f"`{report.provenance.sha256.get('base')}`) after `{report.method}` unlearning ({report.mode}-wise, "
        f"task {report.task}): {report.steps} steps, {report.stop_message}. The run {verdict}.",
        "",
        "## Data",
        "",
        "The forget set is what was forgotten; the others are what the run kept and measured on. Files are "
        "named by hashes only.",
        "",
        "| set | samples | manifest sha256 | data sha256 |",
        "|---|---|---|---|",
    ]
    for name, data_sha in report.audit.data_sha256.items():
        lines.append(f"| {name} | {counts.get(name, '')} | `{report.provenance.sha256.get(f'manifest_{name}')}` | "
                     f"`{data_sha}` |")
    columns = {"before": report.metrics.before, "after": report.metrics.after}
    if report.reference_metrics:
        columns["reference"] = report.reference_metrics
    names = list(dict.fromkeys(name for metrics in columns.values() for name in metrics))
    lines += ["", "## Metrics", "", "| metric | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name in names:
        cells = [_cell(metrics.get(name)) for metrics in columns.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Requirements", "", "| requirement | passed | detail |", "|---|---|---|"]
    for row in report.verdict.requirements:
        lines.append(f"| `{row.requirement}` | {'yes' if row.passed else 'NO'} | {row.detail} |")
    lines += ["", "## Reproduce", "", "```", "orthograd " + " ".join(public_command_line(report.audit.command_line)),
              "```", "", f"Recipe sha256 `{report.provenance.sha256.get('recipe')}`, seed {report.provenance.seed}, "
              f"orthograd {report.provenance.orthograd_version}, torch {report.provenance.torch}, peft "
              f"{report.provenance.peft}. Definitions of every metric: the report.json beside this card.", ""]
    return "\n".join(lines)


def _cell(entry) -> str:
    return "–" if entry is None or entry.value is None else f"{entry.value:.4f}"
