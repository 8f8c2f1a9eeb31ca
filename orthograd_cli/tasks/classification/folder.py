"""What a Hugging Face image classifier's folder tells the classification task beyond its weights, as
`orthograd.*` metadata: its classes (id2label) and the preprocessing its image processor applies.
models/hf_folder.py reads the folder and asks the task."""

from __future__ import annotations

import json
from pathlib import Path

from orthograd_cli.errors import CheckpointError, clip
from orthograd_cli.models.hf_folder import CONFIG, numbers, processor_path, share, whole


def folder_metadata(folder: Path, config: dict, processor: dict | None) -> dict[str, str]:
    id2label = config.get("id2label") or {}
    if not isinstance(id2label, dict) or not all(str(key).isdigit() for key in id2label):
        raise CheckpointError(f"{folder / CONFIG}: 'id2label' is {clip(repr(id2label))}, expected {{\"0\": name, …}}",
                              "restore config.json from the model's original folder")
    count = config.get("num_labels") or len(id2label) or 2
    meta = {"num_classes": str(whole({"num_labels": count}, "num_labels", folder / CONFIG))}
    labels = [str(id2label[key]) for key in sorted(id2label, key=int)]
    if labels and labels != [f"LABEL_{i}" for i in range(len(labels))]:
        meta["labels"] = json.dumps(labels)
    meta["data"] = json.dumps(image_preprocessing(folder, processor, config))
    return meta


def image_preprocessing(folder: Path, processor: dict | None, config: dict) -> dict:
    """The recipe `data` keys that reproduce the image processor: squash to a fixed size, or resize the
    shorter side and centre-crop; its mean and std."""
    if processor is None:
        raise CheckpointError(f"{folder}: no preprocessor_config.json or processor_config.json, so the image "
                              "size and normalisation are unknown", "save the image processor into the folder, or set data.* in the recipe")
    if processor.get("do_rescale") is False:
        raise CheckpointError(f"{processor_path(folder)}: do_rescale is false (pixels in 0..255), "
                              "which orthograd does not reproduce", "use a model trained on pixels scaled to 0..1")
    path = processor_path(folder)
    data: dict = {"channels": whole(config, "num_channels", folder / CONFIG, 3)}
    size = processor.get("size") or {}
    if isinstance(size, int) and not isinstance(size, bool):
        size = {"shortest_edge": size}
    if not isinstance(size, dict):
        size = {"unknown": size}
    if "height" in size and "width" in size:
        if size["height"] != size["width"]:
            raise CheckpointError(f"{path}: non-square size {clip(repr(size))}",
                                  "orthograd feeds square images; set data.image_size in the recipe")
        data.update(resize="squash", image_size=whole(size, "height", path))
    elif "shortest_edge" in size:
        edge = whole(size, "shortest_edge", path)
        if "crop_pct" in processor:  # ConvNeXt: resize to edge / crop_pct, crop edge
            data.update(resize="shorter_side_crop", resize_size=int(edge / share(processor, "crop_pct", path)),
                        image_size=edge)
        else:
            crop = processor.get("crop_size") or {"height": edge}
            crop = crop if isinstance(crop, dict) else {"height": crop}
            data.update(resize="shorter_side_crop", resize_size=edge, image_size=whole(crop, "height", path))
    else:
        raise CheckpointError(f"{path}: image size {clip(repr(size))} is not understood",
                              "set data.image_size (and data.resize) in the recipe")
    if processor.get("do_normalize", True):
        data.update(mean=numbers(processor, "image_mean", path, [0.5] * 3),
                    std=numbers(processor, "image_std", path, [0.5] * 3, positive=True))
    else:
        data.update(mean=[0.0], std=[1.0])
    return data
