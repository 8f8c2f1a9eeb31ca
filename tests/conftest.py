"""Shared fixtures: real handwritten digits on disk, a resnet18 trained on them, and the real CLI."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from orthograd_cli.cli.app import main

FORGET_CLASS = 7


@pytest.fixture(scope="session")
def image_cache(tmp_path_factory) -> Path:
    """An ORTHOGRAD_CACHE whose demo/digits folder holds the digits and the model the fixtures build, so
    `orthograd demo` in a test reuses them (as speech_cache does for the speech demo)."""
    return tmp_path_factory.mktemp("image_cache")


@pytest.fixture(scope="session")
def digits(image_cache) -> Path:
    from orthograd_cli.data.digits import build_digits

    return build_digits(image_cache / "demo" / "digits", seed=0, forget_class=FORGET_CLASS)


@pytest.fixture(scope="session")
def trained_model(digits) -> Path:
    """resnet18 at 32 px trained on the digits train split (about 15 s on 2 cores)."""
    from orthograd_cli.jobs.demo import demo_checkpoint

    return demo_checkpoint(digits, seed=0)


@pytest.fixture(scope="session")
def recipe():
    from orthograd_cli.recipe import Recipe

    return Recipe()


@pytest.fixture(scope="session")
def image_sets(digits, recipe):
    from orthograd_cli.data.digits import LABELS
    from orthograd_cli.loading import load_set
    from orthograd_cli.models.registry import ModelInfo

    info = ModelInfo(arch="resnet18", num_classes=10, labels=LABELS)

    def load(name: str, relative: str):
        return load_set(digits / relative, info, recipe, name)

    return {
        "forget": load("forget", "sample/forget.csv"),
        "retain": load("retain", "sample/retain.csv"),
        "test": load("test", "test.csv"),
        "class_forget": load("forget", f"class{FORGET_CLASS}/forget.csv"),
        "class_retain": load("retain", f"class{FORGET_CLASS}/retain.csv"),
    }


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*args: str | Path) -> CliResult:
    """The real `orthograd` entry point in-process, outside any fixture (for module-scoped fixtures)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as done:
            code = int(done.code or 0)
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def class_run(tmp_path_factory, trained_model, digits) -> Path:
    """`orthograd forget` of every training image of one digit, through the real CLI, with the whole test
    set (class-wise, the tool splits off the forgotten class's test images itself)."""
    out = tmp_path_factory.mktemp("class_run") / "run"
    folder = digits / f"class{FORGET_CLASS}"
    result = run_cli("forget", trained_model, "--forget", folder / "forget.csv", "--retain", folder / "retain.csv",
                     "--test", digits / "test.csv", "--recipe", "resnet18_digits_class", "--out", out, "--quiet",
                     "--json")
    assert result.code == 0, result.err
    return out


@pytest.fixture(scope="session")
def retrained_without_class(digits):
    """The gold standard: the demo's resnet18 recipe trained on the digits without class 7 (about 15 s)."""
    from orthograd_cli.data.digits import LABELS
    from orthograd_cli.loading import load_set
    from orthograd_cli.models.checkpoint import save_checkpoint
    from orthograd_cli.models.registry import ModelInfo, build_model
    from orthograd_cli.recipe import Recipe
    from orthograd_cli.training import train_classifier

    lines = (digits / "train.csv").read_text().splitlines()
    kept = [lines[0]] + [line for line in lines[1:] if line.rsplit(",", 1)[1] != str(FORGET_CLASS)]
    (digits / "train_without_class.csv").write_text("\n".join(kept) + "\n")
    info = ModelInfo(arch="resnet18", num_classes=10, labels=LABELS)
    train = load_set(digits / "train_without_class.csv", info, Recipe(), "train")
    model = train_classifier(build_model(info), train, epochs=4, seed=0)
    path = digits / "retrained_without_class.safetensors"
    save_checkpoint(model.state_dict(), path, info.metadata())
    return path


@pytest.fixture
def cli(capsys):
    """Run the real `orthograd` entry point in-process; returns exit code, stdout and stderr."""

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as done:
            code = int(done.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root, to prove inputs were left untouched."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


# --- speech: espeak-ng voices and a small wav2vec2-style CTC model trained on them ---------------

FORGET_VOICE = "en-gb-scotland+m2"


@pytest.fixture(scope="session")
def speech_cache(tmp_path_factory) -> Path:
    """An ORTHOGRAD_CACHE whose demo/speech folder holds the corpus and models the fixtures build,
    so `orthograd demo asr` in a test reuses them."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def speech_corpus(speech_cache) -> Path:
    """Nine espeak-ng voices, 60 training and 12 test utterances each, 16 kHz WAV (about 10 s)."""
    from orthograd_cli.data.speech import build_speech_corpus, espeak_available

    assert espeak_available(), "espeak-ng is required for the speech tests: apt-get install -y espeak-ng"
    return build_speech_corpus(speech_cache / "demo" / "speech")


@pytest.fixture(scope="session")
def forget_voice(speech_corpus) -> Path:
    from orthograd_cli.data.speech import slug

    return speech_corpus / "voices" / slug(FORGET_VOICE)


@pytest.fixture(scope="session")
def asr_model(speech_corpus) -> Path:
    """The demo's CTC model trained on every voice (about 80 s on 2 cores)."""
    from orthograd_cli.jobs.demo_asr import speech_checkpoint

    return speech_checkpoint(speech_corpus)


@pytest.fixture(scope="session")
def asr_retrained(speech_corpus, forget_voice) -> Path:
    """The gold standard: the same recipe trained without the forget voice (about 70 s)."""
    from orthograd_cli.jobs.demo_asr import speech_checkpoint

    return speech_checkpoint(speech_corpus, str(forget_voice.relative_to(speech_corpus) / "train_without.csv"),
                             name="wav2vec2_digits_without_voice")


@pytest.fixture(scope="session")
def hf_ctc_folder(speech_cache, speech_corpus) -> Path:
    """A tiny Hugging Face Wav2Vec2ForCTC folder (do_normalize: true) trained on every voice (about 2 minutes)."""
    from tests.hf_models import trained_wav2vec2

    return trained_wav2vec2(speech_cache / "hf_wav2vec2", speech_corpus)


@pytest.fixture(scope="session")
def whisper_folder(speech_cache, speech_corpus) -> Path:
    """The demo's tiny Whisper folder (jobs/demo_whisper.py) trained on every voice (about 90 s)."""
    from orthograd_cli.jobs.demo_whisper import whisper_checkpoint

    return whisper_checkpoint(speech_corpus)


@pytest.fixture(scope="session")
def hf_vit_folder(tmp_path_factory, digits) -> Path:
    """A tiny Hugging Face ViTForImageClassification folder trained on the digits (about 25 s)."""
    from tests.hf_models import trained_vit

    return trained_vit(tmp_path_factory.mktemp("hf") / "vit", digits)


# --- text: question/answer pairs about made-up authors and a small Llama trained on them ------------


@pytest.fixture(scope="session")
def text_cache(tmp_path_factory) -> Path:
    """An ORTHOGRAD_CACHE whose demo/text folder holds the corpus and models the fixtures build, so
    `orthograd demo text` in a test reuses them."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def text_corpus(text_cache) -> Path:
    from orthograd_cli.data.text import build_text_corpus

    return build_text_corpus(text_cache / "demo" / "text")


@pytest.fixture(scope="session")
def text_model(text_corpus) -> Path:
    """The demo's Llama folder (jobs/demo_text.py) trained on the 40 training authors (about 30 s)."""
    from orthograd_cli.jobs.demo_text import text_checkpoint

    return text_checkpoint(text_corpus)


@pytest.fixture(scope="session")
def text_retrained(text_corpus) -> Path:
    """The same Llama trained without the 4 authors to forget: the reference (about 30 s)."""
    from orthograd_cli.jobs.demo_text import text_checkpoint

    return text_checkpoint(text_corpus, "train_without_forget.jsonl", name="llama_authors_retrained")
