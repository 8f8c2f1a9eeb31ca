"""Peak memory of per-sample gradients against k, and evaluation throughput.

Memory: each (backend, k) runs in a fresh process. The model is loaded and one step's per-sample
gradients are computed; the script reports peak RSS above the RSS after loading, next to k·d·4 bytes
(the float32 gradient matrix itself). Throughput: samples/s of batched, no-grad prediction on the
digits test set. resnet18 at 32 px with LoRA r=8 (d = 291,560). CPU; on a GPU,
torch.cuda.max_memory_allocated would be the measure.

Run: python benchmarks/memory_and_throughput.py
"""

import json
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, torch
from orthograd_cli.data.digits import build_digits
from orthograd_cli.tasks.classification.data import load_image_set
from orthograd_cli.data.manifest import read_manifest
from orthograd_cli.gradients.per_sample import per_sample_grads
from orthograd_cli.jobs.demo import cache_dir, demo_checkpoint
from orthograd_cli.models.lora import trainable_model
from orthograd_cli.loading import load_checkpoint_and_info
from orthograd_cli.models.registry import load_model
from orthograd_cli.recipe import Recipe
from orthograd_cli.tasks.classification import mean_loss
backend, k = sys.argv[1], int(sys.argv[2])
data = build_digits(cache_dir() / "digits")
recipe = Recipe()
checkpoint, info = load_checkpoint_and_info(demo_checkpoint(data), recipe)
model, params = trainable_model(load_model(checkpoint, info).eval(), recipe, info)
train = load_image_set("train", read_manifest(data / "train.csv", "classification", info), recipe.data)
inputs, labels = train.batch(torch.arange(k))
per_sample_grads(model, params, inputs[:2], labels[:2], mean_loss, backend)  # warm up lazy allocations
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
grads, _ = per_sample_grads(model, params, inputs, labels, mean_loss, backend)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
d = sum(p.numel() for p in params.values())
print(json.dumps({"extra_mib": (peak - base) / 1024, "kd4_mib": k * d * 4 / 2**20}))
"""


def memory_row(backend: str, k: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, backend, str(k)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def throughput() -> float:
    import torch

    from orthograd_cli.data.digits import build_digits
    from orthograd_cli.jobs.demo import cache_dir, demo_checkpoint
    from orthograd_cli.loading import load_checkpoint_and_info, load_set
    from orthograd_cli.models.registry import load_model
    from orthograd_cli.recipe import Recipe
    from orthograd_cli.tasks.classification import predict

    data = build_digits(cache_dir() / "digits")
    recipe = Recipe()
    checkpoint, info = load_checkpoint_and_info(demo_checkpoint(data), recipe)
    model = load_model(checkpoint, info).eval()
    test = load_set(data / "test.csv", info, recipe, "test")
    predict(model, test)  # decodes the set into the cache: the passes below time the model alone
    start = time.perf_counter()
    for _ in range(4):
        predict(model, test, batch_size=recipe.eval.batch_size)
    return 4 * len(test) / (time.perf_counter() - start)


def main() -> None:
    print(f"{'backend':>8} {'k':>5} {'peak RSS above model, MiB':>26} {'k·d·4, MiB':>11} {'ratio':>6}")
    for backend in ("hooks", "vmap"):
        for k in (16, 64, 128, 256):
            row = memory_row(backend, k)
            print(f"{backend:>8} {k:>5} {row['extra_mib']:>26.1f} {row['kd4_mib']:>11.1f} "
                  f"{row['extra_mib'] / row['kd4_mib']:>5.2f}x", flush=True)
    print(f"evaluate throughput (resnet18 32 px, batch 256, no grad): {throughput():,.0f} samples/s")



if __name__ == "__main__":
    main()
