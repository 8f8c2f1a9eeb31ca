"""Every bad input: non-zero exit, one line naming the file/row/key with a hint, no traceback,
inputs byte-identical afterwards, and nothing left at the output path."""

from __future__ import annotations

import json
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


# --- round 2: inputs that used to be destroyed, exit 1 "unexpected", or give silently wrong numbers -----------


def with_metadata(root: Path, name: str, **metadata: str) -> Path:
    """A copy of the model whose metadata says something else (labels, a recorded base)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from orthograd_cli.models.checkpoint import save_checkpoint

    with safe_open(str(root / "model.safetensors"), "pt") as handle:
        meta = {**handle.metadata(), **metadata}
    path = root / name
    save_checkpoint(load_file(str(root / "model.safetensors")), path, meta)
    return path


def float8_model(root: Path) -> Path:
    from safetensors.torch import load_file, save_file

    state = load_file(str(root / "model.safetensors"))
    state["fc.weight"] = state["fc.weight"].to(torch.float8_e4m3fn)
    path = root / "f8.safetensors"
    save_file(state, str(path), {"orthograd.arch": "resnet18"})
    return path


def adapter(root: Path, lora_value: float = 0.01, truncated: bool = False) -> Path:
    """A peft adapter folder on the model's fc layer, written by hand (as another tool would)."""
    from peft import LoraConfig
    from safetensors.torch import save_file

    folder = root / "adapter"
    LoraConfig(r=2, lora_alpha=4, target_modules=["fc"]).save_pretrained(str(folder))
    save_file({"base_model.model.fc.lora_A.weight": torch.full((2, 512), lora_value),
               "base_model.model.fc.lora_B.weight": torch.full((10, 2), lora_value)},
              str(folder / "adapter_model.safetensors"))
    if truncated:
        truncate(folder / "adapter_model.safetensors")
    return folder


def decompression_bomb(root: Path) -> Path:
    from PIL import Image

    Image.new("1", (15_000, 15_000)).save(root / "bomb.png")  # 225 M pixels, a few kB on disk
    return write(root / "m.csv", "path,label\nbomb.png,0\n")


def float_tiff(root: Path, top: float) -> Path:
    import numpy as np
    from PIL import Image

    Image.fromarray(np.linspace(0, top, 64, dtype=np.float32).reshape(8, 8)).save(root / "f.tiff")
    return write(root / "m.csv", "path,label\nf.tiff,0\n")


ALIAS_BOMB = "".join([
    "model:\n  config:\n",
    "    a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n",
    *(f"    a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
      f"*a{i - 1}, *a{i - 1}]\n" for i in range(1, 9)),
])


def evaluate_args(root: Path, model: Path | None = None, *extra) -> list:
    return ["evaluate", model or root / "model.safetensors", "--test", root / "test.csv", "--quiet", *extra]


def compare_args(root: Path, *extra) -> list:
    return ["compare", root / "model.safetensors", "--forget", root / "sample/forget.csv", "--retain",
            root / "sample/retain.csv", "--test", root / "test.csv", "--out", root.parent / "out", "--quiet", *extra]


# (case id, builder(root) -> argv, expected exit code, fragment the one line must contain)
CASES = [
    ("recipe-unknown-key", lambda r: forget_args(r, None, None, None, "--set", "method.projection.scop=global"), 2,
     "did you mean 'scope'"),
    ("damage-limit-watches-nothing",
     lambda r: ["forget", r / "model.safetensors", "--forget", r / "sample/forget.csv", "--retain",
                r / "sample/retain.csv", "--out", r.parent / "out", "--quiet", "--set", "method.stop.max_damage=0.02",
                "--set", "method.stop.target_forget_acc=0.5"], 2, "set method.stop.retain_holdout"),
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
    ("run-forget-without-retain", lambda r: ["forget", r / "model.safetensors", "--forget", r / "sample/forget.csv",
                                             "--out", r.parent / "out"], 2, "--retain"),
    ("run-sample-wise-without-test", lambda r: ["forget", r / "model.safetensors", "--forget",
                                                r / "sample/forget.csv", "--retain", r / "sample/retain.csv",
                                                "--out", r.parent / "out", "--quiet"], 2, "no test or forget-test set"),
    ("run-output-not-writable", lambda r: forget_args(r, None, None, None, "--out", write(r / "notes.txt", "x") / "run"),
     2, "cannot write there"),
    ("run-output-inside-an-input-file", lambda r: forget_args(r, None, None, None, "--out", r / "test.csv" / "run"), 2,
     "lies inside an input"),
    ("run-non-finite-loss", lambda r: forget_args(r, blown_up(r), None, None, "--set",
                                                   "method.stop.target_forget_acc=0"), 4, "at step 1"),
    ("merge-not-an-adapter", lambda r: ["merge", r / "model.safetensors", r / "images", "--out",
                                        r.parent / "out"], 2, "not an adapter folder"),
    ("evaluate-no-sets", lambda r: ["evaluate", r / "model.safetensors"], 2, "at least one of"),
    # outputs that would destroy an input
    ("forget-out-holds-the-inputs", lambda r: forget_args(r, None, None, None, "--out", r, "--overwrite"), 2,
     "contains an input"),
    ("forget-out-is-the-image-folder", lambda r: forget_args(r, None, None, None, "--out", r / "images"), 2,
     "contains an input"),
    ("evaluate-out-is-the-model", lambda r: evaluate_args(r, None, "--out", r / "model.safetensors"), 2,
     "is an input"),
    ("merge-out-is-the-base", lambda r: ["merge", r / "model.safetensors", adapter(r), "--out",
                                         r / "model.safetensors"], 2, "is an input"),
    ("forget-plot-over-an-input", lambda r: forget_args(r, None, None, None, "--plot", r / "test.csv"), 2,
     "is an input"),
    ("forget-plot-unwritable", lambda r: forget_args(r, None, None, None, "--plot", "/proc/orthograd/plot.png"), 2,
     "/proc/orthograd/plot.png"),
    ("forget-out-unwritable-filesystem", lambda r: forget_args(r, None, None, None, "--out", "/proc/orthograd/run"),
     2, "/proc/orthograd/run"),
    # usage errors are exit 2 with one line, whichever click Typer bundles
    ("usage-unknown-option", lambda r: ["forget", r / "model.safetensors", "--bogus"], 2, "No such option"),
    ("usage-missing-argument", lambda r: ["evaluate"], 2, "Missing argument"),
    ("usage-compare-zero-seeds", lambda r: compare_args(r, "--seeds", "0"), 2, "--seeds"),
    ("usage-compare-no-methods", lambda r: compare_args(r, "--methods", ","), 2, "no method given"),
    ("usage-compare-tune", lambda r: compare_args(r, "--set", "method.tune.enabled=true"), 2, "use --sweep"),
    ("usage-tune-with-nproc", lambda r: forget_args(r, None, None, None, "--tune", "--nproc", "2"), 2,
     "--tune runs its candidates in one process"),
    ("recipe-tune-space-stop-key",
     lambda r: forget_args(r, None, None, None, "--tune", "--set", "method.tune.space={method.stop.check_every: [1]}"),
     2, "not the method itself, method.tune. or method.stop.*"),
    # bad data that used to end as "unexpected"
    ("manifest-malformed-line", lambda r: forget_args(r, None, write(r / "m.csv", "path,label\n" + "x" * 200_000
                                                                          + ",0\n")), 2, "row 2: not a valid CSV line"),
    ("manifest-over-long-path", lambda r: forget_args(r, None, write(r / "m.csv", "path,label\n" + "a" * 5000
                                                                         + ".png,0\n")), 2, "row 2: unusable path"),
    ("manifest-same-file-two-spellings", lambda r: forget_args(r, None, write(
        r / "m.csv", "id,path,label\na,images/d0000.png,0\nb,./images/../images/d0000.png,0\n")), 2,
     "same file as row 2"),
    ("image-decompression-bomb", lambda r: forget_args(r, None, decompression_bomb(r)), 2, "decompression-bomb"),
    ("image-float-out-of-range", lambda r: forget_args(r, None, float_tiff(r, 5.0)), 2, "values outside 0..1"),
    ("checkpoint-float8-weights", lambda r: forget_args(r, float8_model(r)), 3, "float8"),
    ("adapter-truncated", lambda r: ["merge", r / "model.safetensors", adapter(r, truncated=True), "--out",
                                     r.parent / "out"], 3, "not a readable safetensors file"),
    ("adapter-merges-to-non-finite", lambda r: ["merge", r / "model.safetensors", adapter(r, lora_value=1e30),
                                                "--out", r.parent / "out"], 3, "non-finite"),
    ("lora-target-not-a-linear-or-conv", lambda r: forget_args(r, None, None, None, "--set",
                                                                "lora.target_modules=[bn1]"), 2, "BatchNorm2d"),
    ("recipe-lr-infinite", lambda r: forget_args(r, None, None, None, "--set", "method.lr=.inf"), 2, "method.lr"),
    ("recipe-alpha-nan", lambda r: forget_args(r, None, None, None, "--set", "method.alpha=.nan"), 2, "method.alpha"),
    ("recipe-lora-alpha-infinite", lambda r: forget_args(r, None, None, None, "--set", "lora.alpha=.inf"), 2,
     "lora.alpha"),
    ("recipe-method-setting-infinite", lambda r: forget_args(r, None, None, None, "--set",
                                                              "method.gdr_gma.gamma=.inf"), 2, "method.gdr_gma.gamma"),
    ("recipe-yaml-alias-bomb", lambda r: forget_args(r, None, None, None, "--recipe", write(r / "bomb.yaml",
                                                                                          ALIAS_BOMB)), 2,
     "expands to more than"),
    # inputs that gave wrong numbers with exit 0
    ("manifest-test-is-the-forget-set", lambda r: forget_args(r, None, None, None, "--test", r / "sample/forget.csv"),
     2, "also in the forget set"),
    ("labels-digit-like-names-and-an-index", lambda r: forget_args(
        r, with_metadata(r, "named.safetensors", **{"orthograd.labels": json.dumps([str(i) for i in range(1, 11)])}),
        write(r / "m.csv", "path,label\nimages/d0000.png,0\n")), 2, "class names, which are numbers"),
    ("evaluate-original-not-the-base-strict", lambda r: evaluate_args(
        r, with_metadata(r, "run.safetensors", **{"orthograd.sha256.base": "0" * 64}), "--original",
        r / "model.safetensors", "--strict"), 3, "is not the model"),
    ("compare-every-run-fails", lambda r: compare_args(r, "--methods", "neggrad", "--set", "method.lr=1e30",
                                                       "--set", "method.stop.target_forget_acc=0",
                                                       "--set", "method.max_steps=3",
                                                       "--require", "!target_reached"), 4, "all 1 runs failed"),
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
    assert result.code == 2 and "overwrite" in result.err
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
     "defined for classification, causal_lm only, not 'asr'"),
]


@pytest.mark.parametrize("case,build,code,fragment", SPEECH_CASES, ids=[c[0] for c in SPEECH_CASES])
def test_bad_speech_input_fails_cleanly(cli, speech_workspace, case, build, code, fragment):
    test_bad_input_fails_cleanly(cli, speech_workspace, case, build, code, fragment)


# --- the output folder: claimed at the start, replaced only when orthograd made it ------------------------------


def test_overwrite_replaces_only_a_folder_orthograd_made(cli, workspace):
    out = workspace.parent / "out"
    out.mkdir()
    (out / "notes.txt").write_text("someone else's")
    result = cli(*forget_args(workspace, None, None, None, "--overwrite", "--set", "method.max_steps=1",
                 "--require", "!target_reached"))
    assert result.code == 2 and "did not write" in result.err and result.err.count("\n") == 1
    assert (out / "notes.txt").read_text() == "someone else's"
    (out / "notes.txt").unlink()
    out.rmdir()
    first = cli(*forget_args(workspace, None, None, None, "--set", "method.max_steps=1",
                "--require", "!target_reached"))
    assert first.code == 0, first.err
    assert (out / ".orthograd-output").is_file()
    again = cli(*forget_args(workspace, None, None, None, "--overwrite", "--set", "method.max_steps=1",
                "--require", "!target_reached"))
    assert again.code == 0, again.err
    assert sorted(p.name for p in workspace.parent.iterdir()) == ["in", "out"]  # no lock, trash or temporary left


def test_every_output_file_check_runs_before_the_work(cli, workspace):
    """A full output filesystem is found up front, not after the computation."""
    from orthograd_cli.errors import UsageError
    from orthograd_cli.outputs import check_writable

    with pytest.raises(UsageError, match="not enough free space"):
        check_writable(workspace.parent / "out", need_bytes=1 << 60)


def test_a_valid_checkpoint_whose_header_length_starts_with_0x80_is_read(cli, workspace):
    """safetensors files start with their header length: 1 file in 32 has 0x80 as first byte, a pickle's
    signature. They are read by content, not refused."""
    from safetensors.torch import load_file

    from orthograd_cli.models.checkpoint import save_checkpoint

    state = load_file(str(workspace / "model.safetensors"))
    path = workspace / "x80.safetensors"
    for pad in range(512):
        save_checkpoint(state, path, {"orthograd.arch": "resnet18", "pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    result = cli("inspect", path, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["arch"] == "resnet18"
    pickled = workspace / "model.pt"
    torch.save(state, pickled)
    refused = cli("inspect", pickled)
    assert refused.code == 3 and "never unpickles" in refused.err


def test_high_depth_and_palette_images_score_like_their_8_bit_originals(cli, workspace):
    """16-bit PNGs, float TIFFs in [0, 1], palette, grey+alpha and CMYK images are converted, not clipped: a model
    scores them as it scores the 8-bit originals."""
    import numpy as np
    from PIL import Image

    lines = (workspace / "test.csv").read_text().splitlines()[:41]  # 40 test images
    variants = {"8bit": lambda im: im, "16bit": lambda im: Image.fromarray(np.asarray(im, np.uint16) * 257),
                "float": lambda im: Image.fromarray(np.asarray(im, np.float32) / 255),
                "palette": lambda im: im.convert("P"), "grey_alpha": lambda im: im.convert("LA")}
    accuracy = {}
    for name, convert in variants.items():
        rows = [lines[0]]
        for line in lines[1:]:
            sample_id, rel, label = line.split(",")
            suffix = ".tiff" if name == "float" else ".png"
            target = workspace / name / f"{sample_id}{suffix}"
            target.parent.mkdir(exist_ok=True)
            with Image.open(workspace / rel) as image:
                convert(image.convert("L")).save(target)
            rows.append(f"{sample_id},{name}/{target.name},{label}")
        write(workspace / f"{name}.csv", "\n".join(rows) + "\n")
        result = cli("evaluate", workspace / "model.safetensors", "--test", workspace / f"{name}.csv", "--json")
        assert result.code == 0, result.err
        accuracy[name] = json.loads(result.out)["metrics"]["test_acc"]["value"]
    assert accuracy["8bit"] >= 0.9
    assert all(value == accuracy["8bit"] for value in accuracy.values()), accuracy


def test_digit_like_class_names_are_read_as_names_first(cli, workspace):
    """With class names "1".."10", label "1" is the name "1" (index 0), not index 1."""
    named = with_metadata(workspace, "named.safetensors",
                          **{"orthograd.labels": json.dumps([str(i) for i in range(1, 11)])})
    lines = (workspace / "test.csv").read_text().splitlines()[:41]
    rows = [lines[0]] + [",".join([*line.split(",")[:2], str(int(line.split(",")[2]) + 1)]) for line in lines[1:]]
    write(workspace / "named.csv", "\n".join(rows) + "\n")
    by_name = cli("evaluate", named, "--test", workspace / "named.csv", "--json")
    by_index = cli("evaluate", workspace / "model.safetensors", "--test", workspace / "test.csv", "--json")
    assert by_name.code == 0 and by_index.code == 0, by_name.err
    head = json.loads(cli("evaluate", workspace / "model.safetensors", "--test", write(
        workspace / "head.csv", "\n".join(lines) + "\n"), "--json").out)["metrics"]["test_acc"]["value"]
    assert json.loads(by_name.out)["metrics"]["test_acc"]["value"] == head


def test_an_original_that_is_not_the_recorded_base_is_a_warning(cli, workspace):
    run = with_metadata(workspace, "run.safetensors", **{"orthograd.sha256.base": "0" * 64})
    result = cli(*evaluate_args(workspace, run, "--original", workspace / "model.safetensors", "--json"))
    assert result.code == 0, result.err
    assert result.err.startswith("warning: ") and "is not the model" in result.err
    assert "is not the model" in json.loads(result.out)["warnings"][0]


def test_compare_that_fails_every_run_still_reports_each_reason_in_json(cli, workspace):
    result = cli(*compare_args(workspace, "--methods", "neggrad,neggrad_plus", "--set", "method.lr=1e30",
                               "--set", "method.stop.target_forget_acc=0", "--set", "method.max_steps=3",
                               "--require", "!target_reached", "--json"))
    assert result.code == 4 and "all 2 runs failed" in result.err
    report = json.loads(result.out)
    assert [row["failed"] for row in report["summary"]] == [1, 1]
    assert all("non-finite" in row["failures"][0] for row in report["summary"])
    assert not (workspace.parent / "out").exists()
