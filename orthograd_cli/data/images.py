"""Decode the images a manifest lists into one normalised tensor, once (the sets are small)."""

from __future__ import annotations

from dataclasses import dataclass

from orthograd_cli.data.manifest import Manifest
from orthograd_cli.errors import ManifestError
from orthograd_cli.recipe import DataSpec


@dataclass
class ImageSet:
    """Decoded inputs and labels, in manifest order."""

    name: str
    manifest: Manifest
    inputs: "torch.Tensor"  # noqa: F821  (N, C, H, W) float32
    labels: "torch.Tensor"  # noqa: F821  (N,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index) -> "ImageSet":
        picked = [self.manifest.samples[i] for i in index.tolist()]
        manifest = Manifest(path=self.manifest.path, samples=picked, sha256=self.manifest.sha256)
        return ImageSet(self.name, manifest, self.inputs[index], self.labels[index])

    def batch(self, index, device: str = "cpu"):
        """(inputs, labels) of the samples at `index`, on `device`."""
        return self.inputs[index].to(device), self.labels[index].to(device)


def decode_image(sample, spec: DataSpec):
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(sample.path) as image:
            image = image.convert("L" if spec.channels == 1 else "RGB")
            image = image.resize((spec.image_size, spec.image_size), Image.BILINEAR)
            array = np.asarray(image, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ManifestError(f"row {sample.row}: cannot read image {sample.path} ({exc.__class__.__name__})",
                            "replace or remove the file") from None
    tensor = torch.from_numpy(array)
    tensor = tensor[None] if spec.channels == 1 else tensor.permute(2, 0, 1)
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    return (tensor - mean) / std


def load_image_set(name: str, manifest: Manifest, spec: DataSpec) -> ImageSet:
    import torch

    inputs = []
    for sample in manifest.samples:
        try:
            inputs.append(decode_image(sample, spec))
        except ManifestError as err:
            raise ManifestError(f"{manifest.path} {err}", err.hint) from None
    labels = torch.tensor([s.label for s in manifest.samples], dtype=torch.long)
    return ImageSet(name=name, manifest=manifest, inputs=torch.stack(inputs), labels=labels)
