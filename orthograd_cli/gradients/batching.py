"""One calling convention for every task's batches.

Image batches are plain tensors (inputs (B, C, H, W), labels (B,)). Speech batches are tuples of
tensors that share the batch dimension: inputs `(waveforms, lengths)`, targets `(tokens,
token_lengths)`, outputs `(logits, frame_lengths)`. These helpers let the gradient code treat both
alike.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar

# (device type, dtype) when the passes run under autocast (`precision: bf16`), else None
_AUTOCAST: ContextVar = ContextVar("orthograd_autocast", default=None)


@contextlib.contextmanager
def pass_precision(precision: str, device: str):
    """Within this block, `forward` runs the model under autocast(bfloat16) for `precision: bf16`.

    Lowered: the model's forward (and so its backward) and the hooks backend's per-sample outer
    products (`lowered`). Outputs and rows come back as float32; the projection (float64 k×k systems)
    and the update stay in float32 or float64. Parameters stay float32, so their gradients do too.
    """
    import torch

    setting = (torch.device(device).type, torch.bfloat16) if precision == "bf16" else None
    token = _AUTOCAST.set(setting)
    try:
        yield
    finally:
        _AUTOCAST.reset(token)


def forward(model, inputs):
    """model(inputs), or model(*inputs) for a tuple batch; under `pass_precision("bf16")`, in bfloat16."""
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    setting = _AUTOCAST.get()
    if setting is None:
        return model(*args)
    import torch

    with torch.autocast(device_type=setting[0], dtype=setting[1]):
        outputs = model(*args)
    if isinstance(outputs, tuple):
        return tuple(o.float() if o.is_floating_point() else o for o in outputs)
    return outputs.float()


def precision_lowered() -> bool:
    """Whether the passes run under autocast now (`precision: bf16`)."""
    return _AUTOCAST.get() is not None


def lowered(block_fn):
    """block_fn() under autocast when the passes run in bf16 (the per-sample rows' outer products, which cost
    as much as a backward pass), its floating results back in float32 for the projection; plain otherwise."""
    setting = _AUTOCAST.get()
    if setting is None:
        return block_fn()
    import torch

    with torch.autocast(device_type=setting[0], dtype=setting[1]):
        result = block_fn()
    return result.float() if result.is_floating_point() else result


def batch_len(batch) -> int:
    return len(batch[0]) if isinstance(batch, tuple) else len(batch)


def rows(batch, start: int, stop: int):
    """Rows start:stop of a tensor or of every tensor in a tuple batch."""
    return tuple(part[start:stop] for part in batch) if isinstance(batch, tuple) else batch[start:stop]


def at_least_float32(tensor):
    """bf16/fp16 tensors (captured under autocast) as float32; float32 and float64 unchanged."""
    import torch

    return tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor
