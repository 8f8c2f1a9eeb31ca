"""A running unlearning loop's state, as one safetensors file: what `forget --resume` continues from.

Everything that decides the steps still to come is in it: the trainable weights (and those of the check a
damage limit may write), Adam's moments, the sampler's position, every random generator (torch, CUDA, numpy,
Python), a method's own counters (SCRUB's pass), the history and diagnostics so far, the step and the time spent.
Tensors are the file's tensors; the rest is JSON in its metadata, so reading it back never unpickles anything.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = "orthograd-resume/1"


@dataclass
class LoopState:
    step: int  # the last step taken; its update is in `params`
    params: dict  # name -> tensor (LoRA weights, or every trainable weight)
    optimizer: dict | None  # torch's Adam state_dict; None for normalised SGD
    sampler: dict  # UnlearnSampler.state_dict()
    rng: dict  # rng_state()
    history: list[dict]  # the stop rule's rows so far
    per_step: dict[str, list]  # each step's diagnostics so far
    latest: dict  # the last step's diagnostics, as read
    elapsed_s: float  # the run's time before this state: the time budget counts on from it
    method: dict = field(default_factory=dict)  # a method's own counters (direction_fn.resume_state)
    sent_bytes: int = 0  # several processes: what this rank sent so far
    check_pending: bool = False  # interrupted during the check due at `step`: the resumed run checks first
    kept: dict = field(default_factory=dict)  # a damage limit's chosen check so far: {"step", "params"}, or empty


def rng_state() -> dict:
    import numpy as np
    import torch

    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized()
            else [],
            "numpy": [kind, keys.tolist(), position, has_gauss, gauss],
            "python": [version, list(internal), gauss_next]}


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def write_state(path: Path, state: LoopState, fingerprint: dict) -> None:
    """`state` and the `fingerprint` of the run it belongs to, into `path` (the caller makes it atomic)."""
    from safetensors.torch import save_file

    tensors = {f"param.{name}": value.detach().contiguous().clone() for name, value in state.params.items()}
    tensors.update({f"kept.{name}": value.contiguous() for name, value in state.kept.get("params", {}).items()})
    tensors["rng.torch"] = state.rng["torch"]
    tensors.update({f"rng.cuda.{i}": value for i, value in enumerate(state.rng["cuda"])})
    tensors["sampler.generator"] = state.sampler["generator"]
    if state.sampler["order"] is not None:
        tensors["sampler.order"] = state.sampler["order"].contiguous()
    optimizer = None
    if state.optimizer is not None:  # tensors by (param index, key); the rest as it is
        optimizer = {"param_groups": state.optimizer["param_groups"], "state": {}}
        for index, entries in state.optimizer["state"].items():
            optimizer["state"][str(index)] = sorted(entries)
            tensors.update({f"optim.{index}.{key}": value.contiguous() for key, value in entries.items()})
    info = {"format": FORMAT, "fingerprint": fingerprint, "step": state.step, "history": state.history,
            "per_step": state.per_step, "latest": state.latest, "elapsed_s": state.elapsed_s, "method": state.method,
            "sent_bytes": state.sent_bytes, "check_pending": state.check_pending, "optimizer": optimizer,
            "kept_step": state.kept.get("step"),
            "sampler": {"position": state.sampler["position"], "digest": state.sampler["digest"]},
            "rng": {"numpy": state.rng["numpy"], "python": state.rng["python"], "cuda": len(state.rng["cuda"])}}
    save_file(tensors, str(path), metadata={"orthograd.resume": json.dumps(info)})


def read_state(path: Path) -> tuple[LoopState, dict]:
    """(the state, the fingerprint it was saved with) from a file write_state wrote."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        info = json.loads(handle.metadata()["orthograd.resume"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    if info.get("format") != FORMAT:
        raise ValueError(f"unknown state format {info.get('format')!r}")
    optimizer = None
    if info["optimizer"] is not None:
        optimizer = {"param_groups": info["optimizer"]["param_groups"],
                     "state": {int(index): {key: tensors[f"optim.{index}.{key}"] for key in keys}
                               for index, keys in info["optimizer"]["state"].items()}}
    state = LoopState(
        step=info["step"],
        params={key.removeprefix("param."): value for key, value in tensors.items() if key.startswith("param.")},
        optimizer=optimizer,
        sampler={"generator": tensors["sampler.generator"], "order": tensors.get("sampler.order"),
                 **info["sampler"]},
        rng={"torch": tensors["rng.torch"], "cuda": [tensors[f"rng.cuda.{i}"] for i in range(info["rng"]["cuda"])],
             "numpy": info["rng"]["numpy"], "python": info["rng"]["python"]},
        history=info["history"], per_step=info["per_step"], latest=info["latest"], elapsed_s=info["elapsed_s"],
        method=info["method"], sent_bytes=info["sent_bytes"], check_pending=info["check_pending"],
        kept={} if info.get("kept_step") is None else
        {"step": info["kept_step"], "params": {key.removeprefix("kept."): value for key, value in tensors.items()
                                               if key.startswith("kept.")}})
    return state, info["fingerprint"]
