"""Checkpoint I/O: safetensors state dicts with string metadata, written atomically.

Never unpickles: `.pt`/`.bin` files and anything with a pickle or zip signature are refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from orthograd_cli.errors import CheckpointError, UsageError

PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle"}
CONVERT_HINT = (
    "convert it once, safely: python -c \"import torch, safetensors.torch as st; "
    "st.save_file(torch.load('IN.pt', weights_only=True), 'OUT.safetensors')\""
)
META_PREFIX = "orthograd."


@dataclass
class Checkpoint:
    path: Path
    state_dict: dict  # name -> torch.Tensor
    metadata: dict[str, str] = field(default_factory=dict)
    sha256: str = ""

    def meta(self, key: str) -> str | None:
        return self.metadata.get(META_PREFIX + key)

    def meta_json(self, key: str):
        raw = self.meta(key)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise CheckpointError(f"{self.path}: metadata '{META_PREFIX}{key}' is not valid JSON") from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _refuse_pickle(path: Path) -> None:
    with open(path, "rb") as handle:
        head = handle.read(8)
    if path.suffix.lower() in PICKLE_SUFFIXES or head[:2] == b"PK" or head[:1] == b"\x80":
        raise CheckpointError(f"{path}: looks like a pickled PyTorch file; orthograd never unpickles files",
                              CONVERT_HINT)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Load a safetensors state dict on the CPU; refuse pickles, truncated files and non-finite weights."""
    import torch
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file", "pass the path of a .safetensors file")
    _refuse_pickle(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            state_dict = {key: handle.get_tensor(key) for key in _file_order(path, handle.keys())}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})",
                              "the file may be truncated or of another format; re-export it with safetensors") from None
    if not state_dict:
        raise CheckpointError(f"{path}: the checkpoint holds no tensors")
    for key, tensor in state_dict.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor '{key}' has NaN or infinite values",
                                  "the checkpoint is corrupt or diverged; use an earlier one")
    return Checkpoint(path=path, state_dict=state_dict, metadata=metadata, sha256=file_sha256(path))


def _file_order(path: Path, keys) -> list[str]:
    """Tensor names in the order their data lies in the file (safe_open lists them sorted),
    so that outputs keep the input's layout."""
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
    return sorted(keys, key=lambda key: header[key]["data_offsets"][0])


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it into place only if the block completes.

    A crash or Ctrl-C leaves at most a `.tmp-*` file, never a half-written `final`.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


SAFETENSORS_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}


def safetensors_bytes(state_dict: dict, metadata: dict[str, str]) -> tuple[bytes, list]:
    """The safetensors header and tensor buffers, laid out deterministically.

    safetensors' own writer orders metadata through a hash map, so two processes write different
    bytes for the same model; a fixed order makes same-seed runs and `merge` reproduce files exactly.
    """
    import torch

    header: dict = {"__metadata__": {k: str(v) for k, v in sorted(metadata.items())}}
    buffers, offset = [], 0
    for key, tensor in state_dict.items():
        tensor = tensor.detach().to("cpu").contiguous()
        dtype = SAFETENSORS_DTYPES.get(str(tensor.dtype).removeprefix("torch."))
        if dtype is None:
            raise CheckpointError(f"tensor '{key}' has dtype {tensor.dtype}, which safetensors cannot store")
        data = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[key] = {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        buffers.append(data)
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format aligns the data start to 8 bytes
    return len(encoded).to_bytes(8, "little") + encoded, buffers


def save_checkpoint(state_dict: dict, path: Path, metadata: dict[str, str]) -> None:
    head, buffers = safetensors_bytes(state_dict, metadata)
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(head)
            for data in buffers:
                handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def prepare_out_dir(out_dir: Path, overwrite: bool) -> Path:
    """A fresh temporary folder beside `out_dir`; `commit_out_dir` renames it into place."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise UsageError(f"{out_dir}: output folder exists", "pass --overwrite or choose another --out")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    except OSError as exc:
        raise UsageError(f"{out_dir}: cannot write the output folder ({exc.strerror})",
                         "choose a writable --out") from None


def commit_out_dir(tmp_dir: Path, out_dir: Path) -> None:
    if out_dir.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, trash / "old")
        os.replace(tmp_dir, out_dir)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp_dir, out_dir)
