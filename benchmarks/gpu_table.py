"""The GPU step-cost table (issue #16): OrthoGrad's step against NegGrad+'s on the models users bring, each
setting's peak device memory, bf16 against float32, and whether two same-seed runs write the same bytes.

Rows (random weights and inputs: a step's cost does not depend on what the weights learned):
resnet18 at 224 px and at 32 px with LoRA r=8, resnet18 at 32 px with every weight trainable, vit_b_16 at
224 px with LoRA on its MLP linears, torchaudio's wav2vec2_base with LoRA on the attention projections on
4 s of audio. Columns: NegGrad+ (seconds), then OrthoGrad's step as a multiple of it with its peak memory:
the default (per_tensor, hooks, cholesky), global scope with hooks, global with the memory-light gram
backend, and vmap + QR per tensor (the authors' algorithm; skipped where vmap cannot run: CTC, attention).
Median of `--repeats` after a warm-up; CUDA time measured to the kernels' completion.

Then the bf16 ratios (NegGrad+ and the default step, float32 time / bf16 time, resnet18 224 px, k=128),
`orthograd forget` run twice with the same seed on the digits demo data (sha256 of both checkpoints and the
report's `deterministic`), and once more as a process group of one (NCCL on a GPU), against the first.

Run on a GPU through benchmarks/gpu_check.sh (about 3 minutes on an H100-class card). `--quick` runs every
row at toy sizes on the CPU in about a minute, to test the script itself.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from step_cost import median_time

from orthograd_cli.gradients.batching import pass_precision
from orthograd_cli.methods.loop import apply_update
from orthograd_cli.methods.neggrad_plus import neggrad_plus_direction
from orthograd_cli.methods.orthograd import orthograd_direction
from orthograd_cli.models.lora import trainable_model
from orthograd_cli.models.registry import ModelInfo, build_model
from orthograd_cli.recipe import Recipe, load_recipe
from orthograd_cli.runtime import pick_device

COLUMNS = {  # label -> (per-sample backend, solver, scope)
    "default": ("auto", "cholesky", "per_tensor"),
    "global, hooks": ("auto", "cholesky", "global"),
    "global, gram backend": ("gram", "cholesky", "global"),
    "vmap + QR": ("vmap", "qr", "per_tensor"),
}


def image_row(arch: str, size: int, ks: list[int], lora: bool = True, config: dict | None = None):
    recipe = Recipe()
    recipe.lora.enabled = lora
    info = ModelInfo(arch=arch, num_classes=10, config=config)
    generator = torch.Generator().manual_seed(0)

    def batch(n: int):
        return torch.randn(n, 3, size, size, generator=generator), torch.randint(0, 10, (n,), generator=generator)

    from orthograd_cli.tasks.classification import mean_loss

    return recipe, info, batch, mean_loss, ks


def speech_row(seconds: float, ks: list[int], config: dict | None = None):
    recipe, _ = load_recipe("wav2vec2_model_espeak_speaker")
    vocab = ["<blank>", " ", *"abcdefghijklmnopqrstuvwxyz'"]
    info = ModelInfo(arch="wav2vec2_base", num_classes=len(vocab), task="asr", vocab=vocab, sample_rate=16000,
                     config=config)
    generator = torch.Generator().manual_seed(0)
    samples = int(seconds * 16000)

    def batch(n: int):
        waves = torch.randn(n, samples, generator=generator) * 0.1
        tokens = torch.randint(1, len(vocab), (n, int(seconds * 12)), generator=generator)
        return ((waves, torch.full((n,), samples)), (tokens, torch.full((n,), tokens.shape[1])))

    from orthograd_cli.tasks.asr import mean_loss

    return recipe, info, batch, mean_loss, ks


def to(batch, device):
    if isinstance(batch, tuple):
        return tuple(to(part, device) for part in batch)
    return batch.to(device)


def peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def forget_batch_size(device: str) -> int:
    return 32 if device == "cuda" else 4  # the CPU (--quick) only tests the script


def prepared(row, device: str):
    """(model, its trainable parameters, a forget batch) for one row, on the device."""
    recipe, info, batch, _, _ = row
    model, params = trainable_model(build_model(info).to(device).eval(), recipe, info)
    return model, params, to(batch(forget_batch_size(device)), device)


def measure_row(name: str, row, device: str, repeats: int, columns=COLUMNS) -> list[str]:
    recipe, _, batch, loss_fn, ks = row
    model, params, forget = prepared(row, device)
    lines = []
    for k in ks:
        retain = to(batch(k), device)

        def step(direction_fn, spec):
            direction = direction_fn(model, params, forget, retain, spec, loss_fn)
            apply_update(params, direction.update, spec.lr, None)

        spec = recipe.method.model_copy(deep=True)
        spec.retain_batch_size = k
        base = median_time(lambda: step(neggrad_plus_direction, spec), repeats)
        cells = []
        for backend, solver, scope in columns.values():
            spec.per_sample.backend, spec.projection.solver, spec.projection.scope = backend, solver, scope
            if device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            try:
                seconds = median_time(lambda: step(orthograd_direction, spec), repeats)
            except Exception as err:  # a backend that cannot run this model (vmap on CTC, gram on attention)
                cells.append(f"— ({type(err).__name__})")
                continue
            peak = peak_gib(device)
            cells.append(f"{seconds / base:.2f}x" + (f" ({peak:.1f} GiB)" if peak is not None else ""))
        lines.append(f"| {name}, k={k} | {base * 1000:.0f} ms | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    return lines


def bf16_ratios(row, device: str, repeats: int, k: int) -> str:
    recipe, _, batch, loss_fn, _ = row
    model, params, forget = prepared(row, device)
    retain = to(batch(k), device)
    spec = recipe.method.model_copy(deep=True)
    times = {}
    for precision in ("float32", "bf16"):
        for label, direction_fn in (("NegGrad+", neggrad_plus_direction), ("OrthoGrad", orthograd_direction)):
            def step():
                with pass_precision(precision, device):
                    direction = direction_fn(model, params, forget, retain, spec, loss_fn)
                apply_update(params, direction.update, spec.lr, None)

            times[label, precision] = median_time(step, repeats)
    return (f"bf16 at k={k}: NegGrad+ float32/bf16 = {times['NegGrad+', 'float32'] / times['NegGrad+', 'bf16']:.2f}x, "
            f"OrthoGrad float32/bf16 = {times['OrthoGrad', 'float32'] / times['OrthoGrad', 'bf16']:.2f}x, "
            f"OrthoGrad/NegGrad+ in bf16 = {times['OrthoGrad', 'bf16'] / times['NegGrad+', 'bf16']:.2f}x")


def same_seed_bytes(device: str, max_steps: int) -> tuple[bool, str]:
    """`orthograd forget` twice, same seed, on the digits demo data, then once more as a process group of one
    (NCCL on a GPU, gloo on the CPU: the distributed path): (all as expected, lines to print)."""
    import os

    from safetensors.torch import load_file

    from orthograd_cli.cli.launch import free_port
    from orthograd_cli.data.digits import build_digits
    from orthograd_cli.jobs.demo import cache_dir, demo_checkpoint

    data = build_digits(cache_dir() / "digits")
    checkpoint = demo_checkpoint(data)
    digests, deterministic = [], []
    group = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": str(free_port()), "TORCHELASTIC_RUN_ID": "gpu_check"}  # a rank, as torchrun marks one
    with tempfile.TemporaryDirectory() as tmp:
        for run, env in (("a", {}), ("b", {}), ("group", group)):
            out = Path(tmp) / run
            done = subprocess.run([sys.executable, "-m", "orthograd_cli", "forget", str(checkpoint), "--forget",
                                   str(data / "class7/forget.csv"), "--retain", str(data / "class7/retain.csv"),
                                   "--recipe", "resnet18_digits_class", "--out", str(out), "--set", f"device={device}",
                                   "--set", f"method.max_steps={max_steps}", "--json", "--quiet"],
                                  capture_output=True, text=True, env={**os.environ, **env})
            if done.returncode != 0:
                return False, f"same-seed check ({run}): forget failed ({done.returncode}): {done.stderr[-300:]}"
            digests.append(hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest())
            report = json.loads(done.stdout)["provenance"]
            deterministic.append(report["deterministic"])
        single, grouped = load_file(Path(tmp) / "a/model.safetensors"), load_file(Path(tmp) / "group/model.safetensors")
        worst = max(float((grouped[n].double() - t.double()).norm() / t.double().norm().clamp_min(1e-30))
                    for n, t in single.items())
    same = digests[0] == digests[1]
    lines = (f"same-seed check on {device}: sha256 {digests[0][:16]}… and {digests[1][:16]}… "
             f"{'identical' if same else 'DIFFER'}; report deterministic = {deterministic[:2]}\n"
             f"process group of 1 ({report['distributed_backend']}): worst relative difference to the single "
             f"process {worst:.1e} per tensor ({'ok' if worst <= 1e-5 else 'FAIL'})")
    return same and worst <= 1e-5, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="toy sizes, to test the script on a CPU")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 in every column
    quick = args.quick
    repeats = 1 if quick else args.repeats
    where = torch.cuda.get_device_name() if device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {where}; median of {repeats} after a warm-up; forget batch {forget_batch_size(device)}")
    print("| setting | NegGrad+ | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    big, seconds = (64, 0.5) if quick else (224, 4.0)
    ks = {"image": [4] if quick else [64, 128, 256], "full": [4] if quick else [128, 256],
          "vit": [4] if quick else [64], "speech": [4] if quick else [32, 64]}
    rows = {
        f"resnet18 {big} px, LoRA": image_row("resnet18", big, ks["image"]),
        "resnet18 32 px, LoRA": image_row("resnet18", 32, ks["image"]),
        "resnet18 32 px, every weight": image_row("resnet18", 32, ks["full"], lora=False),
        f"vit_b_16 {big} px, LoRA": image_row("vit_b_16", big, ks["vit"], config={"image_size": big}),
        f"wav2vec2_base {seconds:g} s, LoRA": speech_row(seconds, ks["speech"]),
    }
    for name, row in rows.items():
        measure_row(name, row, device, repeats)
    print(bf16_ratios(rows[f"resnet18 {big} px, LoRA"], device, repeats, 4 if quick else 128), flush=True)
    same, line = same_seed_bytes(device, 3 if quick else 10)
    print(line)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
