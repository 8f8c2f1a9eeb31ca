"""A Hugging Face image classifier folder: class-wise forgetting meets the resnet's bars, and the output
folder is a model folder that from_pretrained loads and that predicts what the report says."""

from __future__ import annotations

import csv
import json

import pytest
import torch


@pytest.mark.slow
def test_class_wise_forget_on_a_vit_folder(cli, hf_vit_folder, digits, tmp_path):
    import transformers
    from PIL import Image

    folder = digits / "class7"
    out = tmp_path / "run"
    result = cli("forget", hf_vit_folder, "--forget", folder / "forget.csv", "--retain", folder / "retain.csv",
                 "--test", digits / "test.csv", "--recipe", "vit_hf_digits_class", "--out", out, "--quiet", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    before, after = report["metrics"]["before"], report["metrics"]["after"]
    assert before["test_acc"]["value"] >= 0.95, "the fixture model should know the digits"
    assert after["forget_acc"]["value"] <= 0.05 and after["forget_test_acc"]["value"] <= 0.05
    assert after["test_acc"]["value"] >= before["test_acc"]["value"] - 0.03  # the other classes' test images
    assert report["recipe"]["data"]["mean"] == [0.4, 0.4, 0.4]  # from the image processor, not the default
    for name in ("config.json", "preprocessor_config.json"):
        assert (out / name).read_bytes() == (hf_vit_folder / name).read_bytes()

    # from_pretrained loads the output; with the folder's own image processor, it scores what the report says
    model = transformers.ViTForImageClassification.from_pretrained(str(out)).eval()
    processor = transformers.ViTImageProcessor.from_pretrained(str(out))
    with open(digits / "test.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row["label"] != "7"]
    images = [Image.open(digits / row["path"]).convert("RGB") for row in rows]
    with torch.no_grad():
        logits = model(**processor(images, return_tensors="pt")).logits
    accuracy = float((logits.argmax(-1) == torch.tensor([int(r["label"]) for r in rows])).float().mean())
    assert len(rows) == after["test_acc"]["n"]
    # PIL resizes in 8-bit, the tool in float: a prediction or two may differ between the two pipelines
    assert abs(accuracy - after["test_acc"]["value"]) <= 2 / len(rows)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_hooks_match_the_per_image_loop_on_a_vit_folder(tmp_path, dtype, tolerance):
    from orthograd_cli.gradients.per_sample import per_sample_grads
    from orthograd_cli.models.checkpoint import read_checkpoint
    from orthograd_cli.models.lora import wrap_with_lora
    from orthograd_cli.models.registry import load_model, resolve_model_info
    from orthograd_cli.tasks.classification import mean_loss
    from tests.hf_models import tiny_vit

    tiny_vit(tmp_path / "vit")
    checkpoint = read_checkpoint(tmp_path / "vit")
    info = resolve_model_info(checkpoint)
    model = load_model(checkpoint, info)
    targets = info.source.default_lora_targets(model)
    assert "classifier" in targets and any(t.endswith("attention.q_proj") for t in targets)
    model = wrap_with_lora(model, 4, 8, targets).to(dtype).eval()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for p in params.values():
            p.add_(0.05 * torch.randn_like(p))
    images, labels = torch.randn(5, 3, 32, 32, dtype=dtype), torch.arange(5)
    got, _ = per_sample_grads(model, params, images, labels, mean_loss, "hooks")
    for i in range(5):
        loss = mean_loss(model(images[i:i + 1]), labels[i:i + 1])
        for name, grad in zip(params, torch.autograd.grad(loss, list(params.values()))):
            error = float((got[name][i] - grad).norm() / grad.norm())
            assert error <= tolerance, f"{name}, image {i}: relative error {error:.2e}"
