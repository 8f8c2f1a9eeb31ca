"""Hugging Face `transformers` models from model folders (models/hf_folder.py): CTC speech recognisers
(`Wav2Vec2ForCTC`, `HubertForCTC`), Whisper (`WhisperForConditionalGeneration`), image classifiers
(`*ForImageClassification`: ViT, ResNet, ConvNeXt, …) and causal language models (`*ForCausalLM`: Llama,
Qwen2, Mistral, GPT-NeoX, Phi, …; `GPT2LMHeadModel`). Architecture names are `hf:<class>`; the config
comes from the folder's config.json.

The model class is subclassed once with a forward that speaks the tool's convention, so that hooks,
vmap, losses and metrics see plain tensors and never a `ModelOutput`: a CTC model takes
`(waveforms, lengths)` and returns `(logits, frame_lengths)`, passing the attention mask where the
model takes one (layer-norm feature extractors; group-norm ones are trained without); Whisper takes
`(features, decoder_input_ids)` and returns logits, and keeps the class's own forward for keyword
calls, which is how `generate` calls it; an image classifier takes pixels and returns logits; a causal LM
takes `(input_ids, attention_mask)`, places each token by its count of unmasked tokens before it (so left and
right padding give each row the positions it has alone) and returns logits, keeping the class's forward for
keyword calls (`generate`). Module
and parameter names stay the class's own, so the state dict, LoRA targets and peft adapters match
`from_pretrained` exactly.
"""

from __future__ import annotations

from orthograd_cli.errors import CheckpointError, clip
from orthograd_cli.models.hf_folder import (CTC_ARCHITECTURES, SEQ2SEQ_ARCHITECTURES, SUPPORTED, kind_of,
                                           task_of)
from orthograd_cli.models.sources.base import ModelSource

PREFIX = "hf:"
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


class TransformersSource(ModelSource):
    name = "transformers"
    tasks = ("classification", "asr", "asr_seq2seq", "causal_lm")
    reads_config_from_folder = True

    def architectures(self) -> list[str]:
        return [PREFIX + name for name in CTC_ARCHITECTURES + SEQ2SEQ_ARCHITECTURES] + \
            [PREFIX + name for name in ("ViTForImageClassification", "LlamaForCausalLM", "GPT2LMHeadModel")]

    def handles(self, arch: str) -> bool:
        return arch.startswith(PREFIX)

    def tasks_of(self, arch: str) -> tuple[str, ...]:
        task = task_of(arch.removeprefix(PREFIX))
        return (task,) if task else self.tasks

    def build(self, info):
        import transformers

        name = info.arch.removeprefix(PREFIX)
        model_class = getattr(transformers, name, None)
        if not isinstance(model_class, type) or not issubclass(model_class, transformers.PreTrainedModel) \
                or task_of(name) is None:  # an Auto class is a factory, not a model class
            raise CheckpointError(f"'{clip(name)}' is not a supported transformers model class",
                                  f"supported: {SUPPORTED}")
        if not info.config:
            raise CheckpointError(f"'{info.arch}' needs its config.json", "pass the model folder, not a file")
        # the class's own config class: no Auto lookup, so nothing in the folder can name other code
        config_class = model_class.config_class
        model_type = info.config.get("model_type", config_class.model_type)
        if model_type != config_class.model_type:
            raise CheckpointError(f"config.json: model_type {clip(repr(model_type))} does not belong to {name} (which "
                                  f"reads '{config_class.model_type}')", "restore config.json from the model's folder")
        from huggingface_hub.errors import StrictDataclassError

        try:
            config = config_class(**{key: value for key, value in info.config.items() if key != "model_type"})
        except (TypeError, ValueError, KeyError, AttributeError, StrictDataclassError) as exc:
            raise CheckpointError(f"config.json: not a valid {config_class.__name__} ({type(exc).__name__}: "
                                  f"{clip(str(exc))})", "restore config.json from the model's folder") from None
        return plain_forward_class(model_class, kind_of(name))(config)

    def checkpoint_keys(self, model, stored: set[str]) -> dict[str, str]:
        """transformers 5 renames some weights between files and modules (ViT's `encoder.layer.0.attention.
        attention.query` is `layers.0.attention.q_proj` in the module) and reverts that on save_pretrained. The
        same revert, applied to the module's own tensors, names each one as files do; files already in the
        module's names are taken as they are. Conversions that fuse or split tensors are refused. A tied weight
        (Whisper's `proj_out` is its token embedding) is not in the files: it is read from, and written as,
        the weight it is tied to."""
        from transformers.core_model_loading import revert_weight_conversion

        state = model.state_dict()
        tied = {key: source for key, source in (getattr(model, "all_tied_weights_keys", None) or {}).items()
                if key in state and key not in stored}
        if set(state) - set(tied) == stored:
            return {key: tied.get(key, key) for key in state}
        module_key = {id(tensor): key for key, tensor in state.items() if key not in tied}
        mapping = dict(tied)
        untied = {key: tensor for key, tensor in state.items() if key not in tied}
        for file_key, tensor in revert_weight_conversion(model, untied).items():
            if id(tensor) not in module_key:
                raise CheckpointError(f"'{type(model).__name__}': transformers stores this model's weight "
                                      f"'{file_key}' fused or split, which orthograd cannot map one to one",
                                      "use a model whose checkpoint keys match its modules")
            mapping[module_key[id(tensor)]] = file_key
        return {key: mapping.get(file_key, file_key) if key in tied else file_key for key, file_key in mapping.items()}

    def default_lora_targets(self, model) -> list[str]:
        """CTC models: the attention q/k/v/out projections (the convolutional feature extractor stays frozen).
        Whisper: the same projections of the encoder's self-attention and the decoder's self- and
        cross-attention; never `proj_out`, which is the token embedding (tied). Causal LMs: every projection
        inside the numbered decoder layers (attention q/k/v/o and the MLP's: Llama's `*_proj`, GPT-2's `c_attn`,
        `c_proj`, `c_fc`, GPT-NeoX's `query_key_value`, `dense*`), never the embeddings or the LM head (often
        tied to them). Image classifiers: every Linear and ungrouped Conv2d, the head included."""
        import re

        import torch.nn as nn

        from orthograd_cli.models.lora import adaptable_layers

        if kind_of(type(model).__name__) == "decoder_lm":
            in_layer = re.compile(r"\.\d+\.")
            return [name for name, module in model.named_modules()
                    if isinstance(module, adaptable_layers()) and in_layer.search(f".{name}")
                    and not isinstance(module, (nn.Conv1d, nn.Conv2d))]
        attention_scope = {"ctc": (".attention.",), "seq2seq": (".self_attn.", ".encoder_attn.")}
        scope = attention_scope.get(kind_of(type(model).__name__))
        if scope:
            return [name for name, module in model.named_modules()
                    if isinstance(module, nn.Linear) and name.rpartition(".")[2] in ATTENTION_PROJECTIONS
                    and any(part in f".{name}" for part in scope)]
        return [name for name, module in model.named_modules()
                if isinstance(module, (nn.Linear, nn.Conv2d)) and getattr(module, "groups", 1) == 1]


_PLAIN_CLASSES: dict = {}


def plain_forward_class(model_class, kind: str):
    """`model_class` with the tool's forward (see the module docstring); made once per class, keeping its name
    so that type(model).__name__ and the saved adapter's base class read as the original."""
    if model_class in _PLAIN_CLASSES:
        return _PLAIN_CLASSES[model_class]

    if kind == "ctc":
        def forward(self, waveforms, lengths):
            import torch

            mask = None
            # a padded batch needs the mask; not the dry run's one-sample probe on the meta device, where
            # transformers would read the mask's values, which do not exist there
            if getattr(self.config, "feat_extract_norm", "group") == "layer" and waveforms.device.type != "meta":
                mask = (torch.arange(waveforms.shape[1], device=waveforms.device)[None] < lengths[:, None]).long()
            logits = model_class.forward(self, input_values=waveforms, attention_mask=mask).logits
            return logits, self._get_feat_extract_output_lengths(lengths)
    elif kind == "seq2seq":
        def forward(self, *args, **kwargs):
            if kwargs:  # transformers' own call (generate: caches, encoder outputs): the class's forward
                return model_class.forward(self, *args, **kwargs)
            features, decoder_input_ids = args
            return model_class.forward(self, input_features=features, decoder_input_ids=decoder_input_ids,
                                       use_cache=False).logits
    elif kind == "decoder_lm":
        def forward(self, *args, **kwargs):
            if kwargs:  # transformers' own call (generate: caches, positions): the class's forward
                return model_class.forward(self, *args, **kwargs)
            input_ids, attention_mask = args
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            return model_class.forward(self, input_ids=input_ids, attention_mask=attention_mask,
                                       position_ids=positions, use_cache=False).logits

        # generate reads the forward's signature to decide whether to pass position ids (from the attention mask:
        # left-padded prompts); without them a model with absolute positions (GPT-2) misplaces padded prompts
        import inspect

        forward.__signature__ = inspect.signature(model_class.forward)
    else:
        def forward(self, images):
            return model_class.forward(self, pixel_values=images).logits

    plain = type(model_class.__name__, (model_class,), {"forward": forward, "__module__": __name__,
                                                        "__doc__": model_class.__doc__})
    _PLAIN_CLASSES[model_class] = plain
    return plain


SOURCE = TransformersSource()
