"""Where commands write, and the rules that keep every input safe.

1. An output path is never an input, never contains one and never lies inside one (paths resolved,
   symlinks followed): `check_not_an_input`.
2. Writability and free space are checked before any work: `check_writable`.
3. An output folder is claimed at the start (`claimed_folder`): a lock file beside it holds the
   run's host and pid, so a second orthograd run on it fails at once, and the folder is created empty. Overwrite
   replaces only a folder this tool made (it holds MARKER) and never one holding inputs, and nothing
   that another process wrote into the folder during the run. The results are written into a
   temporary folder beside and renamed into place at the end, so an interrupted or failed run leaves
   nothing at the output path (an interrupted run may leave its state in that temporary folder, for
   `--resume`: jobs/resume.py).
4. Single files are written to a temporary name beside and renamed (`models/checkpoint.atomic_path`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from orthograd_cli import __version__
from orthograd_cli.errors import OrthogradError, UsageError

MARKER = ".orthograd-output"  # in every output folder this tool made
SPARE_BYTES = 16 << 20  # reports, adapters and plots on top of the estimated checkpoint bytes


def check_not_an_input(out: str | Path, inputs: Iterable[str | Path], resolved: bool = False) -> None:
    """Refuse an output path that is an input, contains one, or lies inside one. `resolved`: the inputs
    are resolved already (a manifest's samples are), which saves a system call per file."""
    target = Path(out).resolve()
    for item in inputs:
        source = Path(item) if resolved else Path(item).resolve()
        if target == source or target in source.parents or source in target.parents:
            relation = "is" if target == source else "contains" if target in source.parents else "lies inside"
            raise UsageError(f"{out}: the output path {relation} an input ({item})",
                             "write the output somewhere outside the inputs")


def check_writable(out: str | Path, need_bytes: int = 0) -> None:
    """The output's nearest existing folder must be writable and have room for `need_bytes` more."""
    folder = Path(out).resolve().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{out}: cannot write there ({folder} is not a writable folder)",
                         "choose a writable output path")
    free = shutil.disk_usage(folder).free
    if free < need_bytes + SPARE_BYTES:
        raise UsageError(f"{out}: not enough free space ({free / 2**20:.0f} MiB free in {folder}, about "
                         f"{(need_bytes + SPARE_BYTES) / 2**20:.0f} MiB needed)", "free some space or write elsewhere")


def check_output_file(out: str | Path, inputs: Iterable[str | Path], need_bytes: int = 0) -> None:
    """All checks for a single output file (a merged checkpoint, a report, a plot)."""
    check_not_an_input(out, inputs)
    if Path(out).is_dir():
        raise UsageError(f"{out}: is a folder, not a file", "name the file to write")
    check_writable(out, need_bytes)


def with_umask(path: Path) -> Path:
    """Give a file or folder made by mkstemp/mkdtemp (only its owner may read them) the permissions any other new
    file gets under the user's umask, so that the outputs are as readable as the user's other files."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
    return path


def write_marker(folder: Path, command: str) -> None:
    (folder / MARKER).write_text(json.dumps({
        "tool": "orthograd", "version": __version__, "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}) + "\n")


def check_output_folder(out: str | Path, inputs: Iterable[str | Path] = (), overwrite: bool = False,
                        need_bytes: int = 0, samples: Iterable[Path] = ()) -> None:
    """Everything claimed_folder checks before it claims, without claiming: a launcher checks once for its ranks."""
    out = Path(out)
    check_not_an_input(out, inputs)
    check_not_an_input(out, samples, resolved=True)
    check_writable(out, need_bytes)
    lock = _lock_path(out)
    if lock.exists() and not _lock_is_stale(lock):
        raise _locked(out, lock)
    if out.exists():
        _check_replaceable(out, overwrite)


@contextlib.contextmanager
def claimed_folder(out: str | Path, command: str, inputs: Iterable[str | Path] = (), overwrite: bool = False,
                   need_bytes: int = 0, samples: Iterable[Path] = (), resume: Path | None = None,
                   resumable: Callable[[Path], bool] = lambda tmp: False) -> Iterator[Path]:
    """Claim `out`, yield a temporary folder to write the results into, and rename it into place when
    the block completes; on any error or interrupt, nothing is left at `out`. `inputs` are paths as
    given, `samples` the resolved files the manifests list. `resume`: an interrupted run's temporary folder to
    continue in (jobs/resume.py). A signal or a crash (not one of our errors, which say what to fix) keeps the
    temporary folder when `resumable(folder)` says it holds a state to resume from."""
    out = Path(out)
    check_output_folder(out, inputs, overwrite, need_bytes, samples)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out}: cannot create the output folder ({exc.strerror})",
                         "choose a writable output path") from None
    release_lock = _lock(out)
    try:
        existing = _claim(out, overwrite)
        tmp = resume or with_umask(Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent)))
        keep = False
        try:
            yield tmp
            write_marker(tmp, command)
            _commit(tmp, out, existing)
        except BaseException as exc:
            keep = not isinstance(exc, OrthogradError) and resumable(tmp)
            raise
        finally:
            if not keep:
                shutil.rmtree(tmp, ignore_errors=True)
            with contextlib.suppress(OSError):  # our claim, if nothing was committed into it
                out.rmdir()
    finally:
        release_lock()


def clear_except(folder: Path, keep: set[str]) -> None:
    """Remove everything in `folder` but the entries named in `keep` (a resumed run's temporary folder)."""
    for entry in folder.iterdir():
        if entry.name not in keep:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def _lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.orthograd-lock"


def _locked(out: Path, lock: Path) -> UsageError:
    return UsageError(f"{out}: another orthograd run is writing this output ({lock} exists)",
                      "wait for it, or choose another output folder")


def _lock(out: Path):
    """A lock file beside `out` naming our host and pid: a second orthograd run on the same output fails at once.
    It appears with its content (written to a temporary file, then hard-linked into place, which fails if the lock
    exists), so no run ever reads a half-written lock. A lock whose process is gone (killed with SIGKILL) is taken
    over. Returns how to release it."""
    lock = _lock_path(out)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.lock-", dir=out.parent)
    except OSError as exc:
        raise UsageError(f"{out}: cannot create the output folder ({exc.strerror})",
                         "choose a writable output path") from None
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"host": socket.gethostname(), "pid": os.getpid()}, handle)
        try:
            os.link(tmp, lock)
        except FileExistsError:
            if not _lock_is_stale(lock):
                raise _locked(out, lock) from None
            lock.unlink(missing_ok=True)
            os.link(tmp, lock)  # a run that took it over in between wins: this raises FileExistsError again
    except FileExistsError:
        raise _locked(out, lock) from None
    except OSError as exc:  # a file system without hard links
        raise UsageError(f"{out}: cannot create the lock file {lock.name} ({exc.strerror})",
                         "write the output on a local file system") from None
    finally:
        os.unlink(tmp)
    return lambda: lock.unlink(missing_ok=True)


def _lock_is_stale(lock: Path) -> bool:
    """A lock is stale when its process is gone on this host. A lock from another host (a shared file system) or
    one that cannot be read is held: nothing here can tell that its run is over."""
    try:
        owner = json.loads(lock.read_text())
        # a bare pid: the lock of an earlier orthograd version, written on this host
        host, pid = (socket.gethostname(), owner) if isinstance(owner, int) else (owner["host"], int(owner["pid"]))
    except FileNotFoundError:
        return True
    except (OSError, ValueError, TypeError, KeyError):
        return False
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _claim(out: Path, overwrite: bool) -> set[str] | None:
    """Make `out` ours: create it empty, or take an empty one as it is, or (overwrite) accept a folder this
    tool made. Returns the entries of a folder that will be replaced, None for an empty claim."""
    if not out.exists():
        out.mkdir()
        return None
    return _check_replaceable(out, overwrite) or None


def _check_replaceable(out: Path, overwrite: bool) -> set[str]:
    """The entries of an existing `out` that a run may replace (none: an empty folder); else a UsageError."""
    if not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder", "choose another output folder")
    entries = {p.name for p in out.iterdir()}
    if not entries:  # empty (a killed run's claim, or made by hand): nothing to lose
        return entries
    if not overwrite:
        raise UsageError(f"{out}: output folder exists", "overwrite it, or choose another output folder")
    if MARKER not in entries:
        raise UsageError(f"{out}: refusing to replace a folder that orthograd did not write (no {MARKER} in it)",
                         "choose another output folder, or remove it yourself")
    return entries


def _commit(tmp: Path, out: Path, replaced: set[str] | None) -> None:
    now = {p.name for p in out.iterdir()} if out.is_dir() else set()
    if now != (replaced or set()):  # someone else wrote there during the run: keep theirs, discard ours
        raise UsageError(f"{out}: another process wrote into the output folder during the run; nothing was "
                         "replaced and the results were discarded", "choose another output folder")
    if replaced:
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, trash / "old")
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)  # onto the empty folder claimed at the start
