"""`--resume`: where an interrupted run keeps its state, when it writes it, and what must match to go on.

A run computes in a temporary folder beside its output (outputs.claimed_folder). While `forget` steps, the
loop's state (methods/state.py) is written there as STATE_FILE, atomically, every
`run.checkpoint_every_steps` steps, at least every `run.checkpoint_every_minutes`, and on SIGINT/SIGTERM.
A run that ends by a signal or a crash keeps that folder; one that finishes, or fails on its own terms
(a numerical error, a user mistake), removes it. `--resume` finds the folder again, checks that the run
is the same one (its fingerprint: every input's sha256, the recipe's sha256 without keys that only say how
a run executes, the tool version and the number of processes) and continues in it. `compare` keeps one
state per run in its own temporary folder, beside the runs that already finished.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from orthograd_cli import __version__
from orthograd_cli.errors import UsageError

STATE_FILE = ".orthograd-state.safetensors"  # a forget run's state, in its temporary folder
COMPARE_STATE = ".orthograd-compare.json"  # a compare's fingerprint, in its temporary folder
FAULT = "ORTHOGRAD_FAULT"  # tests: `kill-in-state-write:N` SIGKILLs the run inside its N-th state write

WHAT = {"version": "the tool version", "world_size": "the number of processes", "recipe_sha256": "the recipe",
        "checkpoint_sha256": "the checkpoint", "reference_sha256": "the --reference model",
        "methods": "the methods", "seeds": "the number of seeds", "sweep": "the sweep"}


def fingerprint(loaded, recipe, world_size: int, reference_sha256: str | None) -> dict:
    """What a resumed run must share with the interrupted one for the steps to continue the same way."""
    from orthograd_cli.recipe import recipe_sha256

    return {"version": __version__, "world_size": world_size, "recipe_sha256": recipe_sha256(recipe),
            "checkpoint_sha256": loaded.checkpoint.sha256, "reference_sha256": reference_sha256,
            **{f"manifest_{name}": manifest.sha256 for name, manifest in loaded.manifests.items()},
            **{f"data_{name}": digest for name, digest in loaded.data_sha256.items()}}


def check_same_run(saved: dict, now: dict, where: Path) -> None:
    """Refuse to resume when anything that decides the steps differs from the interrupted run's."""
    differ = sorted(key for key in {*saved, *now} if saved.get(key) != now.get(key))
    if not differ:
        return
    names = []
    for key in differ:
        name = WHAT.get(key) or (f"the {key.removeprefix('manifest_')} manifest" if key.startswith("manifest_")
                                 else f"the files the {key.removeprefix('data_')} manifest lists")
        if key in ("version", "world_size"):
            name += f" ({saved.get(key)} then, {now.get(key)} now)"
        if name not in names:
            names.append(name)
    verb = "differs" if len(names) == 1 else "differ"
    raise UsageError(f"cannot resume the run in {where}: {', '.join(names)} {verb} from the interrupted run's",
                     f"resume with the same command and inputs, or remove {where} to start over")


def saved_runs(out: str | Path, state_file: str) -> list[Path]:
    """The temporary folders of interrupted runs beside `out` that hold `state_file`, newest last."""
    out = Path(out)
    if not out.parent.is_dir():
        return []
    found = [p for p in out.parent.glob(f".{out.name}.tmp-*") if (p / state_file).is_file()]
    return sorted(found, key=lambda p: (p / state_file).stat().st_mtime)


def find_resumable(out: str | Path, command: str, resume: bool) -> Path | None:
    """The folder a `--resume` run continues in, or None for a fresh run; refuses `--resume` with nothing to resume
    and a fresh run over an interrupted one's state (which it would otherwise throw away). Needs no model."""
    from orthograd_cli.outputs import MARKER

    out = Path(out)
    found = saved_runs(out, STATE_FILE if command == "forget" else COMPARE_STATE)
    if resume and not found:
        finished = (out / MARKER).is_file()
        why = "the run there finished" if finished else f"no interrupted `orthograd {command}` left its state beside it"
        raise UsageError(f"{out}: nothing to resume ({why})", "run it without --resume")
    if not resume and found:
        raise UsageError(f"{out}: an interrupted run left its state in {found[-1]}",
                         f"add --resume to continue it, or remove {found[-1]} to start over")
    return found[-1] if found else None


def read_saved(folder: Path, expected: dict):
    """The loop state an interrupted run left in `folder`, once its fingerprint is seen to be `expected`."""
    from orthograd_cli.methods.state import read_state

    try:
        state, saved = read_state(folder / STATE_FILE)
    except Exception as err:  # noqa: BLE001 - a state this version cannot read is the user's to remove
        raise UsageError(f"{folder / STATE_FILE}: cannot read the saved state ({err})",
                         f"remove {folder} to start over") from None
    check_same_run(saved, expected, folder)
    return state


class Checkpointer:
    """Writes a run's state into `folder` (only when `writes`: rank 0 of several processes) and holds the state a
    resumed run starts from (`restored`, read and checked by read_saved; None: a fresh run)."""

    def __init__(self, folder: Path, fingerprint: dict, run_spec, writes: bool = True, restored=None):
        self.path = Path(folder) / STATE_FILE
        self.fingerprint, self.writes, self.restored = fingerprint, writes, restored
        self.every_steps, self.every_s = run_spec.checkpoint_every_steps, run_spec.checkpoint_every_minutes * 60
        self.last_step = restored.step if restored else 0
        self.last_time = time.monotonic()
        self.fault = _fault()

    def due(self, step: int) -> bool:
        return step - self.last_step >= self.every_steps or time.monotonic() - self.last_time >= self.every_s

    def save(self, state) -> None:
        from orthograd_cli.methods.state import write_state
        from orthograd_cli.models.checkpoint import atomic_path

        self.last_step, self.last_time = state.step, time.monotonic()
        if not self.writes:
            return
        global _writes
        _writes += 1
        with atomic_path(self.path) as tmp:
            write_state(tmp, state, self.fingerprint)
            if self.fault == ("kill-in-state-write", _writes):
                os.kill(os.getpid(), signal.SIGKILL)

    def discard(self) -> None:
        """The run finished: its state goes (the folder becomes the output)."""
        if self.writes:
            self.path.unlink(missing_ok=True)


def write_compare_state(folder: Path, fingerprint: dict) -> None:
    (folder / COMPARE_STATE).write_text(json.dumps(fingerprint, sort_keys=True) + "\n")


def read_compare_state(folder: Path) -> dict:
    return json.loads((folder / COMPARE_STATE).read_text())


_writes = 0  # state writes in this process (a compare's runs count on): what ORTHOGRAD_FAULT counts


def _fault() -> tuple[str, int] | None:
    kind, _, count = os.environ.get(FAULT, "").partition(":")
    return (kind, int(count)) if kind and count.isdigit() else None
