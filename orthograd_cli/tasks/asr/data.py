"""Decode the recordings a manifest lists, once, into waveforms and CTC targets.

Audio is read with soundfile (WAV, FLAC, OGG; no FFmpeg needed), mixed down to mono and resampled
to the model's rate with torchaudio. Batches are padded to their longest utterance and carry the
true lengths, which the model and the CTC loss use.
"""

from __future__ import annotations

from dataclasses import dataclass

from orthograd_cli.data.manifest import Manifest
from orthograd_cli.errors import ManifestError


@dataclass
class AudioSet:
    """Waveforms and token targets, in manifest order."""

    name: str
    manifest: Manifest
    waveforms: list  # 1-D float32 tensors at the model's rate
    targets: list  # 1-D int64 token tensors
    vocab: list[str]

    def __len__(self) -> int:
        return len(self.waveforms)

    @property
    def transcripts(self) -> list[str]:
        return [s.target for s in self.manifest.samples]

    def subset(self, index) -> "AudioSet":
        picked = index.tolist()
        manifest = Manifest(path=self.manifest.path, samples=[self.manifest.samples[i] for i in picked],
                            sha256=self.manifest.sha256)
        return AudioSet(self.name, manifest, [self.waveforms[i] for i in picked], [self.targets[i] for i in picked],
                        self.vocab)

    def batch(self, index, device: str = "cpu"):
        """((waveforms (B, T), lengths), (tokens (B, L), token_lengths)), zero-padded, on `device`."""
        import torch
        from torch.nn.utils.rnn import pad_sequence

        picked = index.tolist()
        waves = [self.waveforms[i] for i in picked]
        tokens = [self.targets[i] for i in picked]
        inputs = (pad_sequence(waves, batch_first=True).to(device),
                  torch.tensor([len(w) for w in waves], device=device))
        targets = (pad_sequence(tokens, batch_first=True).to(device),
                   torch.tensor([len(t) for t in tokens], device=device))
        return inputs, targets


def encode(text: str, vocab: list[str]):
    import torch

    index = {token: i for i, token in enumerate(vocab)}
    return torch.tensor([index[c] for c in text], dtype=torch.long)


def read_audio(sample, sample_rate: int):
    """One recording as a mono float32 tensor at `sample_rate`; unreadable or empty audio is a ManifestError."""
    import soundfile as sf
    import torch
    import torchaudio.functional as AF

    try:
        audio, rate = sf.read(str(sample.path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as exc:
        raise ManifestError(f"row {sample.row}: cannot read audio {sample.path} ({exc.__class__.__name__})",
                            "replace the file with a WAV or FLAC recording, or remove the row") from None
    if audio.shape[0] == 0:
        raise ManifestError(f"row {sample.row}: audio {sample.path} is empty (0 samples)",
                            "replace the file or remove the row")
    wave = torch.from_numpy(audio.mean(axis=1))
    if rate != sample_rate:
        wave = AF.resample(wave, rate, sample_rate)
    return wave.contiguous()


def load_audio_set(name: str, manifest: Manifest, vocab: list[str], sample_rate: int) -> AudioSet:
    waveforms, targets = [], []
    for sample in manifest.samples:
        try:
            waveforms.append(read_audio(sample, sample_rate))
        except ManifestError as err:
            raise ManifestError(f"{manifest.path} {err}", err.hint) from None
        targets.append(encode(sample.target, vocab))
    return AudioSet(name=name, manifest=manifest, waveforms=waveforms, targets=targets, vocab=vocab)
