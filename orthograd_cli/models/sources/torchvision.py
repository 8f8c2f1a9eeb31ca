"""torchvision classifiers: any `torchvision.models` builder name."""

from __future__ import annotations

from orthograd_cli.models.sources.base import ModelSource

# Builders tried, on the meta device, to name the likely architecture of a mismatched checkpoint.
COMMON_ARCHS = [
    "resnet18", "resnet34", "resnet50", "resnet101", "wide_resnet50_2", "vit_b_16", "vit_b_32",
    "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny",
    "densenet121", "vgg11", "vgg16", "squeezenet1_0", "regnet_y_400mf", "shufflenet_v2_x1_0",
]


class TorchvisionSource(ModelSource):
    name = "torchvision"
    tasks = ("classification",)

    def architectures(self) -> list[str]:
        import torchvision

        return torchvision.models.list_models()

    def handles(self, arch: str) -> bool:
        return arch in self.architectures()

    def build(self, info):
        import torchvision

        return torchvision.models.get_model(info.arch, weights=None, num_classes=info.num_classes,
                                            **(info.config or {}))

    def default_lora_targets(self, model) -> list[str]:
        """Every Conv2d and Linear outside nn.MultiheadAttention: on a ResNet every convolution and the
        final linear layer, on a ViT its MLP linears and the head. Grouped (depthwise) convolutions are
        left out: peft cannot merge LoRA into them.

        peft's LoRA inside MultiheadAttention mutates `.data` and breaks under vmap, and LoRA on its
        `out_proj` is silently ignored, so attention stays frozen.
        """
        import torch.nn as nn

        inside_attention = {
            f"{name}.{child}" if name else child
            for name, module in model.named_modules() if isinstance(module, nn.MultiheadAttention)
            for child, _ in module.named_modules()
        }
        return [
            name for name, module in model.named_modules()
            if isinstance(module, (nn.Conv2d, nn.Linear)) and getattr(module, "groups", 1) == 1
            and name not in inside_attention
            and not any(name.startswith(prefix + ".") or name == prefix for prefix in inside_attention)
        ]

    def guess_arch(self, state_dict: dict) -> str | None:
        import torch
        import torchvision

        keys = set(state_dict)
        for name in COMMON_ARCHS:
            try:
                with torch.device("meta"):
                    model = torchvision.models.get_model(name, weights=None)
            except (NotImplementedError, RuntimeError):  # a builder that fills a buffer from data cannot run on meta
                continue
            if set(model.state_dict()) == keys:
                return name
        return None


SOURCE = TorchvisionSource()
