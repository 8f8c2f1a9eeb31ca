"""A model folder never runs code of its own: every transformers call pins trust_remote_code=False, and a folder
whose config, tokenizer or processor files name code (`auto_map`) is refused before transformers reads it,
under every command, whether stdin is a terminal (where transformers would ask "run it?") or not."""

from __future__ import annotations

import ast
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_structure import modules

# Would write MARKER beside itself on import: the test's proof that the folder's code ran.
EVIL_CODE = """
from pathlib import Path
Path(__file__).with_name("MARKER").write_text("the folder's code ran")
from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizer
class EvilConfig(PretrainedConfig):
    model_type = "evil"
class EvilModel(PreTrainedModel):
    config_class = EvilConfig
class EvilTokenizer(PreTrainedTokenizer):
    pass
"""
LOADERS = {"from_pretrained"}


def test_every_transformers_load_in_the_package_pins_trust_remote_code_false():
    """Any `*.from_pretrained(...)` and any call on an `Auto*` class must say trust_remote_code=False."""
    offenders = []
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            receiver = node.func.value
            receiver_name = receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", "")
            if node.func.attr in LOADERS or receiver_name.startswith("Auto"):
                pinned = [k for k in node.keywords if k.arg == "trust_remote_code"]
                if not (pinned and isinstance(pinned[0].value, ast.Constant) and pinned[0].value.value is False):
                    offenders.append(f"{name} line {node.lineno}: {receiver_name}.{node.func.attr}")
    assert not offenders, offenders


@pytest.fixture(scope="module")
def evil_folders(tmp_path_factory, digits):
    """Model folders that ask for their own code in each file transformers reads it from, each with the code."""
    from orthograd_cli.jobs.demo_text import build_tiny_llama
    from orthograd_cli.jobs.demo_whisper import build_tiny_whisper
    from tests.hf_models import tiny_vit

    root = tmp_path_factory.mktemp("remote_code")
    whisper = root / "whisper_clean"
    build_tiny_whisper(whisper, ["one two three", "four five"], seconds=2.0)
    vit = root / "vit_clean"
    tiny_vit(vit)
    llama = root / "llama_clean"
    build_tiny_llama(llama, ["Question: Where was Alder Vance born?\nAnswer: Alder Vance was born in Saltmere."], 0,
                     hidden_size=16, num_hidden_layers=1, intermediate_size=32)
    folders = {}
    for name, clean, file, entry, drop_model_type in [
        ("whisper_config", whisper, "config.json", {"AutoConfig": "evil.EvilConfig"}, True),
        ("whisper_tokenizer", whisper, "tokenizer_config.json", {"AutoTokenizer": ["evil.EvilTokenizer", None]}, False),
        ("vit_processor", vit, "preprocessor_config.json", {"AutoImageProcessor": "evil.EvilProcessor"}, False),
        ("llama_config", llama, "config.json", {"AutoModelForCausalLM": "evil.EvilModel"}, False),
    ]:
        folder = root / name
        folder.mkdir()
        for path in clean.iterdir():
            (folder / path.name).write_bytes(path.read_bytes())
        settings = json.loads((folder / file).read_text())
        settings["auto_map"] = entry
        if drop_model_type:
            settings.pop("model_type", None)
        (folder / file).write_text(json.dumps(settings))
        (folder / "evil.py").write_text(EVIL_CODE)
        folders[name] = folder
    return folders


def commands(folder: Path, digits: Path, out: Path) -> dict[str, list[str]]:
    sets = ["--forget", str(digits / "sample/forget.csv"), "--retain", str(digits / "sample/retain.csv")]
    return {
        "forget": ["forget", str(folder), *sets, "--out", str(out / "run"), "--json"],
        "evaluate": ["evaluate", str(folder), "--forget", str(digits / "sample/forget.csv"), "--json"],
        "inspect": ["inspect", str(folder), *sets, "--json"],
        "compare": ["compare", str(folder), *sets, "--out", str(out / "cmp"), "--json"],
        "merge": ["merge", str(folder), str(out / "no_adapter"), "--out", str(out / "merged"), "--json"],
    }


def run_piped(args: list[str]) -> tuple[int, str, str]:
    """The real CLI with stdin a pipe that would answer "y"."""
    done = subprocess.run([sys.executable, "-m", "orthograd_cli", *args], input="y\ny\n", capture_output=True,
                          text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def run_on_terminal(args: list[str]) -> tuple[int, str]:
    """The real CLI with stdin, stdout and stderr on a pseudo-terminal, answering "y" to any question."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on the terminal
        os.execv(sys.executable, [sys.executable, "-m", "orthograd_cli", *args])
    os.write(fd, b"y\ny\n")
    seen = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


@pytest.mark.parametrize("case", ["whisper_config", "whisper_tokenizer", "vit_processor", "llama_config"])
def test_a_folder_asking_for_its_own_code_is_refused_and_its_code_never_runs(evil_folders, digits, tmp_path, case):
    folder = evil_folders[case]
    for command, args in commands(folder, digits, tmp_path).items():
        code, out, err = run_piped(args)
        assert code == 3, (command, code, err)
        assert "auto_map" in err and err.count("\n") == 1 and out == "", (command, err, out)
        assert not (folder / "MARKER").exists(), command
        assert not any(path.name in ("run", "cmp", "merged") for path in tmp_path.iterdir()), command


def test_on_a_terminal_nothing_asks_and_nothing_runs(evil_folders, digits, tmp_path):
    folder = evil_folders["whisper_config"]
    for command in ("evaluate", "inspect"):
        code, seen = run_on_terminal(commands(folder, digits, tmp_path)[command])
        assert code == 3 and "auto_map" in seen and "[y/N]" not in seen, (command, seen)
        assert not (folder / "MARKER").exists(), command


def test_the_tokenizer_loader_refuses_such_a_folder_itself(evil_folders):
    """Defence in depth: the Whisper tokenizer is read again when transcripts are encoded."""
    from orthograd_cli.errors import CheckpointError
    from orthograd_cli.tasks.asr_seq2seq.tokens import load_tokenizer

    with pytest.raises(CheckpointError, match="auto_map"):
        load_tokenizer(str(evil_folders["whisper_tokenizer"]))
    assert not (evil_folders["whisper_tokenizer"] / "MARKER").exists()
