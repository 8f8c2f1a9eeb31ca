"""`orthograd compare`: every method (and seed) on the same checkpoint and data, one table sorted by UIS.

Each run is an ordinary `forget` run into OUT/<method>/seed<N>/. A failed run is recorded with its
reason and the others still run. The summary goes to compare.json, compare.csv and compare.md, and
compare.png plots UIS against test accuracy.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

from orthograd_cli.errors import OrthogradError, UsageError, did_you_mean
from orthograd_cli.models.checkpoint import atomic_path, write_text_atomic
from orthograd_cli.recipe import Recipe

COLUMNS = {  # summary column -> (source in a run report, label)
    "forget_acc": ("forget_acc", "forget acc"),
    "test_acc": ("test_acc", "test acc"),
    "retain_acc": ("retain_acc", "retain acc"),
    "mia": ("mia_logreg_loss_cv", "MIA"),
    "uis": ("uis", "UIS"),
}


def check_methods(methods: list[str]) -> None:
    from orthograd_cli.methods import METHODS

    for name in methods:
        if name not in METHODS:
            raise UsageError(f"--methods: unknown method '{name}'",
                             did_you_mean(name, METHODS) or f"choose from {', '.join(METHODS)}")


def _mean_std(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def summarise(method: str, runs: list[dict]) -> dict:
    done = [r for r in runs if r["status"] == "ok"]
    row = {"method": method, "runs": len(runs), "failed": len(runs) - len(done),
           "failures": [r["reason"] for r in runs if r["status"] != "ok"]}
    for column, (source, _) in COLUMNS.items():
        row[column] = _mean_std([r["metrics"].get(source, {}).get("value") for r in done])
    row["steps"] = _mean_std([r["steps"] for r in done])
    row["wall_s"] = _mean_std([r["wall_s"] for r in done])
    return row


def run_compare(model_path: str, manifests: dict, recipe: Recipe, recipe_sha256: str, methods: list[str], seeds: int,
                out_dir: str, overwrite: bool = False, arch: str | None = None, progress: bool = True,
                on_run=None) -> dict:
    from orthograd_cli.jobs.forget import forget_loaded
    from orthograd_cli.loading import load_everything
    from orthograd_cli.methods import check_method_fits_task

    check_methods(methods)
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise UsageError(f"{out}: output folder exists", "pass --overwrite or choose another --out")
    loaded = load_everything(model_path, recipe, manifests, arch)  # validated and decoded once for every run
    for method in methods:
        check_method_fits_task(method, loaded.info.task)
    rows, runs = [], {}
    for method in methods:
        runs[method] = []
        for seed in range(recipe.seed, recipe.seed + seeds):
            spec = recipe.model_copy(deep=True)
            spec.method.name, spec.seed = method, seed
            run_dir = out / method / f"seed{seed}"
            try:
                report = forget_loaded(loaded, spec, recipe_sha256, str(run_dir), overwrite=True, progress=progress)
                runs[method].append({"status": "ok", "seed": seed, "steps": report["steps"],
                                     "wall_s": report["wall_s"], "stop_reason": report["stop_reason"],
                                     "metrics": report["metrics"]["after"], "report": str(run_dir / "report.json")})
            except OrthogradError as err:
                reason = str(err) + (f" (hint: {err.hint})" if err.hint else "")
                runs[method].append({"status": "failed", "seed": seed, "reason": reason})
            except Exception as err:  # noqa: BLE001 - one broken method must not stop the comparison
                runs[method].append({"status": "failed", "seed": seed, "reason": f"{type(err).__name__}: {err}"})
            if on_run:
                on_run(method, seed, runs[method][-1])
        rows.append(summarise(method, runs[method]))
    rows.sort(key=lambda r: (r["uis"]["mean"] is None, r["uis"]["mean"] if r["uis"]["mean"] is not None else 0))
    report = {"command": "compare", "model": str(model_path), "mode": recipe.eval.mode, "seeds": seeds,
              "methods": methods, "summary": rows, "runs": runs, "recipe": recipe.model_dump(mode="json"),
              "recipe_sha256": recipe_sha256}
    write_outputs(report, out)
    return report


def fmt(cell: dict, digits: int = 4) -> str:
    if cell["mean"] is None:
        return "–"
    return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    header = ["method", "runs ok"] + [label for _, label in COLUMNS.values()] + ["steps", "wall s"]
    body = []
    for row in report["summary"]:
        body.append([row["method"], f"{row['runs'] - row['failed']}/{row['runs']}"]
                    + [fmt(row[c]) for c in COLUMNS] + [fmt(row["steps"], 1), fmt(row["wall_s"], 1)])
    return header, body


def write_outputs(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "compare.json", json.dumps(report, indent=2) + "\n")
    header, body = table_rows(report)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", "runs", "failed"] + [f"{c}_{s}" for c in [*COLUMNS, "steps", "wall_s"]
                                                    for s in ("mean", "std")])
    for row in report["summary"]:
        writer.writerow([row["method"], row["runs"], row["failed"]]
                        + [row[c][s] for c in [*COLUMNS, "steps", "wall_s"] for s in ("mean", "std")])
    write_text_atomic(out / "compare.csv", buffer.getvalue())
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    write_text_atomic(out / "compare.md", "\n".join(lines) + "\n")
    scatter_plot(report, out / "compare.png")


def scatter_plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for row in report["summary"]:
        uis, test = row["uis"], row["test_acc"]
        if uis["mean"] is None or test["mean"] is None:
            continue
        axes.errorbar(uis["mean"], test["mean"], xerr=uis["std"], yerr=test["std"], fmt="o", capsize=3)
        axes.annotate(row["method"], (uis["mean"], test["mean"]), textcoords="offset points", xytext=(5, 5),
                      fontsize=8)
    axes.set_xlabel("UIS (lower is better)")
    axes.set_ylabel("test accuracy after unlearning")
    axes.set_title(f"{report['mode']}-wise unlearning, mean ± std over {report['seeds']} seed(s)", fontsize=9)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)
