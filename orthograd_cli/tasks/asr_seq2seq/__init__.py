"""Speech recognition with an encoder-decoder (Whisper): manifests as for CTC (`path,transcript,speaker`),
log-mel features and the transcript's tokens behind the decoder prompt (data.py), teacher-forced token
cross-entropy as the loss, greedy decoding for WER.

The model (models/sources/transformers.py) takes `(features, decoder_input_ids)` and returns logits
(B, L, V). A sample's loss is the mean cross-entropy of its transcript tokens and end token, so long and
short utterances weigh alike (Whisper's own `labels` loss averages over the batch's tokens instead, which
is no per-sample loss); the batch loss is the mean of those. Scoring decodes greedily with `generate`
from the prompt; WER compares normalised text (tokens.normalized). Accuracy is max(0, 1 − WER).
"""

from __future__ import annotations

from contextlib import contextmanager

from orthograd_cli.errors import CheckpointError, ManifestError
from orthograd_cli.tasks.asr import AsrTask


class Seq2SeqAsrTask(AsrTask):
    name = "asr_seq2seq"
    unsupported_backends = {"vmap": ("the vmap backend takes one input tensor per sample; a Whisper batch is "
                                     "features and decoder tokens", "use hooks (exact for LoRA) or loop")}
    chance_hint = ("check that the folder's preprocessor_config.json and tokenizer are the ones the model was "
                   "trained with, and that this is the trained checkpoint")

    def check_recipe(self, recipe):
        from orthograd_cli.errors import RecipeError

        super().check_recipe(recipe)
        if recipe.data.audio_normalize != "none":
            raise RecipeError("data.audio_normalize does not apply to Whisper: its feature extractor scales the "
                              "log-mel features itself", "leave data.audio_normalize unset")

    def parse_row(self, values, where, info):
        text = " ".join(values["transcript"].split())
        if not text:
            raise ManifestError(f"{where}: empty transcript", "every recording needs its transcript")
        return text, values["speaker"]

    def load_set(self, name, manifest, recipe, info, cache=None):
        from orthograd_cli.tasks.asr_seq2seq.data import load_whisper_set

        return load_whisper_set(name, manifest, info.folder, info.processor, info.sample_rate,
                                recipe.data.num_workers, cache)

    def folder_metadata(self, folder, config, processor):
        from orthograd_cli.tasks.asr_seq2seq.folder import folder_metadata

        return folder_metadata(folder, config, processor)

    def complete_info(self, checkpoint, arch, spec, config):
        from orthograd_cli.models.registry import ModelInfo

        settings = checkpoint.meta_json("seq2seq")
        if not checkpoint.is_folder or not settings or not config:
            raise CheckpointError(f"{checkpoint.path}: a Whisper model is read from its model folder (config, "
                                  "feature extractor and tokenizer files beside the weights)",
                                  "pass the folder that holds this file")
        return ModelInfo(arch=arch, num_classes=int(config["vocab_size"]), task=self.name, config=config,
                         sample_rate=checkpoint.meta_int("sample_rate", 16_000), folder=str(checkpoint.path),
                         processor=settings)

    def shape_hint(self, info):
        return "check that config.json is the one saved with these weights"

    def per_sample_losses(self, outputs, targets):
        """Mean token cross-entropy over each utterance's positions first..ends−1 (float32 or wider)."""
        token_losses, counted = self.label_losses(outputs, targets)
        return (token_losses * counted).sum(1) / counted.sum(1).clamp(min=1)

    def label_losses(self, outputs, targets):
        """Each position's token cross-entropy, and which positions hold the transcript or the end token."""
        import torch

        labels, first, ends = targets
        log_probs = torch.log_softmax(outputs if outputs.dtype == torch.float64 else outputs.float(), dim=-1)
        positions = torch.arange(labels.shape[1], device=labels.device)[None]
        counted = (positions >= first[:, None]) & (positions < ends[:, None])
        return -log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1), counted

    def transcribe(self, model, audio_set, batch_size, device):
        return transcribe(model, audio_set, batch_size, device)

    def comparable(self, text):
        from orthograd_cli.tasks.asr_seq2seq.tokens import normalized

        return normalized(text)


def generate_greedy(model, features, settings: dict):
    """Greedy decoding with transformers' `generate` from the prompt: token ids after the prompt, per row.
    (`model` may wear LoRA adapters: they are in its layers, so the underlying module decodes with them.)"""
    import torch
    import transformers

    module = model.get_base_model() if hasattr(model, "get_base_model") else model
    prompt = torch.tensor(settings["prompt"], device=features.device).expand(len(features), -1)
    config = transformers.GenerationConfig(
        do_sample=False, num_beams=1, max_new_tokens=int(settings["max_new_tokens"]), eos_token_id=settings["eos"],
        pad_token_id=settings["eos"], decoder_start_token_id=settings["prompt"][0],
        suppress_tokens=settings["suppress_tokens"] or None,
        begin_suppress_tokens=settings["begin_suppress_tokens"] or None)
    with quiet_transformers():
        sequences = transformers.GenerationMixin.generate(module, input_features=features, decoder_input_ids=prompt,
                                                          generation_config=config)
    return sequences[:, prompt.shape[1]:]


@contextmanager
def quiet_transformers():
    """transformers logs advice on every generate call (cache classes, length settings) and draws progress bars
    when it saves; neither is the user's concern."""
    import transformers

    level, bars = transformers.logging.get_verbosity(), transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)
        if bars:
            transformers.utils.logging.enable_progress_bar()


def transcribe(model, audio_set, batch_size: int, device: str):
    """(hypotheses, per-utterance teacher-forced losses) for every utterance in order, autograd off."""
    import torch

    from orthograd_cli.tasks.asr_seq2seq.tokens import decode_ids

    decoder = audio_set.decoder
    was_training = model.training
    model.eval()
    texts, losses = [], []
    with torch.inference_mode():
        for (features, decoder_input_ids), targets in audio_set.batches(batch_size, device):
            logits = model(features, decoder_input_ids)
            losses.append(TASK.per_sample_losses(logits.float(), targets).cpu())
            texts += decode_ids(decoder.folder, generate_greedy(model, features, decoder.settings).cpu().tolist())
    model.train(was_training)
    return texts, torch.cat(losses) if losses else torch.empty(0)


TASK = Seq2SeqAsrTask()
mean_loss, per_sample_losses = TASK.mean_loss, TASK.per_sample_losses
