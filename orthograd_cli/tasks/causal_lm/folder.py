"""What a Hugging Face causal-LM folder tells the causal_lm task beyond its weights, as `orthograd.causal_lm`
metadata: the context length (from config.json), the end and padding tokens and the padding side (from its
tokenizer). models/hf_folder.py reads the folder and asks the task; the tokenizer is read again when the
manifests' text is encoded (tokens.py)."""

from __future__ import annotations

import json
from pathlib import Path

from orthograd_cli.errors import CheckpointError
from orthograd_cli.models.hf_folder import CONFIG

CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")


def context_length(folder: Path, config: dict) -> int:
    """The longest sequence the model places (its position table, or its rotary embedding's trained length)."""
    for key in CONTEXT_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            return value
    raise CheckpointError(f"{folder / CONFIG}: no context length ({' or '.join(CONTEXT_KEYS[:2])})",
                          "restore config.json from the model's folder")


def folder_metadata(folder: Path, config: dict, processor: dict | None) -> dict[str, str]:
    from orthograd_cli.tasks.causal_lm.tokens import load_tokenizer

    tokenizer = load_tokenizer(str(folder))
    eos = tokenizer.eos_token_id
    if eos is None:
        raise CheckpointError(f"{folder}: the tokenizer has no end-of-sequence token, so a completion's end cannot be "
                              "learnt or forgotten", "set eos_token in tokenizer_config.json")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos  # padding is masked anyway
    side = tokenizer.padding_side if tokenizer.padding_side in ("left", "right") else "right"
    vocab = config.get("vocab_size")
    if not isinstance(vocab, int) or vocab < len(tokenizer):
        raise CheckpointError(f"{folder / CONFIG}: vocab_size {vocab!r} is smaller than the tokenizer's "
                              f"{len(tokenizer)} tokens", "use the tokenizer saved with this model")
    settings = {"context": context_length(folder, config), "eos": int(eos), "pad": int(pad), "padding_side": side}
    return {"causal_lm": json.dumps(settings)}
