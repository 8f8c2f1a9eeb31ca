"""`orthograd demo asr`: forget one speaker from a small speech recogniser, nothing to download.

espeak-ng speaks connected digit strings in nine voices (16 kHz WAV + manifests); a 3-layer
wav2vec2-style CTC model (or, with `--model whisper`, a tiny Whisper folder: jobs/demo_whisper.py) is
trained on them (cached), and OrthoGrad then forgets one clearly distinct voice (en-gb-scotland+m2)
with the shipped speaker-forgetting recipe.
"""

from __future__ import annotations

from pathlib import Path

from orthograd_cli.data.speech import SAMPLE_RATE, build_speech_corpus, slug, vocabulary
from orthograd_cli.jobs.demo import cache_dir
from orthograd_cli.report import DemoReport

FORGET_VOICE = "en-gb-scotland+m2"
RECIPE = "wav2vec2_model_espeak_speaker"
# A small wav2vec2: 4 conv layers with layer norm (padding-invariant, unlike group_norm) striding
# 320 samples (50 frames/s at 16 kHz), and 3 pre-norm transformer layers of width 96. Post-norm
# layers, or 100 frames/s with 48 channels, mostly stalled on this corpus (WER 0.7-0.8 after 15 epochs).
SMALL_CTC_CONFIG = {
    "extractor_mode": "layer_norm",
    "extractor_conv_layer_config": [[64, 10, 5], [64, 4, 4], [64, 4, 4], [64, 4, 4]],
    "extractor_conv_bias": False,
    "encoder_embed_dim": 96,
    "encoder_projection_dropout": 0.0,
    "encoder_pos_conv_kernel": 32,
    "encoder_pos_conv_groups": 4,
    "encoder_num_layers": 3,
    "encoder_num_heads": 4,
    "encoder_attention_dropout": 0.0,
    "encoder_ff_interm_features": 192,
    "encoder_ff_interm_dropout": 0.0,
    "encoder_dropout": 0.0,
    "encoder_layer_norm_first": True,
    "encoder_layer_drop": 0.0,
}


def speech_info():
    from orthograd_cli.models.registry import ModelInfo

    vocab = vocabulary()
    return ModelInfo(arch="wav2vec2_model", num_classes=len(vocab), task="asr", config=SMALL_CTC_CONFIG,
                     vocab=vocab, sample_rate=SAMPLE_RATE)


def speech_checkpoint(corpus: Path, train_manifest: str = "train.csv", name: str = "wav2vec2_digits",
                      seed: int = 0, epochs: int = 10, progress=None) -> Path:
    """A small CTC model trained on `corpus/train_manifest`, cached beside the corpus."""
    import torch

    from orthograd_cli.loading import load_set
    from orthograd_cli.models.checkpoint import save_checkpoint
    from orthograd_cli.models.registry import build_model
    from orthograd_cli.recipe import Recipe
    from orthograd_cli.training import train_ctc

    path = corpus / f"{name}_seed{seed}.safetensors"
    if path.exists():
        return path
    info = speech_info()
    train = load_set(corpus / train_manifest, info, Recipe(), "train")
    torch.manual_seed(seed)
    model = train_ctc(build_model(info), train, epochs=epochs, batch_size=8, lr=2e-3, seed=seed, progress=progress)
    save_checkpoint(model.state_dict(), path, info.metadata())
    return path


def run_demo_asr(out_dir: Path, observer=None, model: str = "wav2vec2") -> DemoReport:
    from orthograd_cli.jobs.demo_whisper import RECIPE as WHISPER_RECIPE
    from orthograd_cli.jobs.demo_whisper import whisper_checkpoint
    from orthograd_cli.jobs.forget import run_forget
    from orthograd_cli.recipe import load_recipe

    corpus = build_speech_corpus(cache_dir() / "speech")
    checkpoint, recipe_name = (whisper_checkpoint(corpus), WHISPER_RECIPE) if model == "whisper" else \
        (speech_checkpoint(corpus), RECIPE)
    voice = corpus / "voices" / slug(FORGET_VOICE)
    recipe, _ = load_recipe(recipe_name)
    manifests = {name: voice / f"{name}.csv" for name in ("forget", "retain", "test", "forget_test")}
    run = run_forget(str(checkpoint), manifests, recipe, str(out_dir / "speaker"), overwrite=True,
                     observer=observer)
    return DemoReport(scenario="asr", checkpoint=str(checkpoint), data=str(corpus), forget_voice=FORGET_VOICE,
                      runs={"speaker": run})
