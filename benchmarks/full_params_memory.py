"""Full-parameter OrthoGrad (`lora.enabled: false`) on resnet18: peak memory and time of one step,
for the memory-light `gram` backend against explicit per-sample gradients (vmap; hooks do not
cover BatchNorm weights).

Each row runs in a fresh process: the trained digits resnet18 (11.2 M weights, all trainable),
32 forget images, k retain images, global scope. Peak RSS is the whole process's (what must fit
in memory); k·d·4 is the size of the explicit float32 per-sample gradient matrix alone.

NegGrad+ rows time one NegGrad+ step (two ordinary backward passes) on the same batches, for the ratio.

Run: python benchmarks/full_params_memory.py [--ks 16,64,256] [--vmap-ks 16,64]
"""

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch
from orthograd_cli.data.digits import build_digits
from orthograd_cli.tasks.classification.data import load_image_set
from orthograd_cli.data.manifest import read_manifest
from orthograd_cli.jobs.demo import cache_dir, demo_checkpoint
from orthograd_cli.models.lora import trainable_model
from orthograd_cli.loading import load_checkpoint_and_info
from orthograd_cli.methods.neggrad_plus import neggrad_plus_direction
from orthograd_cli.methods.orthograd import orthograd_direction
from orthograd_cli.models.registry import load_model
from orthograd_cli.recipe import load_recipe
from orthograd_cli.tasks.classification import mean_loss
backend, k = sys.argv[1], int(sys.argv[2])
method = neggrad_plus_direction if backend == "neggrad_plus" else orthograd_direction
backend = "auto" if backend == "neggrad_plus" else backend
recipe, _ = load_recipe(None, ["lora.enabled=false", "method.projection.scope=global",
                               f"method.per_sample.backend={backend}", f"method.retain_batch_size={k}"])
data = build_digits(cache_dir() / "digits")
checkpoint, info = load_checkpoint_and_info(demo_checkpoint(data), recipe)
model, params = trainable_model(load_model(checkpoint, info).eval(), recipe, info)
train = load_image_set("train", read_manifest(data / "train.csv", "classification", info), recipe.data)
forget, retain = train.batch(torch.arange(32)), train.batch(torch.arange(100, 100 + k))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
direction = method(model, params, forget, retain, recipe.method, mean_loss)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
d = sum(p.numel() for p in params.values())
print(json.dumps({"peak_gib": peak / 2**20, "base_gib": base / 2**20, "kd4_gib": k * d * 4 / 2**30, "s": seconds,
                  "d": d, "rank": int(direction.stats.retain_rank) if direction.stats else "–"}))
"""


def row(backend: str, k: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, backend, str(k)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ks", default="16,64,256")
    parser.add_argument("--vmap-ks", default="16,64")
    args = parser.parse_args()
    print(f"{'step':>12} {'k':>5} {'peak RSS GiB':>13} {'after load GiB':>15} {'k·d·4 GiB':>10} {'step s':>8} {'rank':>5}")
    ks = [int(k) for k in args.ks.split(",")]
    runs = [(backend, k) for k in ks for backend in ("neggrad_plus", "gram")]
    runs += [("vmap", int(k)) for k in args.vmap_ks.split(",")]
    for backend, k in runs:
        r = row(backend, k)
        print(f"{backend:>12} {k:>5} {r['peak_gib']:>13.2f} {r['base_gib']:>15.2f} {r['kd4_gib']:>10.2f} "
              f"{r['s']:>8.2f} {r['rank']:>5}", flush=True)
    print(f"d = {r['d']:,} trainable weights")


if __name__ == "__main__":
    main()
