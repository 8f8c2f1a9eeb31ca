"""PNG figures for reports (matplotlib, headless), written atomically."""

from __future__ import annotations

from pathlib import Path

from orthograd_cli.models.checkpoint import atomic_path


def tradeoff_plot(report, path: Path) -> None:
    """The run's trade-off (a ForgetReport): at each stop-rule check, forgetting (x) against what is kept (y).

    The task names the metric (speech: WER, images: accuracy). Forgetting is measured on the held-out
    forget data when there is some (--forget-test, else the forget hold-out), else on the forget set
    itself. Without a test set, forgetting is drawn against the step.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from orthograd_cli.tasks import get_task

    unit, label = get_task(report.task).plot_metric
    history = report.history
    forget_key = next(f"{name}_{unit}" for name in ("forget_test", "forget_holdout", "forget") if f"{name}_{unit}" in history[0])
    forget_label = f"{forget_key.rsplit('_', 1)[0].replace('_', ' ')} {label}"
    figure, axes = plt.subplots(figsize=(6, 4))
    forgetting = [row[forget_key] for row in history]
    if f"test_{unit}" in history[0]:
        kept = [row[f"test_{unit}"] for row in history]
        axes.plot(forgetting, kept, "o-", markersize=3)
        for row, x, y in zip(history, forgetting, kept):
            if row is history[0] or row is history[-1]:
                axes.annotate(f"step {row['step']}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        axes.set_xlabel(forget_label)
        axes.set_ylabel(f"test {label} (others)")
    else:
        axes.plot([row["step"] for row in history], forgetting, "o-", markersize=3)
        axes.set_xlabel("step")
        axes.set_ylabel(forget_label)
    axes.set_title(f"{report.method}: {report.steps} steps, {report.stop_message}", fontsize=9)
    figure.tight_layout()
    with atomic_path(Path(path)) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)
