"""Recordings as Whisper sees them: log-mel features from the folder's feature extractor (padded to its
window, e.g. 30 s) and the transcript's tokens behind the decoder prompt.

A batch's inputs are `(features (B, mels, frames), decoder_input_ids (B, L))`; its targets are
`(labels (B, L), first (B,), ends (B,))`: labels are the decoder inputs shifted left by one, and an
utterance's loss covers positions first..ends−1 (its transcript tokens and the end token; the prompt's
tokens are given at decoding time, not predicted, and padding counts nowhere).
"""

from __future__ import annotations

from orthograd_cli.data.manifest import Manifest
from orthograd_cli.data.streaming import SampleCache, StreamedSet
from orthograd_cli.errors import ManifestError
from orthograd_cli.tasks.asr.data import read_audio


class WhisperDecoder:
    """One manifest row → (features, token ids); picklable, so worker processes can take it."""

    def __init__(self, folder: str, settings: dict, sample_rate: int, token_ids: dict[str, list[int]]):
        from transformers import WhisperFeatureExtractor

        self.folder, self.settings, self.sample_rate, self.token_ids = folder, settings, sample_rate, token_ids
        self.prompt, self.eos = list(settings["prompt"]), int(settings["eos"])
        self.extractor = WhisperFeatureExtractor.from_dict(settings["features"])

    def decode(self, sample):
        import torch

        wave = read_audio(sample, self.sample_rate)
        if len(wave) > self.extractor.n_samples:  # Whisper reads one window; long-form audio is not transcribed
            raise ManifestError(f"row {sample.row}: {sample.path} is {len(wave) / self.sample_rate:.1f} s, longer "
                                f"than the model's {self.extractor.chunk_length} s window",
                                "cut the recording into pieces that fit the window (one row each)")
        features = self.extractor(wave.numpy(), sampling_rate=self.sample_rate, return_tensors="pt").input_features
        tokens = self.prompt + self.token_ids[sample.target] + [self.eos]
        return features[0], torch.tensor(tokens, dtype=torch.long)

    def collate(self, items):
        """((features, decoder_input_ids), (labels, first, ends)), token rows padded with the end token."""
        import torch
        from torch.nn.utils.rnn import pad_sequence

        features = torch.stack([f for f, _ in items])
        tokens = pad_sequence([t for _, t in items], batch_first=True, padding_value=self.eos)
        ends = torch.tensor([len(t) - 1 for _, t in items])
        first = torch.full_like(ends, len(self.prompt) - 1)
        return (features, tokens[:, :-1]), (tokens[:, 1:], first, ends)


def load_whisper_set(name: str, manifest: Manifest, folder: str, settings: dict, sample_rate: int,
                     num_workers: int = 0, cache: SampleCache | None = None) -> StreamedSet:
    """The manifest's recordings as a streamed set (nothing decoded yet; transcripts tokenized once, here, and
    any too long for the decoder refused before model work starts)."""
    from orthograd_cli.tasks.asr_seq2seq.tokens import transcript_ids

    token_ids = transcript_ids(folder, [sample.target for sample in manifest.samples])
    longest = int(settings["max_new_tokens"]) - 1  # after the prompt, room for the transcript and the end token
    for sample in manifest.samples:
        if (count := len(token_ids[sample.target])) > longest:
            raise ManifestError(f"{manifest.path} row {sample.row}: the transcript is {count} tokens, more than "
                                f"the model's decoder takes after its prompt ({longest})",
                                "cut the recording and its transcript into shorter pieces")
    return StreamedSet(name, manifest, WhisperDecoder(folder, settings, sample_rate, token_ids), cache, num_workers)
