"""A small speech corpus synthesised by espeak-ng: connected digit strings in several voices.

Used by the tests and by `orthograd demo asr`. Every voice speaks its own seeded utterances at
varied speed and pitch; the audio is written as 16 kHz mono WAV with manifests
(`path,transcript,speaker,id`):

    audio/<voice>/<n>.wav
    train.csv, test.csv          every voice; test utterances are never trained on
    voices/<voice>/forget.csv    that voice's training utterances (what a deletion request names)
    voices/<voice>/forget_test.csv   its test utterances (how well the model still recognises it)
    voices/<voice>/retain.csv    a small slice of the other voices' training utterances
    voices/<voice>/test.csv      the other voices' test utterances
    voices/<voice>/train_without.csv  the training set without the voice (to retrain the reference)
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import subprocess
from pathlib import Path

from orthograd_cli.errors import UsageError

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# Distinct voices (en-gb+f1/f2/m3 sound exactly like en-gb, so they are not used).
VOICES = ["en-us", "en-us+m1", "en-us+f2", "en-us+m3", "en-us+f4", "en+f1", "en+m2", "en-gb-scotland+m2",
          "en-029+f3"]
SAMPLE_RATE = 16_000
FIELDS = ["path", "transcript", "speaker", "id"]


def vocabulary(words: list[str] = DIGITS) -> list[str]:
    """CTC tokens: blank first, then the word separator, then every letter the words use."""
    return ["<blank>", " "] + sorted({c for w in words for c in w})


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def synthesise(text: str, voice: str, speed: int, pitch: int, path: Path) -> None:
    """espeak-ng → WAV at its own rate (22,050 Hz) → 16 kHz mono float WAV at `path`."""
    import soundfile as sf
    import torch
    import torchaudio.functional as AF

    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), text],
                   check=True, capture_output=True)
    audio, rate = sf.read(str(raw), dtype="float32", always_2d=True)
    raw.unlink()
    wave = AF.resample(torch.from_numpy(audio.mean(1)), rate, SAMPLE_RATE)
    sf.write(str(path), wave.numpy(), SAMPLE_RATE, subtype="PCM_16")


def slug(voice: str) -> str:
    return voice.replace("+", "_")


def build_speech_corpus(root: str | Path, voices: list[str] = VOICES, train_per_voice: int = 60,
                        test_per_voice: int = 12, retain_share: float = 0.1, seed: int = 0) -> Path:
    """Synthesise the corpus into `root` (skipped when `root/train.csv` exists) and return `root`."""
    root = Path(root)
    if (root / "train.csv").is_file():
        return root
    if not espeak_available():
        raise UsageError("espeak-ng is not installed, so the speech corpus cannot be synthesised",
                         "apt-get update && apt-get install -y espeak-ng")
    rng = random.Random(seed)
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    rows: dict[str, dict[str, list[dict]]] = {}
    for voice in voices:
        (tmp / "audio" / slug(voice)).mkdir(parents=True)
        rows[voice] = {"train": [], "test": []}
        for n in range(train_per_voice + test_per_voice):
            text = " ".join(rng.choice(DIGITS) for _ in range(rng.randint(3, 5)))
            relative = Path("audio") / slug(voice) / f"{n:03d}.wav"
            synthesise(text, voice, rng.randint(140, 185), rng.randint(35, 65), tmp / relative)
            split = "train" if n < train_per_voice else "test"
            rows[voice][split].append({"path": str(relative), "transcript": text, "speaker": voice,
                                       "id": f"{slug(voice)}/{n:03d}"})
    _write(tmp / "train.csv", [r for v in voices for r in rows[v]["train"]], tmp)
    _write(tmp / "test.csv", [r for v in voices for r in rows[v]["test"]], tmp)
    for voice in voices:
        folder = tmp / "voices" / slug(voice)
        others = [v for v in voices if v != voice]
        others_train = [r for v in others for r in rows[v]["train"]]
        retain = random.Random(seed + 1).sample(others_train, max(1, int(retain_share * len(others_train))))
        _write(folder / "forget.csv", rows[voice]["train"], tmp)
        _write(folder / "forget_test.csv", rows[voice]["test"], tmp)
        _write(folder / "retain.csv", sorted(retain, key=lambda r: r["id"]), tmp)
        _write(folder / "test.csv", [r for v in others for r in rows[v]["test"]], tmp)
        _write(folder / "train_without.csv", others_train, tmp)
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    return root


def _write(path: Path, rows: list[dict], root: Path) -> None:
    """A manifest whose paths are relative to its own folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "path": os.path.relpath(root / row["path"], path.parent)})
