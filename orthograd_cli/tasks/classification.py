"""Image classification: the loss OrthoGrad differentiates and batched, no-grad predictions."""

from __future__ import annotations


def mean_loss(logits, labels):
    import torch.nn.functional as F

    return F.cross_entropy(logits, labels)


def per_sample_losses(logits, labels):
    import torch.nn.functional as F

    return F.cross_entropy(logits, labels, reduction="none")


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
