"""What a Hugging Face CTC model's folder tells the asr task beyond its weights, as `orthograd.*` metadata:
its vocabulary (vocab.json, the word delimiter as a space, blank = pad token = id 0), the sampling rate and
the waveform normalisation. models/hf_folder.py reads the folder and asks the task."""

from __future__ import annotations

import json
from pathlib import Path

from orthograd_cli.errors import CheckpointError
from orthograd_cli.models.hf_folder import processor_path, read_json, read_json_if_present, whole


def folder_metadata(folder: Path, config: dict, processor: dict | None) -> dict[str, str]:
    if processor is None:
        raise CheckpointError(f"{folder}: no preprocessor_config.json or processor_config.json, so the sampling "
                              "rate and the waveform normalisation are unknown", "save the model's processor into the folder "
                              "(processor.save_pretrained(folder))")
    vocabulary = ctc_vocabulary(folder, config)
    head = config.get("vocab_size")
    if isinstance(head, int) and len(vocabulary) > head:  # ids past the head would have no logit
        raise CheckpointError(f"{folder / 'vocab.json'}: {len(vocabulary)} tokens, but the model's head has "
                              f"{head} outputs (config.json vocab_size)", "use the tokenizer the model was trained with")
    path = processor_path(folder)
    return {"vocab": json.dumps(vocabulary), "sample_rate": str(whole(processor, "sampling_rate", path, 16_000)),
            "data": json.dumps({"audio_normalize": "utterance" if processor.get("do_normalize", True) else "none"})}


def ctc_vocabulary(folder: Path, config: dict) -> list[str]:
    """The CTC tokens by id, the tokenizer's word delimiter written as a space; the blank (pad) must be id 0."""
    if not (folder / "vocab.json").is_file():
        raise CheckpointError(f"{folder}: a CTC model folder needs its tokenizer's vocab.json",
                              "save the processor or tokenizer into the folder (save_pretrained(folder))")
    vocab = read_json(folder / "vocab.json")
    tokenizer = read_json_if_present(folder / "tokenizer_config.json") or {}
    delimiter = tokenizer.get("word_delimiter_token", "|")
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in vocab.values()):
        raise CheckpointError(f"{folder / 'vocab.json'}: token ids must be whole numbers",
                              "save the tokenizer into the folder (save_pretrained(folder))")
    by_id = sorted(vocab.items(), key=lambda item: item[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise CheckpointError(f"{folder / 'vocab.json'}: token ids are not 0..{len(by_id) - 1}")
    if config.get("pad_token_id") not in (None, 0):
        raise CheckpointError(f"{folder}: the CTC blank (pad_token_id {config.get('pad_token_id')}) is not token 0",
                              "orthograd's CTC decoding takes token 0 as the blank")
    return [" " if token == delimiter else token for token, _ in by_id]
