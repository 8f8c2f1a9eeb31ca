"""`orthograd compare`: every method (and seed) on the same checkpoint and data, one table sorted by UIS.

Each run is an ordinary `forget` run into OUT/<method>/seed<N>/. A failed run is recorded with its
reason and the others still run. With a sweep, each method's setting is first chosen on a validation
split (jobs/sweep.py), so every method gets the same tuning budget. The summary goes to
compare.json, compare.csv and compare.md, and compare.png plots UIS against test accuracy. The
table uses the field's names: UA = 1 − forget accuracy, RA = retain accuracy, TA = test accuracy.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

from orthograd_cli.errors import OrthogradError, UsageError
from orthograd_cli.models.checkpoint import atomic_path, write_text_atomic
from orthograd_cli.context import RunContext
from orthograd_cli.recipe import Recipe, parse_recipe
from orthograd_cli.outputs import claimed_folder
from orthograd_cli.jobs.proof import Proof
from orthograd_cli.report import CompareReport, CompareRow, CompareRun, MeanStd, Sweep, dump

COLUMNS = {  # summary column -> (what it reads from a run's metrics, label)
    "ua": (lambda m: 1 - m["forget_acc"].value if "forget_acc" in m else None, "UA"),
    "retain_acc": (lambda m: _value(m, "retain_acc"), "RA"),
    "test_acc": (lambda m: _value(m, "test_acc"), "TA"),
    "mia_efficacy": (lambda m: _value(m, "mia_efficacy"), "MIA-Eff"),
    "mia": (lambda m: _value(m, "mia_logreg_loss_cv"), "MIA (→0.5)"),
    "uis": (lambda m: _value(m, "uis"), "UIS"),
}


def _value(metrics: dict, name: str):
    return metrics[name].value if name in metrics else None


def check_methods(methods: list[str]) -> None:
    from orthograd_cli.methods import get_method

    for name in methods:
        try:
            get_method(name)
        except UsageError as err:
            raise UsageError(f"methods: {err}", err.hint) from None


def _mean_std(values: list[float]) -> MeanStd:
    """Mean, sample standard deviation and the 95 % Student-t interval of the mean over the seeds (one value:
    the mean alone; nothing to say about its spread)."""
    from scipy import stats

    values = [v for v in values if v is not None]
    if not values:
        return MeanStd(mean=None, std=None, n=0)
    mean = statistics.fmean(values)
    if len(values) == 1:
        return MeanStd(mean=mean, std=None, n=1)
    std = statistics.stdev(values)
    half = stats.t.ppf(0.975, len(values) - 1) * std / len(values) ** 0.5
    return MeanStd(mean=mean, std=std, n=len(values), ci95=(mean - half, mean + half))


def summarise(method: str, runs: list[CompareRun], chosen: dict | None = None) -> CompareRow:
    done = [r for r in runs if r.status != "failed"]  # ran: their numbers count, whether or not they passed
    failures = [r.reason for r in runs if r.status == "failed"]
    failures += [f"seed {r.seed}: " + "; ".join(row.requirement + " not met (" + row.detail + ")"
                                                for row in r.verdict.requirements if not row.passed)
                 for r in runs if r.status == "not_met"]
    return CompareRow(method=method, runs=len(runs), failed=len(runs) - len(done),
                      passed=sum(r.status == "ok" for r in runs), failures=failures, chosen=chosen or {},
                      **{column: _mean_std([read(r.metrics) for r in done]) for column, (read, _) in COLUMNS.items()},
                      steps=_mean_std([r.steps for r in done]), wall_s=_mean_std([r.wall_s for r in done]))


def run_compare(model_path: str, manifests: dict, recipe: Recipe, methods: list[str], seeds: int,
                out_dir: str, overwrite: bool = False, arch: str | None = None, observer=None,
                on_run=None, sweep: dict[str, list] | None = None, select: str = "uis",
                proof: Proof | None = None, resume: bool = False) -> CompareReport:
    """Every method × seed into OUT/<method>/seed<N>/ and the summary beside them; with `sweep` ({recipe key:
    values}), each method's setting chosen first on a validation split. The folder appears only when at
    least one run ran; when none did, CompareFailed carries the report (nothing is written). `proof`: each
    run's requirements and the reference model (scored once for all runs); a method passes when every one of
    its runs meets every requirement. `resume`: continue the interrupted comparison beside `out_dir`: its finished
    runs are kept, the interrupted one resumes, the rest run."""
    from orthograd_cli.jobs import resume as resuming
    from orthograd_cli.jobs import sweep as sweeping
    from orthograd_cli.jobs.forget import check_recipe_fits_task, forget_into, output_bytes
    from orthograd_cli.loading import load_everything

    if not methods:
        raise UsageError("methods: no method given", "name one or more, e.g. orthograd,neggrad_plus")
    check_methods(methods)
    saved = resuming.find_resumable(out_dir, "compare", resume)
    proof = proof or Proof.of(recipe, None, "compare")
    loaded = load_everything(model_path, recipe, manifests, arch)  # validated and decoded once for every run
    recipe = loaded.recipe  # with the checkpoint's recorded preprocessing
    proof.check_task(loaded, original=True)
    reference = proof.reference(recipe, arch)
    context = RunContext.of(recipe)  # one process; each run derives its own from it
    specs = {method: with_method(recipe, method) for method in methods}
    for spec in specs.values():
        check_recipe_fits_task(spec, loaded.task)
    out = Path(out_dir)
    inputs = [*loaded.input_paths, *([reference[0].path] if reference else [])]
    with claimed_folder(out, "compare", inputs, overwrite, output_bytes(loaded) * len(methods) * seeds,
                        loaded.sample_paths, resume=saved,
                        resumable=lambda folder: (folder / resuming.COMPARE_STATE).is_file()) as folder:
        same_run = {**resuming.fingerprint(loaded, recipe, 1, reference[0].sha256 if reference else None),
                    "methods": methods, "seeds": seeds, "sweep": sweep, "select": select}
        if saved is not None:
            resuming.check_same_run(resuming.read_compare_state(folder), same_run, folder)
        else:
            resuming.write_compare_state(folder, same_run)
        sweep_report, chosen = None, {}
        if sweep:
            target = real_target(loaded, recipe, proof)
            tried = sweeping.choose(loaded, context, methods, sweep, select, target, observer)
            for method, candidates in tried.items():
                best = candidates[0]
                if best.score is None:
                    raise UsageError(f"sweep: no candidate setting of '{method}' ran", candidates[0].reason)
                chosen[method] = best.setting
                specs[method] = sweeping.with_setting(specs[method], best.setting)
            sweep_report = Sweep(grid=sweep, select=select, target_forget_acc=target, candidates=tried,
                                 validation=f"retain split {1 - sweeping.VALIDATION_SHARE:.0%} / "
                                            f"{sweeping.VALIDATION_SHARE:.0%} (retain_fit / retain_val), seed "
                                            f"{recipe.seed}; the forget set whole")
        rows, runs, failures, reference_metrics = [], {}, [], None
        for method in methods:
            runs[method] = []
            for seed in range(recipe.seed, recipe.seed + seeds):
                spec = specs[method].model_copy(deep=True)
                spec.seed = seed
                run_dir = Path(method) / f"seed{seed}"
                try:
                    finished, interrupted = prepare_run_folder(folder / run_dir)
                    if finished is not None:  # a resumed comparison keeps what an earlier try finished
                        report = finished
                    else:
                        if observer is not None:
                            observer.run(f"{method} seed {seed}")
                        restored = resuming.read_saved(folder / run_dir, resuming.fingerprint(
                            loaded, spec, 1, reference[0].sha256 if reference else None)) if interrupted else None
                        report = forget_into(loaded, context.derive(spec), folder / run_dir, out / run_dir, observer,
                                             proof, restored)
                    reference_metrics = report.reference_metrics
                    run = CompareRun(status="ok" if report.verdict.passed else "not_met", seed=seed,
                                     steps=report.steps, wall_s=report.wall_s, stop_reason=report.stop_reason,
                                     metrics=report.metrics.after, verdict=report.verdict,
                                     report=str(out / run_dir / "report.json"))
                except OrthogradError as err:
                    failures.append(err)
                    run = CompareRun(status="failed", seed=seed,
                                     reason=str(err) + (f" (hint: {err.hint})" if err.hint else ""))
                except Exception as err:  # noqa: BLE001 - one broken method must not stop the comparison
                    failures.append(err)
                    run = CompareRun(status="failed", seed=seed, reason=f"{type(err).__name__}: {err}")
                runs[method].append(run)
                if on_run:
                    on_run(method, seed, run)
            rows.append(summarise(method, runs[method], chosen.get(method)))
        rows.sort(key=lambda r: (r.passed < r.runs, r.uis.mean is None, r.uis.mean if r.uis.mean is not None else 0))
        report = CompareReport(model=str(model_path), mode=recipe.eval.mode, seeds=seeds, methods=methods,
                               summary=rows, runs=runs, recipe=recipe.model_dump(mode="json"),
                               recipe_sha256=context.recipe_sha256, sweep=sweep_report,
                               reference=proof.reference_path, reference_metrics=reference_metrics,
                               requirements=proof.gate.texts,
                               passing_methods=[row.method for row in rows if row.passed == row.runs])
        if len(failures) == len(methods) * seeds:
            raise CompareFailed(report, failures)
        (folder / resuming.COMPARE_STATE).unlink()  # finished: nothing to resume
        write_outputs(report, folder)
    return report


def prepare_run_folder(run_folder: Path):
    """(the run's report if it finished in an earlier try, whether an interrupted try left its state there); the
    folder is made ready for the run: emptied but for that state, or made."""
    import shutil

    from orthograd_cli.jobs.resume import STATE_FILE
    from orthograd_cli.outputs import clear_except
    from orthograd_cli.report import ForgetReport

    if (run_folder / "report.json").is_file():
        return ForgetReport.model_validate_json((run_folder / "report.json").read_text()), False
    interrupted = (run_folder / STATE_FILE).is_file()
    if interrupted:
        clear_except(run_folder, {STATE_FILE})
    else:
        shutil.rmtree(run_folder, ignore_errors=True)
        run_folder.mkdir(parents=True)
    return None, interrupted


class CompareFailed(OrthogradError):
    """No run of a comparison succeeded: nothing is written; the report says why each failed."""

    def __init__(self, report: CompareReport, failures: list[Exception]):
        super().__init__(f"all {len(failures)} runs failed, nothing was written; the first: {failures[0]}",
                         getattr(failures[0], "hint", None) or "see each run's reason with --json")
        self.report = report
        # the first failure's own code (2 recipe/manifest, 3 checkpoint, 4 numerical), 1 for a bug
        self.exit_code = getattr(failures[0], "exit_code", 1)


def real_target(loaded, recipe: Recipe, proof: Proof) -> float:
    """The forget-accuracy target of the real runs (one number, from the original model or the reference), which
    every sweep candidate stops at too."""
    from orthograd_cli.methods.stop import stop_target
    from orthograd_cli.metrics.evaluation import measure
    from orthograd_cli.runtime import Runtime

    device = Runtime.from_recipe(recipe).device
    unseen = {name: loaded.sets[name] for name in ("forget_test", "test") if name in loaded.sets}
    needed = recipe.method.stop.target_forget_acc is None and recipe.eval.mode == "sample"
    before = measure(loaded.build_model(device), unseen, recipe.eval.batch_size, device, loaded.task) if needed else {}
    reference = proof.reference_results(loaded, device) if needed else None
    return stop_target(recipe.method.stop, recipe.eval.mode, before, reference)[0]


def with_method(recipe: Recipe, method: str) -> Recipe:
    """The recipe with another method selected (its own settings, if the recipe gives them, come along). A
    recipe's α goes to the methods that have one; each run's report shows the recipe it ran."""
    from orthograd_cli.methods import METHODS

    data = recipe.model_dump(mode="json")
    data["method"]["name"] = method
    if METHODS[method].default_alpha is None:
        data["method"]["alpha"] = None
    return parse_recipe(data, f"the recipe with method.name={method}")


def fmt(cell: MeanStd, digits: int = 4) -> str:
    """mean ± sample std over the seeds; one seed: the mean alone."""
    if cell.mean is None:
        return "–"
    if cell.std is None:
        return f"{cell.mean:.{digits}f}"
    return f"{cell.mean:.{digits}f} ± {cell.std:.{digits}f}"


def table_rows(report: CompareReport) -> tuple[list[str], list[list[str]]]:
    swept = report.sweep is not None
    header = ["method", "passed"] + [label for _, label in COLUMNS.values()] + ["steps", "run time s"]
    header += ["chosen setting"] if swept else []
    body = []
    for row in report.summary:
        cells = [row.method, f"{row.passed}/{row.runs}"] + [fmt(getattr(row, c)) for c in COLUMNS]
        cells += [fmt(row.steps, 1), fmt(row.wall_s, 1)]
        cells += [", ".join(f"{k}={v}" for k, v in row.chosen.items())] if swept else []
        body.append(cells)
    return header, body


def write_outputs(report: CompareReport, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "compare.json", json.dumps(dump(report), indent=2) + "\n")
    header, body = table_rows(report)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = [*COLUMNS, "steps", "wall_s"]
    stats = ("mean", "std", "ci95_low", "ci95_high")
    writer.writerow(["method", "runs", "failed", "passed"] + [f"{c}_{s}" for c in columns for s in stats])
    for row in report.summary:
        cells = [getattr(row, c) for c in columns]
        writer.writerow([row.method, row.runs, row.failed, row.passed]
                        + [v for cell in cells for v in (cell.mean, cell.std, *(cell.ci95 or (None, None)))])
    write_text_atomic(out / "compare.csv", buffer.getvalue())
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    write_text_atomic(out / "compare.md", "\n".join(lines) + "\n")
    scatter_plot(report, out / "compare.png")


def scatter_plot(report: CompareReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for row in report.summary:
        uis, test = row.uis, row.test_acc
        if uis.mean is None or test.mean is None:
            continue
        axes.errorbar(uis.mean, test.mean, xerr=uis.std, yerr=test.std, fmt="o", capsize=3)
        axes.annotate(row.method, (uis.mean, test.mean), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axes.set_xlabel("UIS (lower is better)")
    axes.set_ylabel("test accuracy after unlearning")
    axes.set_title(f"{report.mode}-wise unlearning, mean ± std over {report.seeds} seed(s)", fontsize=9)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)
