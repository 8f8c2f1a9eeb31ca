"""Speaker forgetting on a tiny Whisper (the demo's, `orthograd demo asr --model whisper`): OrthoGrad and
NegGrad+ against a Whisper retrained without the voice, on the same inputs as benchmarks/speaker_forget.py
(forget voice en-gb-scotland+m2, retain 48 utterances of the other voices, test on their 96 test utterances,
the voice's 12 unseen test utterances as `forget_test`), with the shipped recipe `whisper_espeak_speaker`.

The retrained Whisper's rise in the voice's unseen-utterance WER is the bar that
tests/speech/test_whisper.py holds `forget` to (CI trains one Whisper, not two). Builds the corpus and
both Whispers on first use (about 3 minutes on 2 cores).

Run: python benchmarks/whisper_speaker_forget.py [--seeds 3] [--model-seed 0] [--variant 'LABEL|KEY=VALUE;…' …]
(`--variant` replaces the variants below; each run's rises over the original are printed after the table.)
"""

from speaker_forget import run

from orthograd_cli.jobs.demo_whisper import RECIPE, whisper_checkpoint

VARIANTS = {"orthograd": [],
            "orthograd, default LoRA targets": ["lora.target_modules=null"],
            "neggrad_plus": ["method.name=neggrad_plus"]}

if __name__ == "__main__":
    run(whisper_checkpoint, "whisper_digits_without_voice", RECIPE, VARIANTS)
