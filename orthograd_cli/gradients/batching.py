"""One calling convention for every task's batches.

Image batches are plain tensors (inputs (B, C, H, W), labels (B,)). Speech batches are tuples of
tensors that share the batch dimension: inputs `(waveforms, lengths)`, targets `(tokens,
token_lengths)`, outputs `(logits, frame_lengths)`. These helpers let the gradient code treat both
alike.
"""

from __future__ import annotations


def forward(model, inputs):
    """model(inputs), or model(*inputs) for a tuple batch."""
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def batch_len(batch) -> int:
    return len(batch[0]) if isinstance(batch, tuple) else len(batch)


def rows(batch, start: int, stop: int):
    """Rows start:stop of a tensor or of every tensor in a tuple batch."""
    return tuple(part[start:stop] for part in batch) if isinstance(batch, tuple) else batch[start:stop]
