"""Step cost on the speech model: one OrthoGrad step against one NegGrad+ step, and hooks vs loop.

The demo's wav2vec2-style CTC model (3 transformer layers, LoRA r=8 on the attention q/k/v/out
projections) on the espeak-ng corpus: 16 forget utterances of one voice, k retain utterances of the
others, measured side by side in one run (median of repeats). Per-sample CTC gradients come from
the hooks backend (vmap cannot run F.ctc_loss). Builds the corpus and model on first use (~2 min).

Run: python benchmarks/step_cost_asr.py [--ks 16,64,128] [--repeats 5]
"""

import torch
from step_cost import median_time, parse_args

from orthograd_cli.tasks.asr.data import load_audio_set
from orthograd_cli.data.manifest import read_manifest
from orthograd_cli.data.speech import build_speech_corpus
from orthograd_cli.gradients.per_sample import per_sample_grads
from orthograd_cli.jobs.demo import cache_dir
from orthograd_cli.jobs.demo_asr import speech_checkpoint
from orthograd_cli.models.lora import trainable_model
from orthograd_cli.loading import load_checkpoint_and_info
from orthograd_cli.methods.loop import apply_update
from orthograd_cli.methods.neggrad_plus import neggrad_plus_direction
from orthograd_cli.methods.orthograd import orthograd_direction
from orthograd_cli.models.registry import load_model
from orthograd_cli.recipe import load_recipe
from orthograd_cli.tasks.asr import mean_loss


def step(direction_fn, model, params, forget_batch, retain_batch, spec):
    direction = direction_fn(model, params, forget_batch, retain_batch, spec, mean_loss)
    apply_update(params, direction.update, spec.lr, None)


def main(argv: list[str] | None = None) -> None:
    args, device = parse_args(argv)

    corpus = build_speech_corpus(cache_dir() / "speech")
    recipe, _ = load_recipe("wav2vec2_model_espeak_speaker")
    checkpoint, info = load_checkpoint_and_info(speech_checkpoint(corpus), recipe)
    model, params = trainable_model(load_model(checkpoint, info).to(device).eval(), recipe, info)
    train = load_audio_set("train", read_manifest(corpus / "train.csv", "asr", info), info.vocab,
                           info.sample_rate)
    forget_batch = train.batch(torch.arange(420, 436), device)  # one voice's utterances
    where = torch.cuda.get_device_name() if device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"wav2vec2 CTC (3 layers), LoRA r={recipe.lora.r} on q/k/v/out: "
          f"{sum(p.numel() for p in params.values()):,} trainable, {where}, median of {args.repeats}")
    print(f"{'k':>5} {'NegGrad+ s':>11} {'OrthoGrad s':>12} {'ratio':>7}   (per_tensor scope, hooks, gram)")
    for k in [int(v) for v in args.ks.split(",")]:
        retain_batch = train.batch(torch.randperm(420, generator=torch.Generator().manual_seed(k))[:k], device)
        spec = recipe.method.model_copy(deep=True)
        spec.retain_batch_size = k
        base = median_time(lambda: step(neggrad_plus_direction, model, params, forget_batch, retain_batch, spec),
                           args.repeats)
        ortho = median_time(lambda: step(orthograd_direction, model, params, forget_batch, retain_batch, spec),
                            args.repeats)
        print(f"{k:>5} {base:>11.3f} {ortho:>12.3f} {ortho / base:>6.2f}x")
    k = 16
    retain = train.batch(torch.arange(k), device)
    loop = median_time(lambda: per_sample_grads(model, params, *retain, mean_loss, "loop"), max(1, args.repeats // 2))
    hooks = median_time(lambda: per_sample_grads(model, params, *retain, mean_loss, "hooks"), args.repeats)
    print(f"per-sample grads at k={k}: hooks {hooks:.3f} s, loop {loop:.3f} s, loop/hooks = {loop / hooks:.1f}x")


if __name__ == "__main__":
    main()
