"""A Whisper folder's tokenizer: the decoder prompt, transcripts to token ids and back, and the text
normalisation WER is computed on.

The prompt is what Whisper's tokenizer writes before every transcript when it transcribes without
timestamps: `<|startoftranscript|><|en|><|transcribe|><|notimestamps|>` (language and task tokens only
where the vocabulary has them). A transcript's tokens follow it, then `<|endoftext|>`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from orthograd_cli.errors import CheckpointError

DEFAULT_LANGUAGE = "en"
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


@lru_cache(maxsize=4)
def load_tokenizer(folder: str):
    """The folder's own tokenizer (vocab.json + merges.txt or tokenizer.json), read offline."""
    from orthograd_cli.models.hf_folder import read_tokenizer

    return read_tokenizer(folder, TOKENIZER_FILES,
                          "save the tokenizer into the folder (WhisperProcessor.save_pretrained(folder))")


def decoding_settings(folder: Path, config: dict, generation: dict) -> dict:
    """The prompt, end token, longest output and suppressed tokens of a Whisper folder (plain values)."""
    tokenizer = load_tokenizer(str(folder))
    vocab = tokenizer.get_vocab()
    language = getattr(tokenizer, "language", None) or (DEFAULT_LANGUAGE if f"<|{DEFAULT_LANGUAGE}|>" in vocab
                                                         else None)
    if not hasattr(tokenizer, "set_prefix_tokens") or "<|startoftranscript|>" not in vocab:
        raise CheckpointError(f"{folder}: the tokenizer is not a Whisper tokenizer (no <|startoftranscript|>)",
                              "save the model's WhisperTokenizer into the folder")
    tokenizer.set_prefix_tokens(language=language, task="transcribe" if "<|transcribe|>" in vocab else None,
                                predict_timestamps=False)
    prompt = list(tokenizer.prefix_tokens)
    longest = int(config.get("max_target_positions", 448))
    return {"prompt": prompt, "eos": int(tokenizer.eos_token_id), "max_new_tokens": longest - len(prompt),
            "suppress_tokens": list(generation.get("suppress_tokens") or []),
            "begin_suppress_tokens": list(generation.get("begin_suppress_tokens") or [])}


def transcript_ids(folder: str, texts: list[str]) -> dict[str, list[int]]:
    """Each distinct transcript's token ids (no prompt, no end token)."""
    tokenizer = load_tokenizer(folder)
    distinct = sorted(set(texts))
    return dict(zip(distinct, tokenizer(distinct, add_special_tokens=False).input_ids))


def decode_ids(folder: str, sequences) -> list[str]:
    """Generated token ids (prompt already removed) to text, special tokens dropped."""
    return load_tokenizer(folder).batch_decode(sequences, skip_special_tokens=True)


def normalized(text: str) -> str:
    """What WER compares: Whisper's basic normaliser (lower case, punctuation and bracketed asides removed,
    whitespace collapsed), so that a model writing "One, two." is not charged for its punctuation."""
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer

    return " ".join(BasicTextNormalizer()(text).split())
