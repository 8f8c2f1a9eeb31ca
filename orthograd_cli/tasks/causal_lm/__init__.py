"""Language modelling with a Hugging Face causal LM: manifests of `prompt,completion` or `text` rows (CSV or JSON
Lines, optional `id` and `group`: whom a fact is about), token cross-entropy over the completion as the loss,
greedy completion of each prompt scored by ROUGE-L recall (TOFU's measure), and the field's membership attacks.

The model (models/sources/transformers.py) takes `(input_ids, attention_mask)` and returns logits (B, L, V). A
sample's loss is the mean NLL of its counted tokens (data.py), so long and short answers weigh alike; the batch
loss is the mean of those. Scoring: each prompt is completed greedily for as many tokens as its reference has
(stopping at the end token), and the completion's ROUGE-L recall against the reference (`rouge-score`, with
the Porter stemmer, as TOFU and OpenUnlearning call it) is the task's accuracy; exact match and the mean NLL are
reported beside it. Membership attacks (MUSE, OpenUnlearning): the loss; zlib, the loss over the zlib-compressed
length of the text in bytes; Min-K % Prob, minus the mean of the lowest 40 % of the counted tokens' log-probs.
"""

from __future__ import annotations

import hashlib

from orthograd_cli.errors import CheckpointError, ManifestError
from orthograd_cli.tasks.base import ExtraMetric, SetResult, Task

TEXT, PROMPT, COMPLETION, GROUP = "text", "prompt", "completion", "group"
MIN_K = 0.4  # Min-K% Prob's k, OpenUnlearning's default


class CausalLMTask(Task):
    name = "causal_lm"
    reads_files = False
    columns = ()  # either prompt+completion or text (check_columns)
    accuracy_name = "ROUGE-L recall of the greedy completion"
    extra_metrics = {"exact_match": ExtraMetric("share of greedy completions equal to the reference",
                                                higher_is_better=True),
                     "nll": ExtraMetric("mean per-sample NLL of the reference tokens", higher_is_better=False)}
    attacks = {"loss": "its mean token NLL",
               "zlib": "its mean token NLL over the zlib-compressed length of its text",
               "min_k": f"minus the mean of its lowest {MIN_K:.0%} token log-probs (Min-K% Prob)"}
    plot_metric = ("acc", "ROUGE-L recall")
    unsupported_backends = {"vmap": ("the vmap backend takes one input tensor per sample; a text batch is token ids "
                                     "and an attention mask", "use hooks (exact for LoRA), gram or loop")}
    chance_hint = ("check that the tokenizer files are the ones saved with the model, that prompts are formatted as "
                   "in training, and that this is the trained checkpoint")

    def check_columns(self, columns, path):
        from orthograd_cli.data.manifest import OPTIONAL

        allowed = (PROMPT, COMPLETION, TEXT, GROUP, *OPTIONAL)
        extra = [c for c in columns if c not in allowed]
        if extra:
            raise ManifestError(f"{path}: unexpected column '{extra[0]}'", f"allowed: {', '.join(allowed)}")
        pair = PROMPT in columns and COMPLETION in columns
        if pair == (TEXT in columns) or (not pair and (PROMPT in columns or COMPLETION in columns)):
            raise ManifestError(f"{path}: a causal_lm manifest has either the columns prompt and completion or the "
                                f"column text (header: {','.join(columns)})",
                                "prompt,completion[,id,group] (the loss covers the completion) or text[,id,group]")

    def parse_row(self, values, where, info):
        from orthograd_cli.tasks.causal_lm.data import Example

        if TEXT in values:
            if not values[TEXT].strip():
                raise ManifestError(f"{where}: empty text", "every row needs its text")
            return Example("", values[TEXT], True), values.get(GROUP, "")
        if not values[COMPLETION].strip():
            raise ManifestError(f"{where}: empty completion", "every prompt needs the completion to learn or forget")
        if not values[PROMPT].strip():
            raise ManifestError(f"{where}: empty prompt", "every completion needs its prompt (or use a text column)")
        prompt, completion = values[PROMPT], values[COMPLETION]
        if not prompt[-1].isspace() and not completion[0].isspace():
            completion = " " + completion  # it continues the prompt after a space (CSV cells come stripped)
        return Example(prompt, completion, False), values.get(GROUP, "")

    def default_id(self, target):
        return "sha256:" + hashlib.sha256(repr(tuple(target)).encode()).hexdigest()[:16]

    def load_set(self, name, manifest, recipe, info, cache=None):
        from orthograd_cli.tasks.causal_lm.data import load_text_set

        return load_text_set(name, manifest, info.folder, info.processor, cache)

    def folder_metadata(self, folder, config, processor):
        from orthograd_cli.tasks.causal_lm.folder import folder_metadata

        return folder_metadata(folder, config, processor)

    def complete_info(self, checkpoint, arch, spec, config):
        from orthograd_cli.models.registry import ModelInfo

        settings = checkpoint.meta_json("causal_lm")
        if not checkpoint.is_folder or not settings or not config:
            raise CheckpointError(f"{checkpoint.path}: a language model is read from its model folder (config and "
                                  "tokenizer files beside the weights)", "pass the folder that holds this file")
        return ModelInfo(arch=arch, num_classes=int(config["vocab_size"]), task=self.name, config=config,
                         folder=str(checkpoint.path), processor=settings)

    def shape_hint(self, info):
        return "check that config.json is the one saved with these weights"

    chance_level = 0.05

    def at_chance(self, result, info):
        if result.accuracy < self.chance_level:
            return f"(ROUGE-L recall {result.accuracy:.3f}: hardly a word of the references)"
        return None

    # --- losses ---------------------------------------------------------------------------------
    def label_losses(self, outputs, targets):
        """Each position's token NLL (float32 or wider), and which positions hold a counted token."""
        import torch

        labels, counted = targets
        log_probs = torch.log_softmax(outputs if outputs.dtype == torch.float64 else outputs.float(), dim=-1)
        losses = -log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        return torch.where(counted, losses, torch.zeros_like(losses)), counted

    def per_sample_losses(self, outputs, targets):
        return per_sample_mean(*self.label_losses(outputs, targets))

    def distill_kl(self, student, teacher, targets, temperature: float = 1.0):
        """SCRUB's KL(teacher ‖ student) over the token distributions at the counted positions, a sample's the mean
        over its positions, the batch's the mean over samples (× T², as for classes)."""
        import torch.nn.functional as F

        _, counted = targets
        kl = F.kl_div(F.log_softmax(student.float() / temperature, -1),
                      F.log_softmax(teacher.float() / temperature, -1), log_target=True, reduction="none").sum(-1)
        return per_sample_mean(kl.masked_fill(~counted, 0.0), counted).mean() * temperature ** 2

    # --- scores ---------------------------------------------------------------------------------
    def score(self, model, text_set, batch_size, device):
        from orthograd_cli.tasks.causal_lm.scoring import score_set

        return score_set(model, text_set, batch_size, device)


def per_sample_mean(values, counted):
    """Each sample's mean over its counted positions (`values` already zero elsewhere)."""
    return values.sum(1) / counted.sum(1).clamp(min=1)


TASK = CausalLMTask()
mean_loss, per_sample_losses = TASK.mean_loss, TASK.per_sample_losses
