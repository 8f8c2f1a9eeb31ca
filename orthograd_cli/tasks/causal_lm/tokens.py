"""A causal LM folder's tokenizer: manifests' prompts, completions and texts to token ids, and generated ids back
to text. Read offline with `trust_remote_code=False`, after the folder's JSON files are checked for code of
their own."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from orthograd_cli.errors import CheckpointError

TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")


@lru_cache(maxsize=4)
def load_tokenizer(folder: str):
    import transformers

    from orthograd_cli.models.hf_folder import refuse_remote_code

    refuse_remote_code(Path(folder))  # checked on reading the folder too; here because this reads its files again
    if not any((Path(folder) / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(f"{folder}: no tokenizer files ({' or '.join(TOKENIZER_FILES)})",
                              "save the tokenizer into the folder (tokenizer.save_pretrained(folder))")
    try:
        return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{folder}: the tokenizer cannot be read ({type(exc).__name__})",
                              "save the tokenizer into the folder (tokenizer.save_pretrained(folder))") from None


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
