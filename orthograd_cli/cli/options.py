"""Options shared by several commands, declared once."""

from typing import Annotated, Optional

import typer

Recipe = Annotated[Optional[str], typer.Option("--recipe", "-r", help="Recipe YAML file or shipped recipe name.")]
Set = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a recipe key: a.b=value (repeatable).")]
Arch = Annotated[Optional[str], typer.Option("--arch", help="Architecture (torchvision/torchaudio builder name); beats metadata.")]
Json = Annotated[bool, typer.Option("--json", help="Print only the JSON report to stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
Forget = Annotated[Optional[str], typer.Option("--forget", "-f", help="CSV manifest of the samples to forget.")]
Retain = Annotated[Optional[str], typer.Option("--retain", help="CSV manifest of a small slice of training data to keep.")]
Test = Annotated[Optional[str], typer.Option("--test", "-t", help="CSV manifest of held-out test samples.")]
ForgetTest = Annotated[Optional[str], typer.Option(
    "--forget-test", help="CSV manifest of the forgotten group's unseen samples (e.g. the speaker's test recordings).")]
