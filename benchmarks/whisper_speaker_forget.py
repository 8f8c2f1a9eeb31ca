"""Speaker forgetting on a tiny Whisper (the demo's, `orthograd demo asr --model whisper`): OrthoGrad and
NegGrad+ against a Whisper retrained without the voice, on the same inputs as benchmarks/speaker_forget.py
(forget voice en-gb-scotland+m2, retain 48 utterances of the other voices, test on their 96 test utterances,
the voice's 12 unseen test utterances as `forget_test`), with the shipped recipe `whisper_espeak_speaker`.

The retrained Whisper's rise in the voice's unseen-utterance WER is the bar that
tests/speech/test_whisper.py holds `forget` to (CI trains one Whisper, not two). Builds the corpus and
both Whispers on first use (about 3 minutes on 2 cores).

Run: python benchmarks/whisper_speaker_forget.py [--seeds 3]
"""

import argparse

from speaker_forget import compare

from orthograd_cli.data.speech import build_speech_corpus, slug
from orthograd_cli.jobs.demo import cache_dir
from orthograd_cli.jobs.demo_asr import FORGET_VOICE
from orthograd_cli.jobs.demo_whisper import RECIPE, whisper_checkpoint

VARIANTS = {"orthograd": [],
            "orthograd, default LoRA targets": ["lora.target_modules=null"],
            "neggrad_plus": ["method.name=neggrad_plus"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    corpus = build_speech_corpus(cache_dir() / "speech")
    voice = corpus / "voices" / slug(FORGET_VOICE)
    model = whisper_checkpoint(corpus)
    reference = whisper_checkpoint(corpus, str(voice.relative_to(corpus) / "train_without.csv"),
                                   name="whisper_digits_without_voice")
    compare(model, reference, voice, RECIPE, VARIANTS, args.seeds)


if __name__ == "__main__":
    main()
