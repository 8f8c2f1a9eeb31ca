"""`orthograd demo`: the main job end to end on real data, with nothing to download.

Builds scikit-learn's handwritten digits as PNGs + manifests, trains (or reuses) a small resnet18,
then forgets one whole class and a random 10 % of the training samples with OrthoGrad.
"""

from __future__ import annotations

import os
from pathlib import Path

from orthograd_cli.data.digits import LABELS, build_digits
from orthograd_cli.report import DemoReport

DEMO_CLASS = 7


def cache_dir() -> Path:
    return Path(os.environ.get("ORTHOGRAD_CACHE", Path.home() / ".cache" / "orthograd")) / "demo"


def demo_checkpoint(data_dir: Path, seed: int = 0, epochs: int = 4) -> Path:
    """A resnet18 trained on the digits train split, cached beside the data."""
    import torch

    from orthograd_cli.loading import load_set
    from orthograd_cli.models.checkpoint import save_checkpoint
    from orthograd_cli.models.registry import ModelInfo, build_model
    from orthograd_cli.recipe import Recipe
    from orthograd_cli.training import train_classifier

    path = data_dir / f"resnet18_digits_seed{seed}.safetensors"
    if path.exists():
        return path
    info = ModelInfo(arch="resnet18", num_classes=10, labels=LABELS)
    train = load_set(data_dir / "train.csv", info, Recipe(), "train")
    torch.manual_seed(seed)
    model = train_classifier(build_model(info), train, epochs=epochs, seed=seed)
    save_checkpoint(model.state_dict(), path, info.metadata())
    return path


def run_demo(out_dir: Path, observer=None) -> DemoReport:
    from orthograd_cli.jobs.forget import run_forget
    from orthograd_cli.recipe import load_recipe

    data = build_digits(cache_dir() / "digits", forget_class=DEMO_CLASS)
    checkpoint = demo_checkpoint(data)
    runs = {}
    scenarios = {
        # the whole test set: class-wise, forget splits it into the other classes and the forgotten one's
        "class": ("resnet18_digits_class", data / f"class{DEMO_CLASS}", data / "test.csv"),
        "sample": ("resnet18_digits_sample", data / "sample", data / "test.csv"),
    }
    for mode, (recipe_name, folder, test) in scenarios.items():
        recipe, _ = load_recipe(recipe_name)
        runs[mode] = run_forget(str(checkpoint), {"forget": folder / "forget.csv", "retain": folder / "retain.csv",
                                                  "test": test}, recipe, str(out_dir / mode), overwrite=True,
                                observer=observer)
    return DemoReport(scenario="image", checkpoint=str(checkpoint), data=str(data), runs=runs)
