"""PNG figures for reports (matplotlib, headless), written atomically."""

from __future__ import annotations

from pathlib import Path

from orthograd_cli.models.checkpoint import atomic_path


def tradeoff_plot(report: dict, path: Path) -> None:
    """The run's trade-off: at each stop-rule check, forgetting (x) against what is kept (y).

    Speech plots WER, images accuracy. Forgetting is measured on the held-out forget data when
    there is some (--forget-test, else the forget hold-out), else on the forget set itself.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = report["history"]
    unit = "wer" if any(key.endswith("_wer") for key in history[0]) else "acc"
    forget_key = next((f"{name}_{unit}" for name in ("forget_test", "forget") if f"{name}_{unit}" in history[0]))
    kept_key = f"test_{unit}" if f"test_{unit}" in history[0] else None
    label = {"wer": "WER", "acc": "accuracy"}[unit]
    figure, axes = plt.subplots(figsize=(6, 4))
    xs = [row[forget_key] for row in history]
    if kept_key:
        ys = [row[kept_key] for row in history]
        axes.plot(xs, ys, "o-", markersize=3)
        for row, x, y in zip(history, xs, ys):
            if row is history[0] or row is history[-1]:
                axes.annotate(f"step {row['step']}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        axes.set_ylabel(f"test {label} (others)")
    else:
        axes.plot([row["step"] for row in history], xs, "o-", markersize=3)
        axes.set_ylabel("step")
    axes.set_xlabel(f"{forget_key.rsplit('_', 1)[0].replace('_', ' ')} {label}")
    axes.set_title(f"{report['method']}: {report['steps']} steps, {report['stop_reason']}", fontsize=9)
    figure.tight_layout()
    with atomic_path(Path(path)) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)
