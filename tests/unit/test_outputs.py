"""The output lock and the outputs' permissions (outputs.py): a lock is never read half-written or taken from a
live run, and what a run writes is as readable as any other file the user makes."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orthograd_cli.errors import UsageError
from orthograd_cli.outputs import claimed_folder


def lock_of(out: Path) -> Path:
    return out.parent / f".{out.name}.orthograd-lock"


def test_the_lock_names_this_host_and_process_while_the_run_holds_it(tmp_path):
    out = tmp_path / "run"
    with claimed_folder(out, "test"):
        assert json.loads(lock_of(out).read_text()) == {"host": socket.gethostname(), "pid": os.getpid()}
    assert not lock_of(out).exists()


@pytest.mark.parametrize("content", ["", "{\"host\": \"hal", json.dumps({"host": "another-host", "pid": 1})],
                         ids=["empty", "half-written", "another-host"])
def test_a_lock_that_cannot_be_shown_stale_is_held(tmp_path, content):
    """An empty or half-written lock is a run that is starting; a lock from another host a run elsewhere."""
    out = tmp_path / "run"
    lock_of(out).write_text(content)
    with pytest.raises(UsageError, match="another orthograd run is writing this output"):
        with claimed_folder(out, "test"):
            pass
    assert lock_of(out).read_text() == content and not out.exists()


def test_a_lock_whose_process_belongs_to_another_user_is_held(tmp_path, monkeypatch):
    """os.kill(pid, 0) raises PermissionError for a live process of another user: alive, not stale."""
    def kill(pid, signum):
        raise PermissionError(1, "Operation not permitted")

    out = tmp_path / "run"
    lock_of(out).write_text(json.dumps({"host": socket.gethostname(), "pid": 1}))
    monkeypatch.setattr(os, "kill", kill)
    with pytest.raises(UsageError, match="another orthograd run is writing this output"):
        with claimed_folder(out, "test"):
            pass


@pytest.mark.parametrize("content", ["{pid}", json.dumps({"host": socket.gethostname(), "pid": "{pid}"})],
                         ids=["bare-pid", "json"])
def test_the_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path, content):
    """A run killed with SIGKILL leaves its lock; the next run takes it (also an earlier version's bare pid)."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    out = tmp_path / "run"
    lock_of(out).write_text(content.replace("{pid}", dead).replace('"' + dead + '"', dead))
    with claimed_folder(out, "test") as folder:
        (folder / "result.txt").write_text("done")
    assert (out / "result.txt").read_text() == "done" and not lock_of(out).exists()


def test_outputs_follow_the_umask_like_any_other_new_file(class_run):
    """class_run was written by this process: every folder and file in it must carry the umask's permissions,
    not mkdtemp's 0700 or mkstemp's 0600."""
    mask = os.umask(0)
    os.umask(mask)
    paths = [class_run, *class_run.rglob("*")]
    assert any(p.name == "model.safetensors" for p in paths) and any(p.name == "adapter" for p in paths)
    for path in paths:
        expected = (0o777 if path.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(path.stat().st_mode) == expected, (path, oct(path.stat().st_mode))
