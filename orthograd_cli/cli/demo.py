"""`orthograd demo`: run the main job on the embedded default, no arguments needed."""

from pathlib import Path
from enum import Enum
from typing import Annotated

import typer

from orthograd_cli.cli import options

EPILOG = """\
Examples:

  orthograd demo            # about a minute on 2 CPU cores; writes ./orthograd-demo/{class,sample}/

  orthograd demo asr        # speech: under 2 minutes the first time; needs espeak-ng; ./orthograd-demo/speaker/

  orthograd demo asr --model whisper   # the same with a tiny Whisper (a Hugging Face folder), about 2 minutes

  orthograd demo text       # language model: forget 4 of 40 made-up authors from a small Llama, about 70 s
"""


class Scenario(str, Enum):
    image = "image"
    asr = "asr"
    text = "text"


class SpeechModel(str, Enum):
    wav2vec2 = "wav2vec2"
    whisper = "whisper"


def demo(
    scenario: Annotated[Scenario, typer.Argument(help="image: forget a digit class and random samples; "
                                                  "asr: forget one speaker from a speech recogniser; "
                                                  "text: forget some people from a language model.")] = Scenario.image,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the two runs are written.")] = Path("orthograd-demo"),
    model: Annotated[SpeechModel, typer.Option("--model", help="asr: the recogniser to train and unlearn: a "
                                               "wav2vec2-style CTC model, or a tiny Whisper folder.")]
    = SpeechModel.wav2vec2,
    as_json: options.Json = False,
    quiet: options.Quiet = False,
) -> None:
    """Forget digit class 7, then a random 10 % of samples, from a resnet18 trained on real handwritten digits
    (or, with `asr`, one espeak-ng voice from a small wav2vec2 or Whisper speech recogniser; with `text`, what a
    small Llama learnt about 4 of 40 made-up authors)."""
    from orthograd_cli.cli.output import Output, exit_on_verdict, metrics_table
    from orthograd_cli.cli.progress import progress
    from orthograd_cli.errors import UsageError
    from orthograd_cli.jobs.demo import DEMO_CLASS, run_demo

    if scenario is not Scenario.asr and model is not SpeechModel.wav2vec2:
        raise UsageError("--model chooses the speech recogniser of the asr demo", "orthograd demo asr --model whisper")
    output = Output(as_json=as_json, quiet=quiet)
    if scenario is Scenario.text:
        from orthograd_cli.jobs.demo_text import run_demo_text

        output.info("orthograd demo text: question/answer pairs about 44 made-up authors, a 4-layer Llama trained on "
                    "40 of them (and one without the 4 to forget, as the reference); forgetting 4 authors")
        with progress(enabled=not quiet) as bar:
            report = run_demo_text(out, observer=bar)
        titles = {"authors": "forget everything about 4 of the 40 authors (sample-wise, down to the retrained model)"}
    elif scenario is Scenario.asr:
        from orthograd_cli.jobs.demo_asr import FORGET_VOICE, run_demo_asr

        recogniser = "2+2-layer Whisper" if model is SpeechModel.whisper else "3-layer wav2vec2 CTC model"
        output.info(f"orthograd demo asr: espeak-ng digit strings in 9 voices, {recogniser}; "
                    f"forgetting the voice {FORGET_VOICE}")
        with progress(enabled=not quiet) as bar:
            report = run_demo_asr(out, observer=bar, model=model.value)
        titles = {"speaker": f"forget the voice {FORGET_VOICE}"}
    else:
        output.info("orthograd demo: scikit-learn handwritten digits (1,797 real scans), resnet18 at 32 px")
        with progress(enabled=not quiet) as bar:
            report = run_demo(out, observer=bar)
        titles = {"class": f"forget every training image of digit {DEMO_CLASS} (class-wise)",
                  "sample": "forget a random 10 % of the training images (sample-wise)"}

    def human() -> None:
        for name, run in report.runs.items():
            columns = {"before": run.metrics.before, "after": run.metrics.after}
            if run.reference_metrics:
                columns["reference"] = run.reference_metrics
            output.table(metrics_table(f"{titles[name]}: {run.steps} steps, {run.stop_message}", columns))
            output.line(f"{name}: " + ("every requirement met" if run.verdict.passed else "requirements NOT met"))
        output.line(f"checkpoints and reports in {', '.join(str(out / name) for name in report.runs)}")

    output.result(report, human)
    for run in report.runs.values():  # a demo that does not work says so like any run
        exit_on_verdict(output, run.verdict)
