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
