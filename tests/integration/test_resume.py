"""`--resume` after a real SIGKILL: the same bytes, metrics and history as a run that never stopped, and every
refusal (another input, recipe, version or process count; nothing to resume) exits 2 and changes nothing. The
uninterrupted runs are planned with --dry-run first and their peak memory measured (test_dry_run.py)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orthograd_cli.jobs.resume import FAULT, STATE_FILE
from tests.conftest import FORGET_CLASS, tree_digest
from tests.integration.test_dry_run import planned_and_measured

SHORT = ["--set", "method.max_steps=8", "--set", "method.stop.check_every=2", "--set", "method.lr=0.001",
         "--set", "run.checkpoint_every_steps=1", "--set", "eval.mia=false", "--require", "!target_reached",
         "--json", "--quiet"]


def class_args(model, digits, out) -> list:
    folder = digits / f"class{FORGET_CLASS}"
    return ["forget", model, "--forget", folder / "forget.csv", "--retain", folder / "retain.csv", "--test",
            digits / "test.csv", "--recipe", "resnet18_digits_class", "--set", "method.optimizer=adam", *SHORT,
            "--out", out]


def killed(args: list, fault: str | None = None, kill_after_state: int | None = None, env: dict | None = None) -> int:
    """Run `orthograd ARGS` in a subprocess and SIGKILL it: from inside its state write number `fault` counts
    (ORTHOGRAD_FAULT), or from here once it has saved the state after step `kill_after_state` (its JSON lines
    say so). Returns the state's step left beside the output."""
    env = {**(env or os.environ), **({FAULT: fault} if fault else {})}
    command = [sys.executable, "-m", "orthograd_cli", *map(str, args)]
    if kill_after_state is not None:
        command = [c for c in command if c != "--quiet"] + ["--log-format", "jsonl"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    if kill_after_state is not None:
        for line in process.stderr:
            event = json.loads(line) if line.startswith("{") else {}
            if event.get("event") == "state_saved" and event["step"] >= kill_after_state:
                process.send_signal(signal.SIGKILL)  # the run goes on meanwhile: it dies wherever it is
                break
    process.communicate(timeout=600)
    assert process.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL)  # itself, or the launcher of its ranks
    out = Path(args[args.index("--out") + 1])
    states = list(out.parent.glob(f".{out.name}.tmp-*/{STATE_FILE}"))
    assert len(states) == 1 and not (out.is_dir() and any(out.iterdir()))  # nothing at --out itself
    from orthograd_cli.methods.state import read_state

    return read_state(states[0])[0].step


def same_run(first: dict, second: dict) -> None:
    """Equal report numbers: metrics, history (less its wall times), diagnostics and the retain draw."""
    def rows(report):
        return [{k: v for k, v in row.items() if k != "wall_s"} for row in report["history"]]

    assert rows(first) == rows(second)
    for key in ("metrics", "diagnostics", "retain_ids_sha256", "steps", "stop_reason", "verdict"):
        assert first[key] == second[key], key


@pytest.mark.slow
def test_a_forget_run_killed_anywhere_resumes_to_the_same_bytes_and_refusals_change_nothing(
        cli, trained_model, digits, tmp_path, monkeypatch):
    args = class_args(trained_model, digits, tmp_path / "whole")
    plan, whole = planned_and_measured(args[:args.index("--out")], tmp_path / "whole")  # and its peak memory
    assert len(plan["lora"]["targets"]) == 21  # resnet18's default targets: every ungrouped convolution
    out = tmp_path / "run"
    args = class_args(trained_model, digits, out)
    # 1. killed inside its second state write: the first one (after step 1) is what is left
    assert killed(args, fault="kill-in-state-write:2") == 1

    # refusals while that state lies there: exit 2, one line, nothing changed
    before = tree_digest(tmp_path)
    other_forget = tmp_path / "other_forget.csv"  # the same samples but one, by absolute path
    header, *rows = (digits / f"class{FORGET_CLASS}" / "forget.csv").read_text().splitlines()
    rows = [row.replace("../images/", f"{digits / 'images'}/") for row in rows[:-1]]
    other_forget.write_text("\n".join([header, *rows]) + "\n")
    forget_at = args.index("--forget") + 1
    for refused, why in [
        ([*args, "--resume", "--set", "method.lr=0.002"], "the recipe differs"),
        ([*args[:forget_at], other_forget, *args[forget_at + 1:], "--resume"], "the forget manifest"),
        ([*args, "--resume", "--nproc", "2"], "the number of processes (1 then, 2 now)"),
        (args, "an interrupted run left its state"),  # a fresh run would throw the state away
    ]:
        result = cli(*refused)
        assert result.code == 2 and why in result.err and len(result.err.splitlines()) == 1, result.err
    monkeypatch.setattr("orthograd_cli.jobs.resume.__version__", "0.0.0")
    result = cli(*args, "--resume")
    assert result.code == 2 and "the tool version" in result.err, result.err
    monkeypatch.undo()
    other_forget.unlink()
    assert tree_digest(tmp_path) == before

    # 2. resumed, then killed from outside at a random step after its next state; 3. resumed to the end
    position = random.Random(0).randint(3, 6)
    assert killed([*args, "--resume"], kill_after_state=position) >= position
    resumed = cli(*args, "--resume")
    assert resumed.code == 0, resumed.err
    assert (out / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert (out / "adapter" / "adapter_model.safetensors").read_bytes() == \
        (tmp_path / "whole" / "adapter" / "adapter_model.safetensors").read_bytes()
    same_run(whole, json.loads(resumed.out))
    assert json.loads(resumed.out)["resumed_from_step"] >= position
    assert not list(tmp_path.glob(".run.tmp-*")) and not list(out.rglob(STATE_FILE))  # cleaned up
    nothing = cli(*args, "--resume")
    assert nothing.code == 2 and "nothing to resume (the run there finished)" in nothing.err


@pytest.mark.slow
def test_a_speech_run_killed_in_its_state_write_resumes_to_the_same_bytes(cli, asr_model, forget_voice, tmp_path):
    def args(out):
        return ["forget", asr_model, "--forget", forget_voice / "forget.csv", "--retain", forget_voice / "retain.csv",
                "--test", forget_voice / "test.csv", "--recipe", "wav2vec2_model_espeak_speaker", *SHORT,
                "--set", "method.max_steps=4", "--set", "method.retain_batch_size=8", "--out", out]

    plan, whole = planned_and_measured(args(tmp_path / "whole")[:-2], tmp_path / "whole")  # and its peak memory
    assert plan["task"] == "asr"
    assert killed(args(tmp_path / "run"), fault="kill-in-state-write:3") == 2
    resumed = cli(*args(tmp_path / "run"), "--resume")
    assert resumed.code == 0, resumed.err
    assert (tmp_path / "run/model.safetensors").read_bytes() == (tmp_path / "whole/model.safetensors").read_bytes()
    same_run(whole, json.loads(resumed.out))


@pytest.mark.slow
def test_a_run_killed_between_its_chosen_check_and_the_damage_break_writes_that_check_when_resumed(
        cli, trained_model, digits, tmp_path):
    """The damage limit's kept check travels in the state: killed after the step past the chosen check, the resumed
    run breaks the limit at its next check and writes the kept weights, the bytes of a run never stopped."""
    def args(out):
        return ["forget", trained_model, "--forget", digits / "sample/forget.csv", "--retain",
                digits / "sample/retain.csv", "--test", digits / "test.csv", "--set", "method.name=neggrad",
                "--set", "method.lr=0.03", "--set", "method.stop.target_forget_acc=0", "--set", "method.max_steps=40",
                "--set", "method.stop.retain_holdout=0.3", "--set", "method.stop.max_damage=0.005",
                "--set", "method.stop.check_every=3", "--set", "run.checkpoint_every_steps=1", "--set",
                "eval.mia=false", "--require", "!target_reached", "--json", "--quiet", "--out", out]

    whole = cli(*args(tmp_path / "whole"))
    assert whole.code == 0, whole.err
    whole = json.loads(whole.out)
    steps = whole["steps"]
    assert whole["stop_reason"] == "damage_limit" and whole["written_step"] == steps - 3 >= 3
    out = tmp_path / "run"
    # killed inside the state write after step steps - 1 (none follows the breaking check), the state after
    # step steps - 2 is left: past the chosen check, before the check that breaks the limit
    assert killed(args(out), fault=f"kill-in-state-write:{steps - 1}") == steps - 2
    from orthograd_cli.methods.state import read_state

    state = read_state(next(tmp_path.glob(f".run.tmp-*/{STATE_FILE}")))[0]
    assert state.kept["step"] == steps - 3 and state.kept["params"].keys() == state.params.keys()
    resumed = cli(*args(out), "--resume")
    assert resumed.code == 0, resumed.err
    assert (out / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
    same_run(whole, json.loads(resumed.out))
    assert json.loads(resumed.out)["written_step"] == steps - 3
