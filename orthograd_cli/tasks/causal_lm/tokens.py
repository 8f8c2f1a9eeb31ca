"""A causal LM folder's tokenizer: manifests' prompts, completions and texts to token ids, and generated ids back
to text. Read offline with `trust_remote_code=False`, after the folder's JSON files are checked for code of
their own."""

from __future__ import annotations

from functools import lru_cache

TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")


@lru_cache(maxsize=4)
def load_tokenizer(folder: str):
    from orthograd_cli.models.hf_folder import read_tokenizer

    return read_tokenizer(folder, TOKENIZER_FILES, "save the tokenizer into the folder "
                                                   "(tokenizer.save_pretrained(folder))")


def encode(folder: str, texts: list[str], special: bool) -> dict[str, list[int]]:
    """Each distinct text's token ids; `special`: with the tokens the tokenizer puts before a text (e.g. BOS)."""
    tokenizer = load_tokenizer(folder)
    distinct = sorted(set(texts))
    if not distinct:
        return {}
    return dict(zip(distinct, tokenizer(distinct, add_special_tokens=special).input_ids))


def decode(folder: str, sequences) -> list[str]:
    """Token ids to text, special tokens dropped, whitespace collapsed."""
    return [" ".join(text.split()) for text in load_tokenizer(folder).batch_decode(sequences, skip_special_tokens=True)]
