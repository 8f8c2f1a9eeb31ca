"""Streamed data: samples decoded when a batch needs them give the same numbers as samples decoded once and
kept; torchvision's evaluation transform is reproduced; a bad file found by a worker is a clean error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image


def test_shorter_side_crop_matches_torchvision_resize_and_center_crop(tmp_path):
    import torchvision.transforms.v2 as T

    from orthograd_cli.data.manifest import Sample
    from orthograd_cli.recipe import DataSpec
    from orthograd_cli.tasks.classification.data import ImageDecoder, decode_image

    spec = DataSpec(image_size=224, resize="shorter_side_crop", resize_size=232, mean=[0.485, 0.456, 0.406],
                    std=[0.229, 0.224, 0.225])
    reference = T.Compose([T.Resize(232, interpolation=T.InterpolationMode.BILINEAR, antialias=True),
                           T.CenterCrop(224), T.ToImage(), T.ToDtype(torch.float32, scale=True),
                           T.Normalize(spec.mean, spec.std)])
    rng = np.random.default_rng(0)
    for n, (width, height) in enumerate([(320, 240), (240, 500), (256, 256), (1000, 300)]):
        path = tmp_path / f"{n}.jpg"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path, quality=90)
        ours = decode_image(Sample(id=str(n), path=path, row=n + 2, target=0), ImageDecoder(spec))
        with Image.open(path) as image:
            theirs = reference(image.convert("RGB"))
        assert ours.shape == theirs.shape == (3, 224, 224)
        assert float((ours - theirs).abs().max()) <= 1e-6


@pytest.mark.slow
def test_streamed_and_cached_sets_give_byte_identical_checkpoints_and_the_same_metrics(cli, trained_model, digits,
                                                                                     tmp_path):
    """cache_gb=0 with two worker processes decodes every batch anew; the default keeps every decoded sample."""
    def run(out, *sets):
        args = ["forget", trained_model, "--forget", digits / "sample/forget.csv", "--retain",
                digits / "sample/retain.csv", "--test", digits / "test.csv", "--set", "method.max_steps=5",
                "--require", "!target_reached",
                "--set", "method.stop.target_forget_acc=0", "--out", tmp_path / out, "--quiet", "--json"]
        for assignment in sets:
            args += ["--set", assignment]
        result = cli(*args)
        assert result.code == 0, result.err
        return json.loads(result.out)

    cached = run("cached")
    streamed = run("streamed", "data.cache_gb=0", "data.num_workers=2")
    def scores(history):  # each check's scores; its wall time differs between any two runs
        return [{key: value for key, value in row.items() if key != "wall_s"} for row in history]

    assert cached["metrics"] == streamed["metrics"] and scores(cached["history"]) == scores(streamed["history"])
    # how the data are read is no part of the recipe's hash, so the files are the same to the byte
    assert (tmp_path / "cached/model.safetensors").read_bytes() == (tmp_path / "streamed/model.safetensors").read_bytes()


def test_a_file_a_worker_cannot_decode_is_one_clean_error(cli, trained_model, digits, tmp_path):
    lines = (digits / "test.csv").read_text().splitlines()
    (tmp_path / "broken.png").write_text("not an image")
    rows = [lines[0]] + [line.replace("images/", f"{digits}/images/") for line in lines[1:40]]
    rows.append("broken,broken.png,3")
    (tmp_path / "test.csv").write_text("\n".join(rows) + "\n")
    result = cli("evaluate", trained_model, "--test", tmp_path / "test.csv", "--set", "data.cache_gb=0",
                 "--set", "data.num_workers=2", "--quiet")
    assert result.code == 2 and result.err.count("\n") == 1 and "Traceback" not in result.err
    assert "test.csv row 41: cannot read image" in result.err
