"""Step cost on the speech models: one OrthoGrad step against one NegGrad+ step, and hooks vs loop.

The demo's wav2vec2-style CTC model (3 transformer layers, LoRA r=8 on the attention q/k/v/out
projections) or, with `--model whisper`, the demo's tiny Whisper with its recipe's LoRA targets, on the
espeak-ng corpus: 16 forget utterances of one voice, k retain utterances of the others, measured side
by side in one run (median of repeats). Per-sample gradients come from the hooks backend (vmap cannot
run F.ctc_loss). Builds the corpus and model on first use (~2 min).

Run: python benchmarks/step_cost_asr.py [--ks 16,64,128] [--repeats 5] [--model whisper]
"""

import torch
from step_cost import median_time, parse_args

from orthograd_cli.data.speech import build_speech_corpus
from orthograd_cli.gradients.per_sample import per_sample_grads
from orthograd_cli.jobs.demo import cache_dir
from orthograd_cli.jobs.demo_asr import RECIPE, speech_checkpoint
from orthograd_cli.jobs.demo_whisper import RECIPE as WHISPER_RECIPE
from orthograd_cli.jobs.demo_whisper import whisper_checkpoint
from orthograd_cli.models.lora import trainable_model
from orthograd_cli.loading import load_checkpoint_and_info, load_set
from orthograd_cli.methods.loop import apply_update
from orthograd_cli.methods.neggrad_plus import neggrad_plus_direction
from orthograd_cli.methods.orthograd import orthograd_direction
from orthograd_cli.models.registry import load_model
from orthograd_cli.recipe import load_recipe
from orthograd_cli.tasks import get_task

MODELS = {"wav2vec2": (speech_checkpoint, RECIPE, "wav2vec2 CTC (3 layers)"),
          "whisper": (whisper_checkpoint, WHISPER_RECIPE, "Whisper (2+2 layers)")}


def step(direction_fn, model, params, forget_batch, retain_batch, spec, mean_loss):
    direction = direction_fn(model, params, forget_batch, retain_batch, spec, mean_loss)
    apply_update(params, direction.update, spec.lr, None)


def main(argv: list[str] | None = None) -> None:
    args, device = parse_args(argv, tuple(MODELS))
    build, recipe_name, title = MODELS[args.model]

    corpus = build_speech_corpus(cache_dir() / "speech")
    recipe, _ = load_recipe(recipe_name)
    checkpoint, info = load_checkpoint_and_info(build(corpus), recipe)
    mean_loss = get_task(info.task).mean_loss
    model, params = trainable_model(load_model(checkpoint, info).to(device).eval(), recipe, info)
    train = load_set(corpus / "train.csv", info, recipe, "train")
    forget_batch = train.batch(torch.arange(420, 436), device)  # one voice's utterances
    where = torch.cuda.get_device_name() if device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    targets = ", ".join(recipe.lora.target_modules or ["q/k/v/out"])
    print(f"{title}, LoRA r={recipe.lora.r} on {targets}: "
          f"{sum(p.numel() for p in params.values()):,} trainable, {where}, median of {args.repeats}")
    method = recipe.method
    print(f"{'k':>5} {'NegGrad+ s':>11} {'OrthoGrad s':>12} {'ratio':>7}   ({method.projection.scope} scope, "
          f"{method.per_sample.backend}, {method.projection.solver})")
    for k in [int(v) for v in args.ks.split(",")]:
        retain_batch = train.batch(torch.randperm(420, generator=torch.Generator().manual_seed(k))[:k], device)
        spec = recipe.method.model_copy(deep=True)
        spec.retain_batch_size = k
        def timed(direction_fn):
            return median_time(lambda: step(direction_fn, model, params, forget_batch, retain_batch, spec, mean_loss),
                               args.repeats)

        base, ortho = timed(neggrad_plus_direction), timed(orthograd_direction)
        print(f"{k:>5} {base:>11.3f} {ortho:>12.3f} {ortho / base:>6.2f}x")
    k = 16
    retain = train.batch(torch.arange(k), device)
    loop = median_time(lambda: per_sample_grads(model, params, *retain, mean_loss, "loop"), max(1, args.repeats // 2))
    hooks = median_time(lambda: per_sample_grads(model, params, *retain, mean_loss, "hooks"), args.repeats)
    print(f"per-sample grads at k={k}: hooks {hooks:.3f} s, loop {loop:.3f} s, loop/hooks = {loop / hooks:.1f}x")


if __name__ == "__main__":
    main()
