"""`orthograd merge`: base checkpoint + LoRA adapter folder → merged checkpoint."""

from pathlib import Path
from typing import Annotated

import typer

from orthograd_cli.cli import options

EPILOG = """\
Example:

  orthograd merge model.safetensors run/adapter --out merged.safetensors
  orthograd merge wav2vec2_folder/ run/adapter --out merged_folder/    # a Hugging Face folder gives a folder
"""


def merge(
    base: Annotated[Path, typer.Argument(help="Base checkpoint (.safetensors or a Hugging Face model folder) the adapter was trained on.")],
    adapter: Annotated[Path, typer.Argument(help="Adapter folder written by `orthograd forget` (run/adapter).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Merged checkpoint to write (a folder when the base is a folder).")],
    arch: options.Arch = None,
    ignore_base_hash: Annotated[bool, typer.Option("--ignore-base-hash",
                                                   help="Merge even if the base differs from the recorded one.")] = False,
    as_json: options.Json = False,
    quiet: options.Quiet = False,
) -> None:
    """Fold the LoRA adapter into the base weights; keys, shapes and dtypes stay the base's."""
    from orthograd_cli.cli.output import Output
    from orthograd_cli.jobs.merge import run_merge

    output = Output(as_json=as_json, quiet=quiet)
    summary = run_merge(str(base), str(adapter), str(out), arch, ignore_base_hash)
    card = f", and its run's model card {summary.card}" if summary.card else ""
    output.result(summary, lambda: output.line(f"wrote {out} ({summary.tensors} tensors){card}"))
