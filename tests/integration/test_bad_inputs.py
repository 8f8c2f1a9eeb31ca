"""Every bad input: non-zero exit, one line naming the file/row/key with a hint, no traceback,
inputs byte-identical afterwards, and nothing left at the output path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import tree_digest


@pytest.fixture
def workspace(tmp_path, digits, trained_model):
    """A private copy of the data and model, so each case can be damaged on its own."""
    root = tmp_path / "in"
    shutil.copytree(digits / "images", root / "images")
    for name in ("sample/forget.csv", "sample/retain.csv", "test.csv"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(digits / name, root / name)
    shutil.copy(trained_model, root / "model.safetensors")
    return root


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def pickle_file(root: Path) -> Path:
    path = root / "model.pt"
    torch.save({"w": torch.zeros(2)}, path)
    return path


def with_nan(root: Path) -> Path:
    from safetensors.torch import load_file

    from orthograd_cli.models.checkpoint import save_checkpoint

    state = load_file(str(root / "model.safetensors"))
    state["fc.bias"][0] = float("nan")
    path = root / "nan.safetensors"
    save_checkpoint(state, path, {"orthograd.arch": "resnet18"})
    return path


def without_metadata(root: Path) -> Path:
    from safetensors.torch import load_file

    from orthograd_cli.models.checkpoint import save_checkpoint

    path = root / "bare.safetensors"
    save_checkpoint(load_file(str(root / "model.safetensors")), path, {})
    return path


def blown_up(root: Path) -> Path:
    """Finite weights whose logits overflow: the loss turns non-finite at the first step."""
    from safetensors.torch import load_file

    from orthograd_cli.models.checkpoint import save_checkpoint

    state = load_file(str(root / "model.safetensors"))
    state["fc.weight"] = state["fc.weight"] * 3e38  # each weight stays finite; 512-term sums overflow
    path = root / "blown.safetensors"
    save_checkpoint(state, path, {"orthograd.arch": "resnet18"})
    return path


def forget_args(root: Path, model: Path | None = None, forget: Path | None = None, retain: Path | None = None,
                *extra) -> list:
    return ["forget", model or root / "model.safetensors", "--forget", forget or root / "sample/forget.csv",
            "--retain", retain or root / "sample/retain.csv", "--test", root / "test.csv",
            "--out", root.parent / "out", "--quiet", *extra]


# (case id, builder(root) -> argv, expected exit code, fragment the one line must contain)
CASES = [
    ("recipe-unknown-key", lambda r: forget_args(r, None, None, None, "--set", "method.projection.scop=global"), 2,
     "did you mean 'scope'"),
    ("recipe-negative-lr", lambda r: forget_args(r, None, None, None, "--set", "method.lr=-0.1"), 2, "method.lr"),
    ("recipe-alpha-out-of-range", lambda r: forget_args(r, None, None, None, "--set", "method.alpha=2"), 2,
     "method.alpha"),
    ("recipe-k-below-1", lambda r: forget_args(r, None, None, None, "--set", "method.retain_batch_size=0"), 2,
     "retain_batch_size"),
    ("recipe-malformed-yaml", lambda r: forget_args(r, None, None, None, "--recipe",
                                                    write(r / "bad.yaml", "method: [lr: 0.1\n")), 2, "bad.yaml"),
    ("recipe-missing-file", lambda r: forget_args(r, None, None, None, "--recipe", r / "nope.yaml"), 2,
     "no such recipe"),
    ("recipe-unknown-arch", lambda r: forget_args(r, None, None, None, "--arch", "resnet81"), 3,
     "did you mean 'resnet18'"),
    ("manifest-missing", lambda r: forget_args(r, None, r / "absent.csv"), 2, "absent.csv"),
    ("manifest-empty", lambda r: forget_args(r, None, write(r / "empty.csv", "")), 2, "empty manifest"),
    ("manifest-missing-column", lambda r: forget_args(r, None, write(r / "m.csv", "path\nimages/d0000.png\n")), 2,
     "missing column 'label'"),
    ("manifest-extra-column", lambda r: forget_args(
        r, None, write(r / "m.csv", "path,label,speaker\nimages/d0000.png,0,x\n")), 2, "unexpected column"),
    ("manifest-file-not-found", lambda r: forget_args(r, None, write(r / "m.csv", "path,label\nimages/zz.png,0\n")),
     2, "row 2: file not found"),
    ("manifest-unreadable-image", lambda r: forget_args(
        r, None, write(r / "m.csv", "path,label\nbroken.png,0\n"), None) if write(r / "broken.png", "not a png")
     else None, 2, "cannot read image"),
    ("manifest-label-out-of-range", lambda r: forget_args(r, None, write(r / "m.csv",
                                                                         "path,label\nimages/d0000.png,12\n")), 2,
     "out of range"),
    ("manifest-unknown-class-name", lambda r: forget_args(r, None, write(r / "m.csv",
                                                                         "path,label\nimages/d0000.png,seven\n")), 2,
     "unknown class name 'seven'"),
    ("manifest-duplicate-ids", lambda r: forget_args(r, None, write(
        r / "m.csv", "id,path,label\na,images/d0000.png,0\na,images/d0001.png,1\n")), 2, "duplicate id 'a'"),
    ("manifest-sample-in-forget-and-retain", lambda r: forget_args(r, None, None, r / "sample/forget.csv"), 2,
     "also in the forget set"),
    ("checkpoint-missing", lambda r: forget_args(r, r / "absent.safetensors"), 3, "no such checkpoint"),
    ("checkpoint-not-safetensors", lambda r: forget_args(r, write(r / "m.safetensors2", "hello world, not a model")),
     3, "not a readable safetensors file"),
    ("checkpoint-truncated", lambda r: forget_args(r, truncate(r / "model.safetensors")), 3,
     "not a readable safetensors file"),
    ("checkpoint-pickle-refused", lambda r: forget_args(r, pickle_file(r)), 3, "never unpickles"),
    ("checkpoint-keys-do-not-fit", lambda r: forget_args(r, None, None, None, "--arch", "resnet34"), 3,
     "it looks like 'resnet18'"),
    ("checkpoint-labels-do-not-fit-num-classes", lambda r: forget_args(r, None, None, None, "--set",
                                                                       "model.num_classes=5"), 3, "10 labels"),
    ("checkpoint-shape-does-not-fit", lambda r: forget_args(r, without_metadata(r), None, None, "--arch", "resnet18",
                                                            "--set", "model.num_classes=5"), 3, "fc.weight"),
    ("checkpoint-non-finite", lambda r: forget_args(r, with_nan(r)), 3, "NaN"),
    ("run-retain-batch-larger-than-retain-set", lambda r: forget_args(
        r, None, None, None, "--set", "method.retain_batch_size=100000"), 2, "larger than the retain set"),
    ("run-forget-without-retain", lambda r: ["forget", r / "model.safetensors", "--forget", r / "sample/forget.csv",
                                             "--out", r.parent / "out"], 2, "--retain"),
    ("run-sample-wise-without-test", lambda r: ["forget", r / "model.safetensors", "--forget",
                                                r / "sample/forget.csv", "--retain", r / "sample/retain.csv",
                                                "--out", r.parent / "out", "--quiet"], 2, "--test"),
    ("run-output-not-writable", lambda r: forget_args(r, None, None, None, "--out", r / "test.csv" / "run"), 2,
     "cannot write the output folder"),
    ("run-non-finite-loss", lambda r: forget_args(r, blown_up(r), None, None, "--set",
                                                   "method.stop.target_forget_acc=0"), 4, "at step 1"),
    ("merge-not-an-adapter", lambda r: ["merge", r / "model.safetensors", r / "images", "--out",
                                        r.parent / "out"], 2, "not an adapter folder"),
    ("evaluate-no-sets", lambda r: ["evaluate", r / "model.safetensors"], 2, "at least one of"),
]


@pytest.mark.parametrize("case,build,code,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_cleanly(cli, workspace, case, build, code, fragment):
    argv = build(workspace)
    before = tree_digest(workspace)
    result = cli(*argv)
    assert result.code == code, (result.code, result.err)
    assert result.err.startswith("error: ") and result.err.count("\n") == 1, result.err
    assert fragment in result.err, result.err
    assert "Traceback" not in result.err
    assert tree_digest(workspace) == before, "an input file changed"
    out = workspace.parent / "out"
    assert not out.exists() and not list(workspace.parent.glob(".out*")), "output left behind"


def test_existing_output_folder_is_refused_without_overwrite(cli, workspace):
    out = workspace.parent / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = cli(*forget_args(workspace))
    assert result.code == 2 and "--overwrite" in result.err
    assert (out / "keep.txt").read_text() == "precious"


def test_debug_shows_the_traceback(cli, workspace):
    with pytest.raises(Exception) as caught:
        cli("--debug", *forget_args(workspace, workspace / "absent.safetensors"))
    assert "no such checkpoint" in str(caught.value)


# --- speech inputs -----------------------------------------------------------------------------


@pytest.fixture
def speech_workspace(tmp_path, speech_corpus):
    """Eight real recordings (4 of the forget voice, 4 of others), manifests, and an untrained
    speech checkpoint with full metadata: every case below fails during validation, before training."""
    import csv

    import torch

    from orthograd_cli.jobs.demo_asr import speech_info
    from orthograd_cli.models.checkpoint import save_checkpoint
    from orthograd_cli.models.registry import build_model

    root = tmp_path / "in"
    (root / "audio").mkdir(parents=True)
    with open(speech_corpus / "train.csv") as handle:
        rows = list(csv.DictReader(handle))
    picked = {"forget": rows[420:424], "retain": rows[0:4], "test": rows[100:104]}
    for name, chosen in picked.items():
        lines = ["path,transcript,speaker,id"]
        for row in chosen:
            target = root / "audio" / Path(row["path"]).name.replace(".wav", f"_{row['id'].replace('/', '_')}.wav")
            shutil.copy(speech_corpus / row["path"], target)
            lines.append(f"audio/{target.name},{row['transcript']},{row['speaker']},{row['id']}")
        write(root / f"{name}.csv", "\n".join(lines) + "\n")
    info = speech_info()
    torch.manual_seed(0)
    save_checkpoint(build_model(info).state_dict(), root / "model.safetensors", info.metadata())
    return root


def speech_args(root: Path, forget: Path | None = None, model: Path | None = None, *extra) -> list:
    return ["forget", model or root / "model.safetensors", "--forget", forget or root / "forget.csv",
            "--retain", root / "retain.csv", "--test", root / "test.csv", "--out", root.parent / "out", "--quiet",
            *extra]


def first_audio(root: Path) -> str:
    return (root / "forget.csv").read_text().splitlines()[1].split(",")[0]


def empty_wav(root: Path) -> Path:
    import numpy as np
    import soundfile as sf

    sf.write(str(root / "audio" / "silent.wav"), np.zeros(0, dtype="float32"), 16_000)
    return write(root / "m.csv", "path,transcript,speaker\naudio/silent.wav,one two,en-us\n")


def vocabless_model(root: Path) -> Path:
    from safetensors.torch import load_file

    from orthograd_cli.models.checkpoint import save_checkpoint

    path = root / "novocab.safetensors"
    save_checkpoint(load_file(str(root / "model.safetensors")), path, {"orthograd.arch": "wav2vec2_model",
                                                                       "orthograd.task": "asr"})
    return path


SPEECH_CASES = [
    ("audio-unreadable", lambda r: speech_args(r, write(r / "m.csv", "path,transcript,speaker\nbad.wav,one,en-us\n")
                                               if write(r / "bad.wav", "RIFF not really a wav") else None), 2,
     "cannot read audio"),
    ("audio-empty", lambda r: speech_args(r, empty_wav(r)), 2, "is empty"),
    ("transcript-outside-vocabulary", lambda r: speech_args(r, write(
        r / "m.csv", f"path,transcript,speaker\n{first_audio(r)},four 4 one!,en-us\n")), 2,
     "outside the model's vocabulary: '!4'"),
    ("transcript-empty", lambda r: speech_args(r, write(r / "m.csv", f"path,transcript,speaker\n{first_audio(r)},  ,x\n")),
     2, "empty transcript"),
    ("speech-manifest-missing-speaker", lambda r: speech_args(r, write(
        r / "m.csv", f"path,transcript\n{first_audio(r)},one\n")), 2, "missing column 'speaker'"),
    ("speech-checkpoint-without-vocabulary", lambda r: speech_args(r, None, vocabless_model(r)), 3, "vocabulary"),
    ("speech-vmap-backend", lambda r: speech_args(r, None, None, "--set", "method.per_sample.backend=vmap",
                                                  "--set", "method.retain_batch_size=2"), 2, "no vmap rule"),
    ("speech-classification-only-method", lambda r: speech_args(r, None, None, "--set", "method.name=scrub"), 2,
     "only makes sense for classification"),
]


@pytest.mark.parametrize("case,build,code,fragment", SPEECH_CASES, ids=[c[0] for c in SPEECH_CASES])
def test_bad_speech_input_fails_cleanly(cli, speech_workspace, case, build, code, fragment):
    test_bad_input_fails_cleanly(cli, speech_workspace, case, build, code, fragment)
