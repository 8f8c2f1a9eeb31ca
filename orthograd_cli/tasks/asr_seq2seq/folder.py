"""What a Hugging Face Whisper folder tells the asr_seq2seq task beyond its weights, as `orthograd.*`
metadata: the feature extractor's settings and the decoding settings its tokenizer and generation config
give. models/hf_folder.py reads the folder and asks the task."""

from __future__ import annotations

import json
from pathlib import Path

from orthograd_cli.errors import CheckpointError
from orthograd_cli.models.hf_folder import CONFIG, processor_path, read_json_if_present, whole


def folder_metadata(folder: Path, config: dict, processor: dict | None) -> dict[str, str]:
    """Whisper: the feature extractor's settings (log-mel size, window, sampling rate) and the decoding
    settings: the prompt the tokenizer writes before a transcript (start of transcript, language, task,
    no timestamps), the end token, the longest output, and the tokens the generation config suppresses."""
    from orthograd_cli.tasks.asr_seq2seq.tokens import decoding_settings

    if processor is None or "feature_size" not in processor or "chunk_length" not in processor:
        raise CheckpointError(f"{folder}: no Whisper feature extractor settings (preprocessor_config.json with "
                              "feature_size and chunk_length)", "save the processor into the folder "
                              "(WhisperProcessor.save_pretrained(folder))")
    generation = read_json_if_present(folder / "generation_config.json") or {}
    path = processor_path(folder)
    for key in ("feature_size", "chunk_length", "hop_length", "n_fft"):
        if key in processor:
            whole(processor, key, path)
    whole(config, "max_target_positions", folder / CONFIG, 448)
    whole(config, "vocab_size", folder / CONFIG)
    return {"sample_rate": str(whole(processor, "sampling_rate", path, 16_000)),
            "seq2seq": json.dumps({"features": processor, **decoding_settings(folder, config, generation)})}
