"""`orthograd demo`: run the main job on the embedded default, no arguments needed."""

from pathlib import Path
from typing import Annotated

import typer

from orthograd_cli.cli import options

EPILOG = """\
Example:

  orthograd demo            # about a minute on 2 CPU cores; writes ./orthograd-demo/{class,sample}/
"""


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the two runs are written.")] = Path("orthograd-demo"),
    as_json: options.Json = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Forget digit class 7, then a random 10 % of samples, from a resnet18 trained on real handwritten digits."""
    from orthograd_cli.cli.output import Output, metrics_table
    from orthograd_cli.jobs.demo import DEMO_CLASS, run_demo

    output = Output(as_json=as_json, quiet=quiet)
    output.info("orthograd demo: scikit-learn handwritten digits (1,797 real scans), resnet18 at 32 px")
    report = run_demo(out, progress=not quiet)

    def human() -> None:
        titles = {"class": f"forget every training image of digit {DEMO_CLASS} (class-wise)",
                  "sample": "forget a random 10 % of the training images (sample-wise)"}
        for mode, run in report["runs"].items():
            output.table(metrics_table(f"{titles[mode]}: {run['steps']} steps, {run['stop_reason']}",
                                       {"before": run["metrics"]["before"], "after": run["metrics"]["after"]}))
        print(f"checkpoints and reports in {out}/class and {out}/sample")

    output.result(report, human)
