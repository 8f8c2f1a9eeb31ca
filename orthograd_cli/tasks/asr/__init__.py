"""Speech recognition with a CTC head: manifests `path,transcript,speaker[,id]`, the CTC loss that
OrthoGrad differentiates, greedy decoding and WER.

A batch's inputs are `(waveforms (B, T), lengths (B,))`; the model (any torchaudio wav2vec2-family
model with an `aux` head) returns `(logits (B, F, V), frame_lengths (B,))`. Targets are
`(tokens (B, L), token_lengths (B,))`. Token 0 is the CTC blank.

A sample's loss is its CTC loss divided by its transcript length, so long and short utterances
weigh alike; the batch loss is the mean of those. Accuracy is word accuracy, max(0, 1 − WER).
"""

from __future__ import annotations

from orthograd_cli.errors import CheckpointError, ManifestError
from orthograd_cli.tasks.base import ExtraMetric, SetResult, Task

BLANK = 0


class AsrTask(Task):
    name = "asr"
    columns = ("path", "transcript", "speaker")
    accuracy_name = "word accuracy max(0, 1 − WER)"
    max_test_drop = 0.03  # a WER rise of 0.03: one word in 33 (the zoo's bar for the other voices)
    extra_metrics = {"wer": ExtraMetric("word error rate", higher_is_better=False)}
    plot_metric = ("wer", "WER")
    unsupported_backends = {"vmap": ("F.ctc_loss has no vmap rule", "use hooks (exact for LoRA) or loop")}

    def parse_row(self, values, where, info):
        vocab = info.vocab if info is not None else None
        text = in_vocabulary_case(" ".join(values["transcript"].split()), vocab)
        if not text:
            raise ManifestError(f"{where}: empty transcript", "every recording needs its transcript")
        if vocab is not None:
            unknown = sorted({c for c in text if c not in vocab})
            if unknown:
                raise ManifestError(f"{where}: transcript has characters outside the model's vocabulary: "
                                    f"{''.join(unknown)!r}", f"the model knows {''.join(t for t in vocab if len(t) == 1)!r}; "
                                    "spell them out or remove the row")
        return text, values["speaker"]

    def load_set(self, name, manifest, recipe, info, cache=None):
        from orthograd_cli.tasks.asr.data import load_audio_set

        return load_audio_set(name, manifest, info.vocab, info.sample_rate, recipe.data.num_workers, cache,
                              recipe.data.audio_normalize)

    def folder_metadata(self, folder, config, processor):
        from orthograd_cli.tasks.asr.folder import folder_metadata

        return folder_metadata(folder, config, processor)

    def complete_info(self, checkpoint, arch, spec, config):
        from orthograd_cli.models.registry import ModelInfo

        vocab = spec.vocab or checkpoint.meta_json("vocab")
        if not vocab:
            raise CheckpointError(f"{checkpoint.path}: a speech model needs its vocabulary, and there is no "
                                  "'orthograd.vocab' metadata", "set model.vocab in the recipe (CTC blank first)")
        if len(set(vocab)) != len(vocab):
            raise CheckpointError(f"{checkpoint.path}: the vocabulary repeats a token", "every token once, blank first")
        rate = spec.sample_rate or checkpoint.meta_int("sample_rate", 16_000)
        return ModelInfo(arch=arch, num_classes=len(vocab), task=self.name, config=config, vocab=list(vocab),
                         sample_rate=rate)

    chance_hint = ("check the preprocessing the checkpoint was trained with (data.audio_normalize, the sample "
                   "rate), the vocabulary and its order (model.vocab, blank first) and that this is the trained "
                   "checkpoint")

    def at_chance(self, result, info):
        wer = result.extra["wer"]
        return f"(WER {wer:.3f}: hardly a word right)" if wer >= 0.95 else None

    def shape_hint(self, info):
        return "set model.vocab to the checkpoint's tokens"

    def per_sample_losses(self, outputs, targets):
        import torch.nn.functional as F

        logits, frame_lengths = outputs
        tokens, token_lengths = targets
        log_probs = F.log_softmax(logits, dim=-1).transpose(0, 1)  # (F, B, V), as ctc_loss wants
        # zero_infinity: an utterance too short for its transcript adds no gradient instead of inf
        losses = F.ctc_loss(log_probs, tokens, frame_lengths, token_lengths, blank=BLANK, reduction="none",
                            zero_infinity=True)
        return losses / token_lengths.clamp(min=1).to(losses.dtype)

    def score(self, model, audio_set, batch_size, device):
        hypotheses, losses = self.transcribe(model, audio_set, batch_size, device)
        references = self.references(audio_set)
        wer = word_error_rate(references, [self.comparable(text) for text in hypotheses])
        return SetResult(n=len(audio_set), accuracy=word_accuracy(wer), losses=losses, extra={"wer": wer},
                         weight=word_count(references))  # corpus WER: edits / words

    def transcribe(self, model, audio_set, batch_size, device):
        """(hypotheses, per-utterance losses) for every utterance in order."""
        return transcribe(model, audio_set, batch_size, device)

    def accuracy_unit(self, audio_set) -> float:
        """One reference word: word accuracy is 1 − WER over the set's words."""
        return 1 / max(word_count(self.references(audio_set)), 1)

    def references(self, audio_set) -> list[str]:
        """The set's transcripts as WER compares them."""
        from orthograd_cli.tasks.asr.data import transcripts

        return [self.comparable(text) for text in transcripts(audio_set)]

    def comparable(self, text: str) -> str:
        """Text as WER compares it (CTC transcripts and hypotheses are already in the vocabulary's case)."""
        return text

    def combine(self, parts):
        """WER averaged over the parts' reference words (= total edits / total words); accuracy from it."""
        whole = super().combine(parts)
        whole.accuracy = word_accuracy(whole.extra["wer"])
        return whole


def in_vocabulary_case(text: str, vocab: list[str] | None) -> str:
    """Transcripts in the case the model spells: upper case for a vocabulary of capitals only (many Hugging
    Face CTC models), else lower case."""
    letters = [token for token in vocab or () if len(token) == 1 and token.isalpha()]
    return text.upper() if letters and all(token.isupper() for token in letters) else text.lower()


def greedy_decode(logits, frame_lengths, vocab: list[str]) -> list[str]:
    """Best token per frame, repeats merged, blanks dropped, whitespace normalised."""
    best = logits.argmax(-1).cpu()
    texts = []
    for row, length in zip(best, frame_lengths.cpu().tolist()):
        tokens = row[:length].tolist()
        kept = [t for i, t in enumerate(tokens) if t != BLANK and (i == 0 or t != tokens[i - 1])]
        texts.append(" ".join("".join(vocab[t] for t in kept).split()))
    return texts


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus-level WER (total edits / total reference words), as jiwer computes it."""
    import jiwer

    return float(jiwer.wer(references, hypotheses))


def word_count(texts: list[str]) -> int:
    """The words WER divides its edits by."""
    return sum(len(text.split()) for text in texts)


def word_accuracy(wer: float) -> float:
    return max(0.0, 1.0 - wer)


def transcribe(model, audio_set, batch_size: int, device: str):
    """(hypotheses, per-utterance losses) for every utterance in order, batched, autograd off."""
    import torch

    was_training = model.training
    model.eval()
    texts, losses = [], []
    with torch.inference_mode():
        for inputs, targets in audio_set.batches(batch_size, device):
            logits, frame_lengths = model(*inputs)
            texts += greedy_decode(logits, frame_lengths, audio_set.decoder.vocab)
            losses.append(TASK.per_sample_losses((logits.float(), frame_lengths), targets).cpu())
    model.train(was_training)
    return texts, torch.cat(losses) if losses else torch.empty(0)


TASK = AsrTask()
# the task's loss functions, as the gradient code and the methods call them
mean_loss, per_sample_losses = TASK.mean_loss, TASK.per_sample_losses
