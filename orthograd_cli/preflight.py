"""Checks that need no model, run before torch is imported: a mistake in a path, the output folder or the
recipe costs a fraction of a second, not a model load. The real run checks all of it again, in full."""

from __future__ import annotations

from pathlib import Path

from orthograd_cli.errors import CheckpointError, ManifestError


def preflight(model: str | Path, manifests: dict, out: str | Path | None = None, overwrite: bool = False) -> None:
    """The model path, every manifest and every file it lists exist, and the output folder may be written."""
    from orthograd_cli.outputs import check_output_folder

    model = Path(model)
    if not model.exists():
        raise CheckpointError(f"{model}: no such checkpoint file", "pass the path of a .safetensors file or of a "
                              "Hugging Face model folder")
    given = {name: Path(path) for name, path in manifests.items() if path is not None}
    for path in given.values():
        if not path.is_file():
            raise ManifestError(f"{path}: cannot read manifest (no such file)", "check the path")
    for path in given.values():  # and the files they list
        from orthograd_cli.data.manifest import check_files_exist

        check_files_exist(path)
    if out is not None:
        out = Path(out)
        if out.is_dir() and any(out.iterdir()):  # an output over the samples says so, not just "exists"
            from orthograd_cli.data.manifest import listed_paths
            from orthograd_cli.outputs import check_not_an_input

            check_not_an_input(out, [p for path in given.values() for p in listed_paths(path)], resolved=True)
        check_output_folder(out, [model, *given.values()], overwrite)

