"""Image classifiers trained by code other than the tool's, for tuning and checking its defaults.

Each member is a plain PyTorch (torchvision state dict) or Hugging Face-style (AdamW, linear decay,
`save_pretrained` folder) training loop written here, not the tool's `training.py`: its own image size,
normalisation, optimiser, epochs and seed, on scikit-learn's digits. Each member forgets one whole class and
comes with a reference trained the same way without that class. `split` says whether a member may be used
to tune defaults (`tune`) or only to report on them (`held_out`).

A member is built once into CACHE/<name>/ (model, reference, manifests, `member.json` with the recipe and
`--set` keys a user would give) and reused; each takes well under a minute on 2 cores.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from benchmarks.zoo import INFO, built_before

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
MEMBERS = {
    # torchvision resnet18 on raw pixels in [0, 1] at 24 px, Adam
    "tv_resnet18_raw24": dict(kind="torchvision", arch="resnet18", size=24, mean=[0.0] * 3, std=[1.0] * 3,
                              optimizer="adam", lr=1e-3, epochs=6, batch=32, seed=11, forget_class=3, split="tune"),
    # torchvision mobilenet_v3_small (depthwise convolutions, hardswish) at 40 px, ImageNet statistics, Adam
    "tv_mobilenet_v3s_40": dict(kind="torchvision", arch="mobilenet_v3_small", size=40, mean=IMAGENET[0],
                                std=IMAGENET[1], optimizer="adam", lr=2e-3, epochs=20, batch=32, seed=12,
                                forget_class=5, split="held_out"),
    # a Hugging Face ViT folder (3 layers, width 96, 4-px patches) at 32 px, AdamW with linear decay
    "hf_vit_32": dict(kind="hf_vit", size=32, mean=[0.5] * 3, std=[0.5] * 3, optimizer="adamw", lr=1e-3,
                      epochs=20, batch=32, seed=13, forget_class=8, split="tune"),
    # a Hugging Face ResNet folder (two stages, widths 32/64) at 28 px, AdamW with linear decay
    "hf_resnet_28": dict(kind="hf_resnet", size=28, mean=[0.45] * 3, std=[0.25] * 3, optimizer="adamw", lr=2e-3,
                         epochs=10, batch=32, seed=14, forget_class=1, split="held_out"),
}


def digits_rows(digits: Path, manifest: str) -> list[dict]:
    with open(digits / manifest, newline="") as handle:
        return list(csv.DictReader(handle))


def load_images(digits: Path, rows: list[dict], spec: dict):
    """This member's own preprocessing: PIL bilinear squash to its size, 3 channels, its mean and std."""
    import numpy as np
    import torch
    from PIL import Image

    mean = torch.tensor(spec["mean"]).view(3, 1, 1)
    std = torch.tensor(spec["std"]).view(3, 1, 1)
    images = []
    for row in rows:
        image = Image.open(digits / row["path"]).convert("RGB").resize((spec["size"], spec["size"]), Image.BILINEAR)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        images.append((pixels - mean) / std)
    return torch.stack(images), torch.tensor([int(row["label"]) for row in rows])


def new_model(spec: dict):
    import torch
    import torchvision
    import transformers

    torch.manual_seed(spec["seed"])
    if spec["kind"] == "torchvision":
        return torchvision.models.get_model(spec["arch"], weights=None, num_classes=10)
    labels = {"id2label": {i: str(i) for i in range(10)}, "label2id": {str(i): i for i in range(10)}}
    if spec["kind"] == "hf_vit":
        config = transformers.ViTConfig(image_size=spec["size"], patch_size=4, hidden_size=96, num_hidden_layers=3,
                                        num_attention_heads=4, intermediate_size=192, num_labels=10, **labels)
        return transformers.ViTForImageClassification(config)
    config = transformers.ResNetConfig(embedding_size=32, hidden_sizes=[32, 64], depths=[1, 1], num_labels=10,
                                       layer_type="basic", **labels)
    return transformers.ResNetForImageClassification(config)


def logits_of(model, images):
    out = model(images)
    return out if not hasattr(out, "logits") else out.logits


def train(spec: dict, images, labels):
    """The member's own loop: shuffled mini-batches, cross-entropy, its optimiser (HF style: AdamW, linear decay)."""
    import torch

    model = new_model(spec)
    generator = torch.Generator().manual_seed(spec["seed"])
    steps = spec["epochs"] * -(-len(labels) // spec["batch"])
    if spec["optimizer"] == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    elif spec["optimizer"] == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=spec["lr"], momentum=0.9, weight_decay=5e-4)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps) \
        if spec["optimizer"] == "adamw" else None
    model.train()
    for _ in range(spec["epochs"]):
        for batch in torch.randperm(len(labels), generator=generator).split(spec["batch"]):
            loss = torch.nn.functional.cross_entropy(logits_of(model, images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
    return model.eval()


def accuracy(model, images, labels) -> float:
    import torch

    with torch.no_grad():
        return float((logits_of(model, images).argmax(1) == labels).float().mean())


def save(model, spec: dict, path: Path) -> Path:
    """A torchvision state dict as a plain safetensors file (no metadata: the user's recipe names the
    architecture and preprocessing), or a Hugging Face folder with its image processor."""
    if spec["kind"] == "torchvision":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path.with_suffix(".safetensors")))
        return path.with_suffix(".safetensors")
    import transformers

    model.save_pretrained(str(path))
    transformers.ViTImageProcessor(size={"height": spec["size"], "width": spec["size"]}, image_mean=spec["mean"],
                                   image_std=spec["std"], resample=2).save_pretrained(str(path))
    return path


def write_manifest(path: Path, rows: list[dict], digits: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "path", "label"])
        for row in rows:
            writer.writerow([row["id"], str((digits / row["path"]).resolve()), row["label"]])


def build(name: str, cache: Path, digits: Path) -> dict:
    """The member built into CACHE/<name>/ (or read back): its files and how a user would call the tool on it."""
    folder, before = built_before(cache, name)
    if before is not None:
        return before
    import time

    spec = MEMBERS[name]
    folder.mkdir(parents=True, exist_ok=True)
    train_rows, test_rows = digits_rows(digits, "train.csv"), digits_rows(digits, "test.csv")
    k = str(spec["forget_class"])
    forget = [row for row in train_rows if row["label"] == k]
    others = [row for row in train_rows if row["label"] != k]
    retain = sorted(random.Random(spec["seed"]).sample(others, round(0.1 * len(train_rows))), key=lambda r: r["id"])
    for manifest, rows in (("forget.csv", forget), ("retain.csv", retain), ("test.csv", test_rows)):
        write_manifest(folder / manifest, rows, digits)
    started = time.perf_counter()
    test_images, test_labels = load_images(digits, test_rows, spec)
    model = train(spec, *load_images(digits, train_rows, spec))
    reference = train(spec, *load_images(digits, others, spec))
    info = {
        "name": name, "split": spec["split"], "kind": spec["kind"], "forget_class": spec["forget_class"],
        "model": str(save(model, spec, folder / "model")), "reference": str(save(reference, spec, folder / "retrained")),
        "forget": str(folder / "forget.csv"), "retain": str(folder / "retain.csv"), "test": str(folder / "test.csv"),
        "recipe": "resnet18_digits_class" if spec["kind"] == "torchvision" else "vit_hf_digits_class",
        # what a user of a plain state dict tells the tool; a folder's processor file says it itself
        "sets": ([f"model.arch={spec['arch']}", f"data.image_size={spec['size']}", f"data.mean={spec['mean']}",
                  f"data.std={spec['std']}"] if spec["kind"] == "torchvision" else []),
        "test_acc": accuracy(model, test_images, test_labels),
        "reference_test_acc": accuracy(reference, test_images, test_labels),
        "build_s": round(time.perf_counter() - started, 1),
    }
    (folder / INFO).write_text(json.dumps(info, indent=1))
    return info
