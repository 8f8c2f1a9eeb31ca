"""Images a manifest lists, decoded and normalised when a batch needs them (data/streaming.py).

Preprocessing follows `data.*`: `squash` resizes to image_size², `shorter_side_crop` resizes the
shorter side to `resize_size` and centre-crops `image_size` (torchvision's evaluation transform, so a
torchvision checkpoint scores what its model card says). 8-bit, palette, grey+alpha and CMYK images are
converted by Pillow; 16-bit and float images are scaled to [0, 1], not clipped.
"""

from __future__ import annotations

from orthograd_cli.data.manifest import Manifest
from orthograd_cli.data.streaming import SampleCache, StreamedSet
from orthograd_cli.errors import ManifestError
from orthograd_cli.recipe import DataSpec

# single-channel modes of more than 8 bits, and the value that stands for white in each
HIGH_DEPTH_WHITE = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}


class ImageDecoder:
    """One manifest row → (C×H×W float32 tensor, label); plain values only, so worker processes can take it."""

    def __init__(self, spec: DataSpec):
        self.image_size, self.channels, self.resize = spec.image_size, spec.channels, spec.resize
        self.resize_size = spec.resize_size or spec.image_size
        self.mean, self.std = list(spec.mean), list(spec.std)

    def decode(self, sample):
        import torch

        return decode_image(sample, self), torch.tensor(sample.target, dtype=torch.long)

    def collate(self, items):
        import torch

        return torch.stack([image for image, _ in items]), torch.stack([label for _, label in items])

    def geometry(self, image):
        """The image resized as the recipe says (a PIL image in, a PIL image out)."""
        from PIL import Image

        if self.resize == "squash":
            return image.resize((self.image_size, self.image_size), Image.BILINEAR)
        import torchvision.transforms.v2.functional as TF

        resized = TF.resize(image, [self.resize_size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        return TF.center_crop(resized, [self.image_size, self.image_size])


def decode_image(sample, decoder: ImageDecoder):
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(sample.path) as image:
            if image.mode in HIGH_DEPTH_WHITE:
                array = _high_depth(image, decoder, sample)
            else:  # 8-bit, palette, with alpha, CMYK: Pillow converts these exactly
                image = decoder.geometry(image.convert("L" if decoder.channels == 1 else "RGB"))
                array = np.asarray(image, dtype=np.float32) / 255.0
    except Image.DecompressionBombError:
        raise ManifestError(f"row {sample.row}: image {sample.path} has more pixels than Pillow's decompression-bomb "
                            f"guard allows ({Image.MAX_IMAGE_PIXELS:,})", "downscale the image or remove it") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ManifestError(f"row {sample.row}: cannot read image {sample.path} ({exc.__class__.__name__})",
                            "replace or remove the file") from None
    tensor = torch.from_numpy(array)
    if tensor.dim() == 2:  # one channel: as is, or repeated for an RGB model
        tensor = tensor[None].expand(decoder.channels, -1, -1).contiguous()
    else:
        tensor = tensor.permute(2, 0, 1)
    mean = torch.tensor(decoder.mean).view(-1, 1, 1)
    std = torch.tensor(decoder.std).view(-1, 1, 1)
    return (tensor - mean) / std


def _high_depth(image, decoder: ImageDecoder, sample):
    """A 16-bit or float single-channel image scaled to [0, 1] (8-bit conversion would clip it), resized."""
    import numpy as np
    from PIL import Image

    white = HIGH_DEPTH_WHITE[image.mode]
    array = np.asarray(image, dtype=np.float32)
    if array.size and (array.min() < 0 or array.max() > white):
        raise ManifestError(f"row {sample.row}: image {sample.path} ({image.mode}) has values outside 0..{white:g}",
                            "save it as an 8- or 16-bit image, or a float image in [0, 1]")
    return np.array(decoder.geometry(Image.fromarray(array / white)), dtype=np.float32)


def load_image_set(name: str, manifest: Manifest, spec: DataSpec, cache: SampleCache | None = None) -> StreamedSet:
    """The manifest's images as a streamed set (nothing is decoded yet)."""
    return StreamedSet(name, manifest, ImageDecoder(spec), cache, spec.num_workers)
