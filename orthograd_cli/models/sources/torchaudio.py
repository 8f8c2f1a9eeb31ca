"""torchaudio CTC speech recognisers: the wav2vec2 family (`wav2vec2_model` with its size parameters,
`wav2vec2_base`, `hubert_base`, …), their CTC head (`aux`) sized by the vocabulary."""

from __future__ import annotations

from orthograd_cli.errors import CheckpointError
from orthograd_cli.models.sources.base import ModelSource

CTC_BUILDERS = [
    "wav2vec2_model", "wav2vec2_base", "wav2vec2_large", "wav2vec2_large_lv60k", "wav2vec2_xlsr_300m",
    "wav2vec2_xlsr_1b", "wav2vec2_xlsr_2b", "hubert_base", "hubert_large", "hubert_xlarge",
]
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


class TorchaudioSource(ModelSource):
    name = "torchaudio"
    tasks = ("asr",)

    def architectures(self) -> list[str]:
        return list(CTC_BUILDERS)

    def handles(self, arch: str) -> bool:
        return arch in CTC_BUILDERS

    def build(self, info):
        import torchaudio

        builder = getattr(torchaudio.models, info.arch)
        try:
            return builder(**(info.config or {}), aux_num_out=info.num_classes)
        except TypeError as exc:
            raise CheckpointError(f"'{info.arch}' cannot be built from its arguments ({exc})",
                                  "set model.config to the builder's size parameters (orthograd.arch_config)") from None

    def default_lora_targets(self, model) -> list[str]:
        """The attention q/k/v/out projections: plain Linear layers in torchaudio's wav2vec2/HuBERT, which
        LoRA and the per-sample hooks handle exactly; the convolutional feature extractor stays frozen."""
        import torch.nn as nn

        return [name for name, module in model.named_modules()
                if isinstance(module, nn.Linear) and name.rpartition(".")[2] in ATTENTION_PROJECTIONS
                and ".attention." in f".{name}"]


SOURCE = TorchaudioSource()
