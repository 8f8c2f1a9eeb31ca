"""Image classification: the loss OrthoGrad differentiates and batched, no-grad predictions."""

from __future__ import annotations

from orthograd_cli.tasks import SetResult


def mean_loss(logits, labels):
    import torch.nn.functional as F

    return F.cross_entropy(logits, labels)


def per_sample_losses(logits, labels):
    import torch.nn.functional as F

    return F.cross_entropy(logits, labels, reduction="none")


def load_set(name: str, manifest, recipe, info):
    from orthograd_cli.data.images import load_image_set

    return load_image_set(name, manifest, recipe.data)


def predict(model, inputs, batch_size: int = 256, device: str = "cpu"):
    """Logits for every input, in order, evaluated in batches with autograd off."""
    import torch

    was_training = model.training
    model.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            outputs.append(model(inputs[start:start + batch_size].to(device)).float().cpu())
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0)


def score(model, image_set, batch_size: int, device: str) -> SetResult:
    from orthograd_cli.metrics.scores import accuracy

    logits = predict(model, image_set.inputs, batch_size, device)
    return SetResult(n=len(image_set), accuracy=accuracy(logits, image_set.labels),
                     losses=per_sample_losses(logits, image_set.labels))
