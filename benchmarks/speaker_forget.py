"""Speaker forgetting on the espeak-ng corpus: OrthoGrad and NegGrad+ against a model retrained
without the voice (the gold standard), on the same inputs.

Forget voice en-gb-scotland+m2 (its 60 training utterances; 20 % are held out of the updates and
drive the stop rule), retain 48 utterances of the other voices, test on the other voices' 96 test
utterances, and the voice's 12 unseen test utterances (`forget_test`). The shipped recipe
`wav2vec2_model_espeak_speaker`; NegGrad+ runs with the same recipe and its default α = 0.5, at the
recipe's step length and at a quarter of it. Builds
the corpus, the model and the reference on first use (about 3 minutes).

Run: python benchmarks/speaker_forget.py [--seeds 3] [--model-seed 0] [--variant 'LABEL|KEY=VALUE;…' …]
"""

import argparse
import statistics

from orthograd_cli.data.speech import build_speech_corpus, slug
from orthograd_cli.jobs.demo import cache_dir
from orthograd_cli.jobs.demo_asr import FORGET_VOICE, RECIPE, speech_checkpoint
from orthograd_cli.jobs.evaluate import run_evaluate
from orthograd_cli.jobs.forget import run_forget
from orthograd_cli.recipe import load_recipe

SETS = ("forget", "forget_test", "test")
VARIANTS = {  # label -> recipe overrides
    "orthograd": [],
    "orthograd, check_every=2": ["method.stop.check_every=2"],
    "neggrad_plus": ["method.name=neggrad_plus"],
    "neggrad_plus, lr=0.05": ["method.name=neggrad_plus", "method.lr=0.05"],
}


def main() -> None:
    run(speech_checkpoint, "wav2vec2_digits_without_voice", RECIPE, VARIANTS)


def run(build, reference_name: str, recipe_name: str, variants: dict) -> None:
    """Parse the options, build the corpus, the model (`build(corpus, seed=…)`) and the reference retrained
    without the voice (`build(corpus, its train_without.csv, name=reference_name, seed=…)`), and compare."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3, help="unlearning seeds per variant")
    parser.add_argument("--model-seed", type=int, default=0, help="training seed of the model and the reference")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL|KEY=VALUE;KEY=VALUE",
                        help="a variant of the recipe (repeatable; replaces the default variants), e.g. "
                             "'global|method.projection.scope=global'")
    args = parser.parse_args()
    if args.variant:
        variants = {label: [o for o in overrides.split(";") if o]
                    for label, _, overrides in (v.partition("|") for v in args.variant)}
    corpus = build_speech_corpus(cache_dir() / "speech")
    voice = corpus / "voices" / slug(FORGET_VOICE)
    reference = build(corpus, str(voice.relative_to(corpus) / "train_without.csv"), name=reference_name,
                      seed=args.model_seed)
    compare(build(corpus, seed=args.model_seed), reference, voice, recipe_name, variants, args.seeds)


def compare(model, reference, voice, recipe_name: str, variants: dict, seeds: int) -> None:
    """The original and the reference evaluated, each variant run with `seeds` seeds; a table of WERs."""
    manifests = {name: voice / f"{name}.csv" for name in ("forget", "retain", "test", "forget_test")}
    recipe, _ = load_recipe(recipe_name)
    evaluated = run_evaluate(str(model), {n: manifests[n] for n in SETS}, recipe,
                             reference_path=str(reference)).model_dump(mode="json")
    rows = {"original": [evaluated["metrics"]], "retrained without the voice": [evaluated["reference_metrics"]]}
    steps = {}
    for label, overrides in variants.items():
        rows[label], steps[label] = [], []
        for seed in range(seeds):
            recipe, _ = load_recipe(recipe_name, overrides + [f"seed={seed}"])
            report = run_forget(str(model), manifests, recipe, str(cache_dir() / "speaker_run"), overwrite=True
                                ).model_dump(mode="json")
            rows[label].append(report["metrics"]["after"])
            steps[label].append(report["steps"])
    print(f"forget voice {FORGET_VOICE}, recipe {recipe_name}; WER, mean ± std over {seeds} seed(s) for the methods")
    print(f"{'model':>28} {'steps':>9} " + " ".join(f"{name + ' WER':>18}" for name in SETS))
    for name, metrics in rows.items():
        cells = []
        for set_name in SETS:
            values = [m[f"{set_name}_wer"]["value"] for m in metrics]
            spread = f" ± {statistics.pstdev(values):.3f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.3f}{spread}")
        run_steps = "/".join(str(s) for s in steps.get(name, [])) or "–"
        print(f"{name:>28} {run_steps:>9} " + " ".join(f"{cell:>18}" for cell in cells))
    print("rises over the original per seed (forget_test WER, test WER):")
    original = rows["original"][0]
    for name in variants:
        rises = [tuple(m[f"{s}_wer"]["value"] - original[f"{s}_wer"]["value"] for s in ("forget_test", "test"))
                 for m in rows[name]]
        print(f"{name:>28} " + "  ".join(f"({on_voice:+.3f}, {on_others:+.3f})" for on_voice, on_others in rises))


if __name__ == "__main__":
    main()
