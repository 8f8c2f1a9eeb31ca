"""Checkpoint I/O: safetensors state dicts with string metadata, written atomically.

Never unpickles. A file is taken as safetensors when its header parses as one (an 8-byte length, then
that much JSON); only a file that does not, and has a pickle or zip signature or a pickle suffix, is
called a pickle, with a safe conversion hint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from orthograd_cli.errors import CheckpointError, clip
from orthograd_cli.outputs import with_umask

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
    is_folder: bool = False  # a Hugging Face model folder (models/hf_folder.py); `path` is the folder
    config: dict | None = None  # a folder's config.json

    @property
    def nbytes(self) -> int:
        """About what its weights take on disk (what a merged copy will need)."""
        return sum(t.numel() * t.element_size() for t in self.state_dict.values())

    def meta(self, key: str) -> str | None:
        return self.metadata.get(META_PREFIX + key)

    def meta_int(self, key: str, default: int | None = None) -> int | None:
        """A metadata entry that must be a positive whole number (classes, a sampling rate); `default` if absent."""
        raw = self.meta(key)
        if raw is None:
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            value = 0
        if value < 1:
            raise CheckpointError(f"{self.path}: metadata '{META_PREFIX}{key}' is {clip(repr(raw))}, not a positive "
                                  "whole number", f"fix or remove the '{META_PREFIX}{key}' metadata entry")
        return value

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


MAX_HEADER_BYTES = 100 << 20  # safetensors itself refuses larger headers


def safetensors_header(path: Path) -> dict | None:
    """The parsed JSON header when `path` is laid out as a safetensors file, else None."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return None
        size = int.from_bytes(head, "little")
        if not 2 <= size <= min(MAX_HEADER_BYTES, path.stat().st_size - 8):
            return None
        try:
            header = json.loads(handle.read(size))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
    return header if isinstance(header, dict) else None


def _refuse_pickle(path: Path) -> None:
    """A file that is not safetensors but looks like a pickle (or a torch zip archive) is refused as one."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    looks_pickled = path.suffix.lower() in PICKLE_SUFFIXES or head == b"PK\x03\x04" or head[:1] == b"\x80"
    if looks_pickled and safetensors_header(path) is None:
        raise CheckpointError(f"{path}: looks like a pickled PyTorch file; orthograd never unpickles files",
                              CONVERT_HINT)


def read_checkpoint(path: str | Path, weights: bool = True) -> Checkpoint:
    """Load a safetensors state dict (or a Hugging Face model folder) on the CPU; refuse pickles, truncated
    files and non-finite weights. `weights=False` (`--dry-run`): the header only, every tensor an empty one of
    its shape and dtype on the meta device, and no sha256 (which would read every byte)."""
    path = Path(path)
    if path.is_dir():
        from orthograd_cli.models.hf_folder import read_hf_folder

        return read_hf_folder(path, weights)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file", "pass the path of a .safetensors file "
                              "or of a Hugging Face model folder")
    state_dict, metadata = read_safetensors(path, weights)
    return Checkpoint(path=path, state_dict=state_dict, metadata=metadata, sha256=file_sha256(path) if weights else "")


def read_safetensors(path: Path, weights: bool = True) -> tuple[dict, dict[str, str]]:
    """(tensors in file order, metadata) of one safetensors file, every tensor checked (`weights=False`: their
    shapes and dtypes only, as meta tensors)."""
    import torch
    from safetensors import SafetensorError, safe_open

    def header_only(handle, key):
        piece = handle.get_slice(key)
        name = DTYPE_NAMES.get(piece.get_dtype())
        if name is None:
            raise CheckpointError(f"{path}: tensor '{key}' has dtype {piece.get_dtype()}, which orthograd cannot "
                                  "unlearn and write back (quantised weights?)",
                                  "give the checkpoint in float32, float16 or bfloat16")
        return torch.empty(piece.get_shape(), dtype=getattr(torch, name), device="meta")

    _refuse_pickle(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            read = handle.get_tensor if weights else lambda key: header_only(handle, key)
            state_dict = {key: read(key) for key in _file_order(path, handle.keys())}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})",
                              "the file may be truncated or of another format; re-export it with safetensors") from None
    if not state_dict:
        raise CheckpointError(f"{path}: the checkpoint holds no tensors")
    for key, tensor in state_dict.items():
        if str(tensor.dtype).removeprefix("torch.") not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"{path}: tensor '{key}' has dtype {tensor.dtype}, which orthograd cannot "
                                  "unlearn and write back (quantised weights?)",
                                  "give the checkpoint in float32, float16 or bfloat16")
        if weights and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor '{key}' has NaN or infinite values",
                                  "the checkpoint is corrupt or diverged; use an earlier one")
    return state_dict, metadata


def _file_order(path: Path, keys) -> list[str]:
    """Tensor names in the order their data lies in the file (safe_open lists them sorted),
    so that outputs keep the input's layout."""
    header = safetensors_header(path) or {}
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
    tmp = with_umask(Path(tmp_name))
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
DTYPE_NAMES = {code: name for name, code in SAFETENSORS_DTYPES.items()}  # "F32" -> "float32"


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


def save_checkpoint(state_dict: dict, path: Path, metadata: dict[str, str]) -> str:
    """Write the checkpoint atomically; returns the sha256 of the bytes written (no second read of the file)."""
    head, buffers = safetensors_bytes(state_dict, metadata)
    digest = hashlib.sha256(head)
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(head)
            for data in buffers:
                handle.write(data)
                digest.update(data)
            handle.flush()
            os.fsync(handle.fileno())
    return digest.hexdigest()
