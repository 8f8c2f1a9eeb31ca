"""Checkpoint files: our deterministic safetensors writer round-trips through safetensors' own reader."""

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from orthograd_cli.models.checkpoint import save_checkpoint


def test_written_files_load_back_exactly_with_safetensors(tmp_path):
    state = {"w": torch.randn(3, 4), "h": torch.randn(5).to(torch.bfloat16), "steps": torch.tensor(7),
             "mask": torch.tensor([True, False]), "empty": torch.zeros(0, 2, dtype=torch.float16)}
    path = tmp_path / "m.safetensors"
    save_checkpoint(state, path, {"b": "2", "a": "1"})
    loaded = load_file(str(path))
    assert set(loaded) == set(state)
    for key, tensor in state.items():
        assert loaded[key].dtype == tensor.dtype and torch.equal(loaded[key], tensor)
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata() == {"a": "1", "b": "2"}


def test_same_state_and_metadata_give_identical_bytes(tmp_path):
    state = {"w": torch.randn(3, 4), "b": torch.randn(4)}
    save_checkpoint(state, tmp_path / "a.safetensors", {"x": "1", "y": "2"})
    save_checkpoint(state, tmp_path / "b.safetensors", {"y": "2", "x": "1"})
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert not list(tmp_path.glob(".*tmp-*"))
