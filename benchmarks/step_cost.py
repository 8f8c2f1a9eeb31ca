"""Cost of one OrthoGrad step against one NegGrad+ step, and of the vmap backend against the loop.

Same model (resnet18 at 32 px trained on the real digits, LoRA r=8 on every conv and the fc), same
batches (32 forget images, k retain images), measured side by side in one run, median of repeats.
NegGrad+ is the shipped `neggrad_plus` method (two ordinary backward passes) with the same
normalised update. OrthoGrad runs per_tensor scope with the
default per-sample backend (hooks) and projection solver (cholesky), with the eigendecomposition solver
(gram), and with vmap and QR (the authors' algorithm); then global scope with hooks, and with the
memory-light gram backend (no per-sample gradients stored).

Run: python benchmarks/step_cost.py [--ks 16,64,128] [--repeats 5]
"""

import argparse
import statistics
import time

import torch

from orthograd_cli.data.digits import build_digits
from orthograd_cli.tasks.classification.data import load_image_set
from orthograd_cli.data.manifest import read_manifest
from orthograd_cli.gradients.per_sample import per_sample_grads
from orthograd_cli.jobs.demo import cache_dir, demo_checkpoint
from orthograd_cli.models.lora import trainable_model
from orthograd_cli.loading import load_checkpoint_and_info
from orthograd_cli.runtime import pick_device
from orthograd_cli.methods.loop import apply_update
from orthograd_cli.methods.neggrad_plus import neggrad_plus_direction
from orthograd_cli.methods.orthograd import orthograd_direction
from orthograd_cli.models.registry import load_model
from orthograd_cli.recipe import Recipe
from orthograd_cli.tasks.classification import mean_loss


def neggrad_plus_step(model, params, forget_batch, retain_batch, spec):
    direction = neggrad_plus_direction(model, params, forget_batch, retain_batch, spec, mean_loss)
    apply_update(params, direction.update, spec.lr, None)


def orthograd_step(model, params, forget_batch, retain_batch, spec):
    direction = orthograd_direction(model, params, forget_batch, retain_batch, spec, mean_loss)
    apply_update(params, direction.update, spec.lr, None)


def median_time(fn, repeats: int) -> float:
    def timed() -> float:
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # kernels run asynchronously: time their completion
        return time.perf_counter() - start

    timed()  # warm-up
    return statistics.median(timed() for _ in range(repeats))


def parse_args(argv: list[str] | None = None, models: tuple[str, ...] = ()):
    """--ks, --repeats, --device and, where `models` are given, --model (shared with step_cost_asr.py);
    returns (args, resolved device)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--ks", default="16,64,128")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    if models:
        parser.add_argument("--model", choices=models, default=models[0])
    args = parser.parse_args(argv)
    return args, pick_device(args.device)


def main(argv: list[str] | None = None) -> None:
    args, device = parse_args(argv)

    data = build_digits(cache_dir() / "digits")
    recipe = Recipe()
    checkpoint, info = load_checkpoint_and_info(demo_checkpoint(data), recipe)
    model, params = trainable_model(load_model(checkpoint, info).to(device).eval(), recipe, info)
    train = load_image_set("train", read_manifest(data / "train.csv", "classification", info), recipe.data)
    inputs, labels = train.batch(torch.arange(len(train)), device)
    forget_batch = (inputs[:32], labels[:32])
    where = torch.cuda.get_device_name() if device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"resnet18 32px, LoRA r={recipe.lora.r}: {sum(p.numel() for p in params.values()):,} trainable, "
          f"{where}, median of {args.repeats}")
    configs = {  # label -> (per-sample backend, projection solver, scope)
        "default (hooks, chol.)": ("auto", "cholesky", "per_tensor"),
        "hooks, gram (eigh)": ("auto", "gram", "per_tensor"),
        "vmap, qr": ("vmap", "qr", "per_tensor"),
        "hooks, global": ("auto", "cholesky", "global"),
        "gram backend, global": ("gram", "cholesky", "global"),
    }
    print(f"{'k':>5} {'NegGrad+ s':>11} " + " ".join(f"{label:>22}" for label in configs))
    for k in [int(v) for v in args.ks.split(",")]:
        retain_batch = (inputs[100:100 + k], labels[100:100 + k])
        base = median_time(lambda: neggrad_plus_step(model, params, forget_batch, retain_batch, recipe.method),
                           args.repeats)
        cells = []
        for backend, solver, scope in configs.values():
            spec = recipe.method.model_copy(deep=True)
            spec.retain_batch_size, spec.per_sample.backend, spec.projection.solver = k, backend, solver
            spec.projection.scope = scope
            ortho = median_time(lambda: orthograd_step(model, params, forget_batch, retain_batch, spec), args.repeats)
            cells.append(f"{ortho:.3f} s = {ortho / base:.2f}x")
        print(f"{k:>5} {base:>11.3f} " + " ".join(f"{cell:>22}" for cell in cells))
    k = 64
    retain = (inputs[100:100 + k], labels[100:100 + k])
    loop = median_time(lambda: per_sample_grads(model, params, *retain, mean_loss, "loop"), max(1, args.repeats // 2))
    for backend in ("hooks", "vmap"):
        fast = median_time(lambda: per_sample_grads(model, params, *retain, mean_loss, backend), args.repeats)
        print(f"per-sample grads at k={k}: {backend} {fast:.3f} s, loop {loop:.3f} s, loop/{backend} = {loop / fast:.1f}x")


if __name__ == "__main__":
    main()
