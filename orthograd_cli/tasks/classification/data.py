"""The images a manifest lists, decoded into one normalised tensor, once (the sets are small)."""

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


# single-channel modes of more than 8 bits, and the value that stands for white in each
HIGH_DEPTH_WHITE = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}


def decode_image(sample, spec: DataSpec):
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(sample.path) as image:
            if image.mode in HIGH_DEPTH_WHITE:
                array = _high_depth(image, spec, sample)
            else:  # 8-bit, palette, with alpha, CMYK: Pillow converts these exactly
                image = image.convert("L" if spec.channels == 1 else "RGB")
                image = image.resize((spec.image_size, spec.image_size), Image.BILINEAR)
                array = np.asarray(image, dtype=np.float32) / 255.0
    except Image.DecompressionBombError:
        raise ManifestError(f"row {sample.row}: image {sample.path} has more pixels than Pillow's decompression-bomb "
                            f"guard allows ({Image.MAX_IMAGE_PIXELS:,})", "downscale the image or remove it") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ManifestError(f"row {sample.row}: cannot read image {sample.path} ({exc.__class__.__name__})",
                            "replace or remove the file") from None
    tensor = torch.from_numpy(array)
    if tensor.dim() == 2:  # one channel: as is, or repeated for an RGB model
        tensor = tensor[None].expand(spec.channels, -1, -1).contiguous()
    else:
        tensor = tensor.permute(2, 0, 1)
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    return (tensor - mean) / std


def _high_depth(image, spec: DataSpec, sample):
    """A 16-bit or float single-channel image scaled to [0, 1] (8-bit conversion would clip it), resized."""
    import numpy as np
    from PIL import Image

    white = HIGH_DEPTH_WHITE[image.mode]
    array = np.asarray(image, dtype=np.float32)
    if array.size and (array.min() < 0 or array.max() > white):
        raise ManifestError(f"row {sample.row}: image {sample.path} ({image.mode}) has values outside 0..{white:g}",
                            "save it as an 8- or 16-bit image, or a float image in [0, 1]")
    scaled = Image.fromarray(array / white).resize((spec.image_size, spec.image_size), Image.BILINEAR)
    return np.array(scaled, dtype=np.float32)


def load_image_set(name: str, manifest: Manifest, spec: DataSpec) -> ImageSet:
    import torch

    inputs = []
    for sample in manifest.samples:
        try:
            inputs.append(decode_image(sample, spec))
        except ManifestError as err:
            raise ManifestError(f"{manifest.path} {err}", err.hint) from None
    labels = torch.tensor([s.target for s in manifest.samples], dtype=torch.long)
    return ImageSet(name=name, manifest=manifest, inputs=torch.stack(inputs), labels=labels)
