"""Speaker forgetting end to end on the espeak-ng corpus, through the real CLI.

The gold standard is a model retrained without the voice; the unlearned model must raise the
voice's WER on its unseen utterances at least as much as retraining does, while the other voices'
WER rises by at most 0.10.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

RECIPE = "wav2vec2_model_espeak_speaker"
OTHERS_BAR = 0.10  # the most the other voices' WER may rise


def voice_manifests(voice, *names):
    args = []
    flags = {"forget": "--forget", "retain": "--retain", "test": "--test", "forget_test": "--forget-test"}
    for name in names:
        args += [flags[name], voice / f"{name}.csv"]
    return args


@pytest.fixture(scope="module")
def unlearned(cli, asr_model, asr_retrained, forget_voice, tmp_path_factory):
    out = tmp_path_factory.mktemp("asr") / "run"
    plot = out.parent / "tradeoff.png"
    # with the retrained model as --reference, the stop target is its accuracy on the forget set; the others' WER
    # may rise by this test's bar (0.10) rather than test_kept's default (0.03): the tests below assert the rest
    result = cli("forget", asr_model, *voice_manifests(forget_voice, "forget", "retain", "test", "forget_test"),
                 "--recipe", RECIPE, "--reference", asr_retrained, "--set", f"eval.max_test_drop={OTHERS_BAR}",
                 "--out", out, "--plot", plot, "--json", "-q")
    assert result.code == 0, result.err
    return out, json.loads(result.out), plot


@pytest.fixture(scope="module")
def cli():
    """A module-scoped variant of the `cli` fixture (the runs here are shared by several tests)."""
    from tests.conftest import run_cli

    return run_cli


def test_trained_model_reaches_low_wer_on_held_out_utterances(cli, asr_model, speech_corpus):
    result = cli("evaluate", asr_model, "--test", speech_corpus / "test.csv", "--json")
    assert result.code == 0, result.err
    metrics = json.loads(result.out)["metrics"]
    assert metrics["test_wer"]["value"] <= 0.15
    assert metrics["test_acc"]["value"] == pytest.approx(max(0.0, 1 - metrics["test_wer"]["value"]))


def test_retrained_reference_does_not_know_the_voice(cli, asr_model, asr_retrained, forget_voice):
    result = cli("evaluate", asr_model, *voice_manifests(forget_voice, "forget", "test", "forget_test"),
                 "--reference", asr_retrained, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    model, reference, gap = report["metrics"], report["reference_metrics"], report["gap_to_reference"]
    # the reference never heard the voice: worse on it than the model trained on it
    assert reference["forget_wer"]["value"] > model["forget_wer"]["value"]
    assert gap["forget_wer"] == pytest.approx(model["forget_wer"]["value"] - reference["forget_wer"]["value"])
    assert set(gap) >= {"forget_wer", "forget_test_wer", "test_wer", "test_acc"}


def test_forgetting_the_voice_matches_retraining_and_keeps_the_others(cli, unlearned, asr_model, asr_retrained,
                                                                         forget_voice, capsys):
    out, report, plot = unlearned
    before, after = report["metrics"]["before"], report["metrics"]["after"]
    evaluated = cli("evaluate", out / "model.safetensors",
                    *voice_manifests(forget_voice, "forget", "test", "forget_test"),
                    "--original", asr_model, "--reference", asr_retrained, "--set", f"eval.max_test_drop={OTHERS_BAR}",
                    "--json")
    assert evaluated.code == 0, evaluated.err
    reference, ours = json.loads(evaluated.out)["reference_metrics"], json.loads(evaluated.out)["metrics"]
    # the evidence against retraining, on per-utterance losses and word accuracy
    with capsys.disabled():  # in the test log, whatever they are
        shown = ("forget_test_loss_ks", "forget_test_loss_emd", "privleak", "tow")
        print("\nunlearned voice vs the retrained reference:", {name: ours[name]["value"] for name in shown},
              "KS p", ours["forget_test_loss_ks"]["fields"]["p"])
    expected_tow = 1.0
    for name in ("forget", "test"):  # the sets this evaluate was given (forget_test is not one of ToW's)
        expected_tow *= 1 - abs(ours[f"{name}_acc"]["value"] - reference[f"{name}_acc"]["value"])
    assert ours["tow"]["value"] == pytest.approx(expected_tow, abs=1e-12)
    assert ours["forget_test_loss_ks"]["n"] == 2 * ours["forget_test_acc"]["n"]
    retrain_rise = reference["forget_test_wer"]["value"] - before["forget_test_wer"]["value"]
    unlearn_rise = after["forget_test_wer"]["value"] - before["forget_test_wer"]["value"]
    assert unlearn_rise >= retrain_rise, (unlearn_rise, retrain_rise)
    assert after["test_wer"]["value"] - before["test_wer"]["value"] <= OTHERS_BAR
    # the recipe holds a fifth of the voice's utterances out, and the stop rule (and its reason) reads those
    assert report["task"] == "asr" and report["stop_reason"] == "target" and report["target_reached"]
    assert "forget holdout accuracy" in report["stop_message"]
    # the stop target is the retrained model's word accuracy on the voice's training utterances (it never heard them;
    # without --reference, the original's on the unseen ones: one word under its own on one Intel machine's model,
    # where the run stopped at the first word lost, +0.021 against retraining's +0.042)
    assert report["target_forget_acc"] == report["reference_metrics"]["forget_acc"]["value"]
    assert "reference" in report["target_source"]
    # the trade-off over the run: held-out forget WER and the others' WER at every check, and its PNG
    assert all({"forget_test_wer", "test_wer", "forget_holdout_wer"} <= set(row) for row in report["history"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_merged_checkpoint_decodes_in_plain_torchaudio_with_the_reported_wer(unlearned, forget_voice):
    """Rebuild with torchaudio alone (no orthograd code), decode greedily, score with jiwer."""
    import csv

    import jiwer
    import soundfile as sf
    import torch
    import torchaudio
    from safetensors import safe_open
    from safetensors.torch import load_file

    out, report, _ = unlearned
    path = out / "model.safetensors"
    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
    vocab = json.loads(meta["orthograd.vocab"])
    model = torchaudio.models.wav2vec2_model(**json.loads(meta["orthograd.arch_config"]), aux_num_out=len(vocab))
    model.load_state_dict(load_file(str(path)), strict=True)
    model.eval()
    references, hypotheses = [], []
    with open(forget_voice / "test.csv") as handle:
        for row in csv.DictReader(handle):
            audio, rate = sf.read(str(forget_voice / row["path"]), dtype="float32")
            assert rate == 16_000
            with torch.no_grad():
                logits, _ = model(torch.from_numpy(audio)[None])
            best = torch.unique_consecutive(logits[0].argmax(-1)).tolist()
            hypotheses.append(" ".join("".join(vocab[t] for t in best if t != 0).split()))
            references.append(row["transcript"])
    assert jiwer.wer(references, hypotheses) == pytest.approx(report["metrics"]["after"]["test_wer"]["value"],
                                                              abs=1e-9)


def test_merge_reproduces_the_speech_checkpoint_byte_for_byte(cli, unlearned, asr_model, tmp_path):
    out, _, _ = unlearned
    result = cli("merge", asr_model, out / "adapter", "--out", tmp_path / "merged.safetensors")
    assert result.code == 0, result.err
    assert (tmp_path / "merged.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()


def test_neggrad_plus_runs_on_the_same_inputs(cli, asr_model, forget_voice, tmp_path):
    result = cli("forget", asr_model, *voice_manifests(forget_voice, "forget", "retain", "test", "forget_test"),
                 "--recipe", RECIPE, "--set", "method.name=neggrad_plus", "--require", "!test_kept",  # runs; the
                 "--out", tmp_path / "ngp", "--json", "-q")  # zoo measures what NegGrad+ costs the other voices
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["method"] == "neggrad_plus"
    assert report["metrics"]["after"]["forget_wer"]["value"] > report["metrics"]["before"]["forget_wer"]["value"]


def test_classification_only_methods_are_refused_for_speech(cli, asr_model, forget_voice, tmp_path):
    result = cli("forget", asr_model, *voice_manifests(forget_voice, "forget", "retain"), "--recipe", RECIPE,
                 "--set", "method.name=random_label", "--out", tmp_path / "x")
    assert result.code == 2 and "classification" in result.err and not (tmp_path / "x").exists()


def test_demo_asr_runs_on_the_cached_corpus_and_model(cli, asr_model, speech_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("ORTHOGRAD_CACHE", str(speech_cache))
    result = cli("demo", "asr", "--out", tmp_path / "demo", "--json", "-q")
    assert result.code == 0, result.err
    run = json.loads(result.out)["runs"]["speaker"]
    after = run["metrics"]["after"]
    # stopped once the held-out utterances of the voice were no better than its unseen ones were
    assert run["stop_reason"] == "target" and after["forget_holdout_acc"]["value"] <= run["target_forget_acc"]
    assert after["forget_test_wer"]["value"] > run["metrics"]["before"]["forget_test_wer"]["value"]
    assert (tmp_path / "demo" / "speaker" / "model.safetensors").is_file()


def test_compare_reports_a_method_that_leaves_the_recogniser_at_chance_as_failed(cli, asr_model, forget_voice,
                                                                                  tmp_path):
    """Gradient ascent alone at a large step leaves the CTC model hardly a word right on the other voices: compare
    says so (not_met, not_at_chance), passes no method, and exits 5 with its outputs written."""
    out = tmp_path / "compare"
    result = cli("compare", asr_model, *voice_manifests(forget_voice, "forget", "retain", "test", "forget_test"),
                 "--recipe", RECIPE, "--methods", "neggrad", "--set", "method.lr=0.5", "--set", "method.max_steps=20",
                 "--set", "method.stop.check_every=20", "--out", out, "--json", "-q")
    assert result.code == 5, result.err
    report = json.loads(result.out)
    run = report["runs"]["neggrad"][0]
    assert run["status"] == "not_met" and run["metrics"]["test_wer"]["value"] >= 0.95
    failed = [r for r in run["verdict"]["requirements"] if not r["passed"]]
    assert any(r["requirement"] == "not_at_chance" and "WER" in r["detail"] for r in failed), failed
    assert report["passing_methods"] == [] and (out / "neggrad" / "seed0" / "README.md").is_file()
