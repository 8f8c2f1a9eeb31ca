"""Recordings a manifest lists, decoded into waveforms and CTC targets when a batch needs them
(data/streaming.py).

Audio is read with soundfile (WAV, FLAC, OGG; no FFmpeg needed), mixed down to mono and resampled to
the model's rate with torchaudio, in the worker processes. Batches are padded to their longest
utterance and carry the true lengths, which the model and the CTC loss use.
"""

from __future__ import annotations

from orthograd_cli.data.manifest import Manifest
from orthograd_cli.data.streaming import SampleCache, StreamedSet
from orthograd_cli.errors import ManifestError


class AudioDecoder:
    """One manifest row → (waveform, token ids); plain values only, so worker processes can take it."""

    def __init__(self, vocab: list[str], sample_rate: int, normalize: str = "none"):
        self.vocab, self.sample_rate, self.normalize = list(vocab), sample_rate, normalize
        self.index = {token: i for i, token in enumerate(vocab)}

    def decode(self, sample):
        import torch

        wave = read_audio(sample, self.sample_rate)
        if self.normalize == "utterance":
            wave = normalize_utterance(wave)
        return wave, torch.tensor([self.index[c] for c in sample.target], dtype=torch.long)

    def collate(self, items):
        """((waveforms (B, T), lengths), (tokens (B, L), token_lengths)), zero-padded."""
        import torch
        from torch.nn.utils.rnn import pad_sequence

        waves = [wave for wave, _ in items]
        tokens = [token for _, token in items]
        return ((pad_sequence(waves, batch_first=True), torch.tensor([len(w) for w in waves])),
                (pad_sequence(tokens, batch_first=True), torch.tensor([len(t) for t in tokens])))


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


def normalize_utterance(wave):
    """Zero mean, unit variance over the utterance, as Hugging Face's Wav2Vec2FeatureExtractor (do_normalize)
    computes it: (x − mean) / sqrt(var + 1e-7), population variance. Padding added later stays 0."""
    import torch

    return (wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7)


def load_audio_set(name: str, manifest: Manifest, vocab: list[str], sample_rate: int, num_workers: int = 0,
                   cache: SampleCache | None = None, normalize: str = "none") -> StreamedSet:
    """The manifest's recordings as a streamed set (nothing is decoded yet)."""
    return StreamedSet(name, manifest, AudioDecoder(vocab, sample_rate, normalize), cache, num_workers)


def transcripts(audio_set) -> list[str]:
    return [sample.target for sample in audio_set.manifest.samples]
