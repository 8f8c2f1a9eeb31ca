"""Data-parallel OrthoGrad (`forget --nproc 2`, gloo on the CPU): the same checkpoint and report as one process
on the same global batches, and a run that loses a rank ends at once with nothing written."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

import psutil
import pytest
import torch
from safetensors.torch import load_file

from orthograd_cli.cli.launch import split_nproc
from tests.conftest import FORGET_CLASS
from tests.integration.test_interrupt import nothing_left, only_a_state_left, start
from tests.integration.test_resume import killed, same_run

SHORT = ["--set", "method.max_steps=6", "--require", "!target_reached", "--set", "method.stop.check_every=3", "--set",
         "method.unlearn_batch_size=16", "--set", "method.retain_batch_size=16"]


def forget_args(trained_model, digits, out, settings) -> list[str]:
    folder = digits / f"class{FORGET_CLASS}"
    return ["forget", str(trained_model), "--forget", str(folder / "forget.csv"), "--retain",
            str(folder / "retain.csv"), "--test", str(digits / "test.csv"), "--recipe", "resnet18_digits_class",
            "--out", str(out), "--json", "--quiet", *SHORT, *[arg for s in settings for arg in ("--set", s)]]


def flat(tree: dict, prefix: str = "") -> dict:
    """A nested report section as {"after.forget_acc.value": 0.97, …}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


@pytest.mark.slow
@pytest.mark.parametrize("settings, resumed", [
    ([], True),  # per_tensor scope, hooks backend; and a copy killed and resumed
    (["method.per_sample.backend=gram", "method.projection.scope=global"], False),  # the global scope too
], ids=["per_tensor", "gram-backend"])
def test_two_processes_write_what_one_process_writes(cli, trained_model, digits, tmp_path, settings, resumed):
    single = cli(*forget_args(trained_model, digits, tmp_path / "one", settings))
    assert single.code == 0, single.err
    # each rank with as many threads as this process: other thread counts pick other conv kernels, whose float32
    # rounding the global projection's ill-conditioned directions amplify (1e-4 on conv1 with 1 thread per rank)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    two = subprocess.run([sys.executable, "-m", "orthograd_cli",
                          *forget_args(trained_model, digits, tmp_path / "two", settings), "--nproc", "2"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, two.stderr
    if resumed:  # rank 0 killed inside its second state write, then both ranks resumed: the same bytes as `two`
        args = [*forget_args(trained_model, digits, tmp_path / "again", settings), "--nproc", "2", "--set",
                "run.checkpoint_every_steps=1"]
        assert killed(args, fault="kill-in-state-write:2", env=env) == 1
        again = subprocess.run([sys.executable, "-m", "orthograd_cli", *args, "--resume"], capture_output=True,
                               text=True, timeout=600, env=env)
        assert again.returncode == 0, again.stderr
        same_run(json.loads(two.stdout), json.loads(again.stdout))
        assert (tmp_path / "again/model.safetensors").read_bytes() == (tmp_path / "two/model.safetensors").read_bytes()
    one_report, two_report = json.loads(single.out), json.loads(two.stdout)
    assert two.stdout.count('"schema_version"') == 1  # rank 0 alone reports
    assert (two_report["provenance"]["world_size"], two_report["provenance"]["distributed_backend"]) == (2, "gloo")
    assert two_report["provenance"]["communicated_bytes_per_step"] > 0
    assert two_report["steps"] == one_report["steps"] > 0
    # the same metrics; a combined accuracy is a float64 mean of the parts', one process's a float32 ratio
    assert flat(two_report["metrics"]).keys() == flat(one_report["metrics"]).keys()
    for key, value in flat(one_report["metrics"]).items():
        other = flat(two_report["metrics"])[key]
        assert other == (pytest.approx(value, rel=1e-6) if isinstance(value, float) else value), key
    one, two_weights = load_file(tmp_path / "one/model.safetensors"), load_file(tmp_path / "two/model.safetensors")
    assert one.keys() == two_weights.keys()
    for name, tensor in one.items():
        # the same sums in another order (each rank's mean, then their weighted sum): float32 rounding apart
        difference = (two_weights[name].double() - tensor.double()).norm() / tensor.double().norm().clamp_min(1e-30)
        assert float(difference) <= 1e-5, name
    original = load_file(trained_model)
    assert any(not torch.equal(one[name], original[name]) for name in one)  # the runs did change weights


def ranks_of(launcher, count: int = 2, timeout: float = 90) -> dict:
    """{RANK: psutil.Process} of the ranks a launcher started, once all `count` are there."""
    ranks = {}
    deadline = time.monotonic() + timeout
    while len(ranks) < count and time.monotonic() < deadline:
        assert launcher.poll() is None, launcher.communicate()[1]
        for child in psutil.Process(launcher.pid).children():
            with contextlib.suppress(psutil.Error):  # a child between fork and exec has the launcher's environment
                if child.environ().get("RANK"):
                    ranks.setdefault(child.environ()["RANK"], child)
        time.sleep(0.1)
    assert set(ranks) == {str(rank) for rank in range(count)}
    return ranks


@pytest.mark.slow
def test_killing_one_rank_ends_every_rank_and_leaves_nothing(trained_model, digits, tmp_path):
    out = tmp_path / "run"
    launcher = start("forget", trained_model, digits, out, "--nproc", "2")
    ranks = ranks_of(launcher)
    ranks["1"].kill()
    killed = time.monotonic()
    _, err = launcher.communicate(timeout=60)
    assert time.monotonic() - killed < 15, "the other rank went on"
    assert launcher.returncode != 0, err
    assert not ranks["0"].is_running() or ranks["0"].status() == psutil.STATUS_ZOMBIE
    assert "Traceback" not in err and "unexpected" not in err, err
    assert only_a_state_left(out)  # rank 0 keeps its state if it took a step


def test_other_methods_refuse_several_processes_and_write_nothing(trained_model, digits, tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "orthograd_cli",
                           *forget_args(trained_model, digits, out, ["method.name=neggrad_plus"]), "--nproc", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "runs in one process only" in done.stderr and "Traceback" not in done.stderr
    assert nothing_left(out)


def test_the_launcher_drops_nproc_from_what_each_rank_runs():
    assert split_nproc(["forget", "m", "--nproc", "2", "--json"]) == ("2", ["forget", "m", "--json"])
    assert split_nproc(["forget", "--nproc=2", "m"]) == ("2", ["forget", "m"])
    assert torch.distributed.is_available()


RANK_PROGRAM = """
import sys, torch
from orthograd_cli import distributed
from orthograd_cli.errors import NumericalError
group = distributed.start("cpu")
print("budget", group.decided_once("plan", lambda: 1000 + 7 * group.rank))
print("again", group.decided_once("plan", lambda: -1))
same = {"w": torch.linspace(0, 1, 50), "b": torch.ones(3)}
group.check_agreement(same, 5)
print("same weights agree")
drifted = {"w": same["w"] + (1e-7 if group.rank == 1 else 0.0), "b": same["b"]}
try:
    group.check_agreement(drifted, 10)
except NumericalError as err:
    print("refused:", err)
distributed.stop(group)
"""


def test_ranks_share_rank_0s_plan_and_a_drift_between_them_fails_on_every_rank(tmp_path):
    """Two real gloo ranks: a value decided once on rank 0 reaches both, and weights that differ by one float32
    step on one rank end the run on both at the next check."""
    from orthograd_cli.cli.launch import free_port

    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "TORCHELASTIC_RUN_ID": "test", "ORTHOGRAD_DIST_TIMEOUT": "60"}
    ranks = [subprocess.Popen([sys.executable, "-c", RANK_PROGRAM], env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    outputs = [rank.communicate(timeout=120) for rank in ranks]
    for (out, err), rank in zip(outputs, ranks):
        assert rank.returncode == 0, err
        lines = out.splitlines()
        assert lines[:3] == ["budget 1000", "again 1000", "same weights agree"], out
        assert lines[3].startswith("refused: the processes' weights differ at step 10 (rank 1 against rank 0)")
