"""Options shared by several commands, declared once."""

from typing import Annotated, Optional

import typer
import typer.core

Recipe = Annotated[Optional[str], typer.Option("--recipe", "-r", help="Recipe YAML file or shipped recipe name.")]
Set = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a recipe key: a.b=value (repeatable).")]
Arch = Annotated[Optional[str], typer.Option("--arch", help="Architecture (torchvision/torchaudio builder name); beats metadata.")]
Json = Annotated[bool, typer.Option("--json", help="Print only the JSON report to stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or notes on stderr.")]
Forget = Annotated[Optional[str], typer.Option("--forget", "-f", help="CSV manifest of the samples to forget.")]
Retain = Annotated[Optional[str], typer.Option("--retain", help="CSV manifest of a small slice of training data to keep.")]
Test = Annotated[Optional[str], typer.Option("--test", "-t", help="CSV manifest of held-out test samples.")]
Require = Annotated[Optional[list[str]], typer.Option(
    "--require", help="A requirement the output must meet, e.g. 'forget_acc<=0.05', "
                      "'test_acc>=original_test_acc-0.02', 'forget_loss_ks.p>=0.05' (repeatable); exit 5 when one "
                      "fails. Built-in: target_reached, not_at_chance, test_kept; drop one with "
                      "'!target_reached'.")]
Reference = Annotated[Optional[str], typer.Option(
    "--reference", help="A model retrained without the forget data (same architecture): adds the metrics that "
                        "compare with it (forget_loss_ks, forget_loss_emd, privleak, tow, avg_gap).")]
LogFormat = Annotated[str, typer.Option(
    "--log-format", help="Progress on stderr: auto (a bar on a terminal, a plain line per check otherwise), plain, "
                         "or jsonl (one JSON object per line: start, check, end, note, warning, error).")]
MaxMinutes = Annotated[Optional[float], typer.Option(
    "--max-minutes", min=0.001, help="A time budget per run: end at the first check after it and report what was "
                                     "reached (stop reason time_budget). Same as --set method.stop.max_minutes=M.")]
DryRun = Annotated[bool, typer.Option(
    "--dry-run", help="Check every input as the run would (manifests, files, recipe, --require, the checkpoint's "
                      "header and shapes, without reading its weights), print the plan (sets, trainable parameters, "
                      "LoRA targets, batches, per-sample backend, step bound, peak-memory estimate) and exit 0; "
                      "nothing is written.")]
Probe = Annotated[int, typer.Option(
    "--probe", min=0, help="With --dry-run: also time N real steps on the real weights (nothing is written).")]
Resume = Annotated[bool, typer.Option(
    "--resume", help="Continue the interrupted run of this same command (its state lies beside --out, kept after "
                     "SIGTERM, Ctrl-C, SIGKILL or a crash); the result is the one an uninterrupted run writes.")]
ForgetTest = Annotated[Optional[str], typer.Option(
    "--forget-test", help="CSV manifest of the forgotten group's unseen samples (e.g. the speaker's test recordings).")]


def with_methods(epilog: str):
    """A command class whose epilog lists the registered methods, read from the registry only when the
    command's own --help is shown (so `orthograd --help` stays instant)."""

    class Command(typer.core.TyperCommand):
        def format_epilog(self, ctx, formatter) -> None:
            from orthograd_cli.methods import help_list

            self.epilog = epilog.replace("{methods}", help_list())
            super().format_epilog(ctx, formatter)

    return Command
