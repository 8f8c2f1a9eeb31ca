"""The device check for a lent GPU machine (runs on the CPU too, to test the script itself).

1. Projection exactness: real LoRA gradients of the digits resnet18, computed and projected on the
   device (per-sample hooks, cholesky, gram and qr solvers, both scopes, k = 64 and 128). Each result is
   checked against a float64 CPU reference (least squares) and for |<g⊥, g_i>| / (‖g⊥‖‖g_i‖).
2. Step cost: benchmarks/step_cost.py on the same device (OrthoGrad / NegGrad+ and backends).
Exit status 1 if any exactness check fails. Keep it within 5 minutes: bash benchmarks/gpu_check.sh
"""

import sys

import torch

from orthograd_cli.data.digits import build_digits
from orthograd_cli.tasks.classification.data import load_image_set
from orthograd_cli.data.manifest import read_manifest
from orthograd_cli.gradients.per_sample import batch_grad, per_sample_grads
from orthograd_cli.gradients.projection import project
from orthograd_cli.jobs.demo import cache_dir, demo_checkpoint
from orthograd_cli.models.lora import trainable_model
from orthograd_cli.loading import load_checkpoint_and_info
from orthograd_cli.methods.loop import apply_update
from orthograd_cli.methods.orthograd import orthograd_direction
from orthograd_cli.models.registry import load_model
from orthograd_cli.recipe import Recipe
from orthograd_cli.tasks.classification import mean_loss


def reference_projection(g_u: dict, rows: dict, scope: str) -> torch.Tensor:
    names, k = list(g_u), next(iter(rows.values())).shape[0]

    def off_span(g, G):
        return g - (G.T @ torch.linalg.lstsq(G.T, g[:, None], driver="gelsd").solution)[:, 0]

    if scope == "global":
        return off_span(torch.cat([g_u[n].double().cpu().reshape(-1) for n in names]),
                        torch.cat([rows[n].double().cpu().reshape(k, -1) for n in names], dim=1))
    return torch.cat([off_span(g_u[n].double().cpu().reshape(-1), rows[n].double().cpu().reshape(k, -1))
                      for n in names])


def main() -> int:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu (no CUDA device found)'}")
    recipe = Recipe()
    data = build_digits(cache_dir() / "digits")
    checkpoint, info = load_checkpoint_and_info(demo_checkpoint(data), recipe)
    model, params = trainable_model(load_model(checkpoint, info).to(device).eval(), recipe, info)
    train = load_image_set("train", read_manifest(data / "train.csv", "classification", info), recipe.data)
    inputs, labels = train.batch(torch.arange(len(train)), device)
    for step in range(3):  # mid-unlearning, so that both LoRA factors carry gradient
        direction = orthograd_direction(model, params, (inputs[:32], labels[:32]), (inputs[100:164], labels[100:164]),
                                        recipe.method, mean_loss)
        apply_update(params, direction.update, 0.05, None)
    failures = 0
    for k in (64, 128):
        g_u, _ = batch_grad(model, params, inputs[:32], labels[:32], mean_loss)
        rows, _ = per_sample_grads(model, params, inputs[200:200 + k], labels[200:200 + k], mean_loss, "auto")
        flat_rows = torch.cat([rows[n].double().cpu().reshape(k, -1) for n in params], dim=1)
        for scope in ("per_tensor", "global"):
            reference = reference_projection(g_u, rows, scope)
            for solver in ("cholesky", "gram", "qr"):
                projected, _ = project(g_u, rows, scope, solver=solver)
                ours = torch.cat([projected[n].double().cpu().reshape(-1) for n in params])
                error = float((ours - reference).norm() / reference.norm())
                cosines = (flat_rows @ ours).abs() / (flat_rows.norm(dim=1) * ours.norm()).clamp_min(1e-30)
                ok = error < 1e-4 and float(cosines.max()) <= 1e-5
                failures += not ok
                print(f"k={k:>3} {scope:>10} {solver:>4}: rel. error vs float64 {error:.1e}, "
                      f"max |cos(g⊥, g_i)| {float(cosines.max()):.1e}  {'ok' if ok else 'FAIL'}")
    from step_cost import main as step_cost

    step_cost(["--device", device, "--ks", "16,64,128,256", "--repeats", "5"])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
