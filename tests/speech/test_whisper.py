"""Whisper folders end to end: the demo's tiny Whisper (trained on the espeak corpus in the fixture) is
evaluated against Whisper's own `generate`, forgets a voice as `orthograd demo asr --model whisper`, and
the output folder loads with from_pretrained; per-sample hook gradients against a per-utterance loop; an
untrained Whisper is at chance; long recordings and transcripts, folders without their processor files and a
bare weights file are refused.

The reference for forgetting is a Whisper retrained without the voice, measured once by
benchmarks/whisper_speaker_forget.py (CI trains one Whisper, not two): on 2026-11-28 its WER on the voice's
12 unseen utterances (48 words) was 0.167 against the original's 0.021, 7 more word errors: RETRAINED_RISE.

The issue's bar: a rise of at least RETRAINED_RISE with the other voices' WER rising by at most 0.10. The
recipe puts its adapters on the encoder's two convolutions (the front end, where a voice differs from the
others), ascends SimNPO's forget loss and stops at forget accuracy 0.7 on held-out training utterances; over
three trained Whispers and three unlearning seeds it met the bar 9 times in 9, the others rising by +0.016 to
+0.047 (benchmarks/README.md, "Recipe sweep"). This test's own case (the seed-0 Whisper, unlearning seed 0) on
this AMD machine, 2026-11-28: default kernels +0.354, others +0.023 (one thread) and +0.024 (two); the fixture
trained and unlearned with AVX2 kernels (`ATEN_CPU_CAPABILITY=avx2`, as an Intel machine may pick): +0.167,
others +0.023, on one thread and two.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from tests.conftest import run_cli
from tests.hf_models import hf_whisper_transcripts

RETRAINED_RISE = 7 / 48  # 0.1458
OTHERS_RISE_LIMIT = 0.10
CONVOLUTIONS = ["model.encoder.conv1", "model.encoder.conv2"]  # the recipe's LoRA targets: Conv1d, stride 1 and 2


@pytest.fixture(scope="module")
def whisper_demo(whisper_folder, speech_cache, tmp_path_factory):
    """`orthograd demo asr --model whisper` on the cached corpus and fixture model: (out folder, its report)."""
    out = tmp_path_factory.mktemp("whisper_demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORTHOGRAD_CACHE", str(speech_cache))
        result = run_cli("demo", "asr", "--model", "whisper", "--out", out, "--json", "--quiet")
    # The recipe keeps the other voices within this test's bar (OTHERS_RISE_LIMIT), not always within test_kept's
    # default 0.03: +0.023 with AVX2 kernels, +0.049 with AVX-512 ones (2026-12-03). Then the demo says so (exit 5,
    # test_kept its only unmet requirement) and writes its outputs; the tests below hold it to their own bar.
    assert result.code in (0, 5), result.err
    report = json.loads(result.out)
    unmet = [row["requirement"] for row in report["runs"]["speaker"]["verdict"]["requirements"] if not row["passed"]]
    assert unmet == ([] if result.code == 0 else ["test_kept"]), (result.code, unmet)
    assert report["checkpoint"] == str(whisper_folder)
    return out / "speaker", report["runs"]["speaker"]


@pytest.mark.slow
def test_evaluate_gives_the_wer_of_whispers_own_generate(cli, whisper_folder, speech_corpus):
    import jiwer

    result = cli("evaluate", whisper_folder, "--test", speech_corpus / "test.csv", "--json", "--quiet")
    assert result.code == 0, result.err
    wer = json.loads(result.out)["metrics"]["test_wer"]["value"]
    assert wer <= 0.25, "the fixture Whisper should have learned the corpus"
    references, hypotheses = hf_whisper_transcripts(whisper_folder, speech_corpus / "test.csv", batch_size=16)
    assert abs(wer - jiwer.wer(references, hypotheses)) <= 1e-9


@pytest.mark.slow
def test_forgetting_a_voice_goes_as_far_as_retraining_and_the_others_keep_their_wer(whisper_demo):
    _, run = whisper_demo
    before, after = run["metrics"]["before"], run["metrics"]["after"]
    assert run["task"] == "asr_seq2seq" and run["steps"] > 0
    rise = after["forget_test_wer"]["value"] - before["forget_test_wer"]["value"]
    others_rise = after["test_wer"]["value"] - before["test_wer"]["value"]
    assert rise >= RETRAINED_RISE - 1e-9, (rise, RETRAINED_RISE)
    assert others_rise <= OTHERS_RISE_LIMIT, others_rise


@pytest.mark.slow
def test_the_output_folder_is_a_whisper_folder_with_the_reported_wer(cli, whisper_demo, whisper_folder, forget_voice,
                                                                      tmp_path):
    import jiwer
    import transformers
    from peft import PeftModel
    from safetensors.torch import load_file

    out, run = whisper_demo
    for name in ("config.json", "generation_config.json", "preprocessor_config.json", "tokenizer_config.json",
                 "vocab.json", "merges.txt"):
        assert (out / name).read_bytes() == (whisper_folder / name).read_bytes(), name
    written = load_file(str(out / "model.safetensors"))
    assert set(written) == set(load_file(str(whisper_folder / "model.safetensors")))
    assert "proj_out.weight" not in written  # tied to the token embedding, as save_pretrained writes it
    model = transformers.WhisperForConditionalGeneration.from_pretrained(str(out))
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    # decoded by Whisper's own generate with the folder's processor: the WER the report gives
    references, hypotheses = hf_whisper_transcripts(out, forget_voice / "test.csv", batch_size=16)
    assert abs(jiwer.wer(references, hypotheses) - run["metrics"]["after"]["test_wer"]["value"]) <= 1e-9
    # the adapter: the recipe's targets, the encoder's two convolutions
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    base = transformers.WhisperForConditionalGeneration.from_pretrained(str(whisper_folder))
    # peft reads a string as a whole-name pattern (re.fullmatch): exactly the two, no other `*.conv1`
    assert sorted(n for n, _ in base.named_modules() if re.fullmatch(adapter["target_modules"], n)) == CONVOLUTIONS
    merged = PeftModel.from_pretrained(base, str(out / "adapter")).merge_and_unload().state_dict()
    assert max(float((merged[k] - v).abs().max()) for k, v in written.items()) <= 1e-6
    # `merge` on the folder writes the same weights again
    assert cli("merge", whisper_folder, out / "adapter", "--out", tmp_path / "merged", "--quiet").code == 0
    assert (tmp_path / "merged" / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()


@pytest.fixture(scope="module")
def untrained_whisper(tmp_path_factory, speech_corpus):
    """A random-init tiny Whisper folder (no training: for gradients and refusals)."""
    from orthograd_cli.jobs.demo_whisper import build_tiny_whisper, corpus_transcripts_and_seconds

    folder = tmp_path_factory.mktemp("whisper") / "untrained"
    transcripts, seconds = corpus_transcripts_and_seconds(speech_corpus / "train.csv")
    build_tiny_whisper(folder, transcripts, seconds)
    return folder


def lora_whisper(folder, speech_corpus, dtype, targets=None):
    """(model with LoRA on `targets` (default: the model source's), its perturbed adapter weights, 5 training
    utterances of several lengths)."""
    from orthograd_cli.loading import load_set
    from orthograd_cli.models.checkpoint import read_checkpoint
    from orthograd_cli.models.lora import wrap_with_lora
    from orthograd_cli.models.registry import load_model, resolve_model_info
    from orthograd_cli.recipe import Recipe

    checkpoint = read_checkpoint(folder)
    info = resolve_model_info(checkpoint)
    utterances = load_set(speech_corpus / "train.csv", info, Recipe()).subset(torch.tensor([0, 61, 130, 200, 333]))
    model = load_model(checkpoint, info)
    model = wrap_with_lora(model, 4, 8, targets or info.source.default_lora_targets(model)).to(dtype).eval()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for p in params.values():
            p.add_(0.05 * torch.randn_like(p))
    return model, params, utterances


@pytest.mark.parametrize("targets, adapted", [(None, 24), (CONVOLUTIONS, 2)], ids=["attention", "convolutions"])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_hooks_match_the_per_utterance_loop_on_padded_batches(untrained_whisper, speech_corpus, dtype, tolerance,
                                                              targets, adapted):
    from orthograd_cli.gradients.per_sample import per_sample_grads
    from orthograd_cli.tasks import asr_seq2seq

    model, params, utterances = lora_whisper(untrained_whisper, speech_corpus, dtype, targets)
    assert len(params) == 2 * adapted  # (lora_A, lora_B) × the 24 attention projections or the 2 convolutions
    (features, decoder_ids), targets = utterances.batch(torch.arange(len(utterances)))
    assert len(set(targets[2].tolist())) > 1, "the batch must have transcripts of several lengths (padding)"
    got, _ = per_sample_grads(model, params, (features.to(dtype), decoder_ids), targets, asr_seq2seq.mean_loss,
                              "hooks")
    for i in range(len(utterances)):  # each utterance alone, unpadded
        (one_features, one_ids), one_targets = utterances.batch(torch.tensor([i]))
        loss = asr_seq2seq.mean_loss(model(one_features.to(dtype), one_ids), one_targets)
        for name, grad in zip(params, torch.autograd.grad(loss, list(params.values()))):
            error = float((got[name][i] - grad).norm() / grad.norm())
            assert error <= tolerance, f"{name}, utterance {i}: relative error {error:.2e}"


def test_ghost_products_on_the_convolution_adapters_equal_the_explicit_gram(untrained_whisper, speech_corpus):
    """The `gram` backend's K = G Gᵀ and G·g_u from each layer's patches and output gradients equal the products
    of the explicit per-sample rows (hooks, checked against the loop above) on Conv1d adapters, in float64."""
    from orthograd_cli.gradients.ghost import ghost_gram, supports
    from orthograd_cli.gradients.per_sample import batch_grad, per_sample_grads
    from orthograd_cli.tasks import asr_seq2seq

    model, params, utterances = lora_whisper(untrained_whisper, speech_corpus, torch.float64, CONVOLUTIONS)
    assert supports(model, params)
    (features, decoder_ids), targets = utterances.batch(torch.arange(len(utterances)))
    inputs = (features.double(), decoder_ids)
    g_u, _ = batch_grad(model, params, (features[:2].double(), decoder_ids[:2]), tuple(t[:2] for t in targets),
                        asr_seq2seq.mean_loss)
    rows, _ = per_sample_grads(model, params, inputs, targets, asr_seq2seq.mean_loss, "hooks")
    gram, along, _, _ = ghost_gram(model, params, inputs, targets, asr_seq2seq.mean_loss, g_u)
    G = torch.cat([rows[n].reshape(len(utterances), -1) for n in params], dim=1)
    flat_g_u = torch.cat([g_u[n].reshape(-1) for n in params])
    assert float((gram - G @ G.T).norm() / (G @ G.T).norm()) <= 1e-9
    assert float((along - G @ flat_g_u).norm() / (G @ flat_g_u).norm()) <= 1e-9


@pytest.mark.parametrize("form", ["simnpo", "simnpo_token"])
def test_simnpo_ascends_the_published_loss(untrained_whisper, speech_corpus, form):
    """SimNPO (γ = 0, Fan et al. 2024): L = mean over utterances of (2/β)·softplus(−β·ℓ̄), ℓ̄ = −log π(y|x)/|y| the
    utterance's length-normalised NLL. The per-token variant: the mean over its tokens of (2/β)·softplus(−β·ℓₜ).
    OrthoGrad's g_u on a padded batch is −∇L computed utterance by utterance, unpadded, in float64."""
    import torch.nn.functional as F

    from orthograd_cli.gradients.per_sample import batch_grad
    from orthograd_cli.methods.orthograd import forget_loss_fn
    from orthograd_cli.recipe import MethodSpec
    from orthograd_cli.tasks import asr_seq2seq

    beta = 0.5  # an untrained model's token losses are about log(vocabulary) ≈ 5.7
    model, params, utterances = lora_whisper(untrained_whisper, speech_corpus, torch.float64)
    (features, decoder_ids), targets = utterances.batch(torch.arange(len(utterances)))
    spec = MethodSpec.model_validate({"orthograd": {"forget_loss": form, "simnpo_beta": beta}})
    got, _ = batch_grad(model, params, (features.double(), decoder_ids), targets,
                        forget_loss_fn(spec, asr_seq2seq.mean_loss))
    published = 0
    for i in range(len(utterances)):
        (one_features, one_ids), (labels, first, ends) = utterances.batch(torch.tensor([i]))
        logits = model(one_features.double(), one_ids)[0, first[0]:ends[0]]
        token_losses = F.cross_entropy(logits, labels[0, first[0]:ends[0]], reduction="none")
        if form == "simnpo":  # log π(y|x) = Σ log p(yₜ), over |y| tokens
            utterance = 2 / beta * F.softplus(-beta * token_losses.sum() / len(token_losses))
        else:
            utterance = (2 / beta * F.softplus(-beta * token_losses)).mean()
        published = published + utterance / len(utterances)
    for name, reference in zip(params, torch.autograd.grad(published, list(params.values()))):
        error = float((got[name] + reference).norm() / reference.norm())
        assert error <= 1e-9, f"{name}: relative error {error:.2e}"


def write_manifest(path, rows):
    """A speech manifest of `rows` (paths absolute or relative to the manifest's folder)."""
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "transcript", "speaker"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def test_recordings_longer_than_the_window_are_refused(cli, untrained_whisper, speech_corpus, tmp_path):
    import csv

    import numpy as np
    import soundfile as sf

    rows = list(csv.DictReader(open(speech_corpus / "test.csv")))[:3]
    first = sf.read(str(speech_corpus / rows[0]["path"]), dtype="float32")[0]
    sf.write(str(tmp_path / "long.wav"), np.concatenate([first, np.zeros(16_000 * 3, "float32")]), 16_000)
    write_manifest(tmp_path / "test.csv", [{**row, "path": speech_corpus / row["path"]} for row in rows[1:]]
                   + [{**rows[0], "path": "long.wav"}])
    result = cli("evaluate", untrained_whisper, "--test", tmp_path / "test.csv", "--quiet")
    assert result.code != 0 and "Traceback" not in result.err
    assert "row 4" in result.err and "long.wav" in result.err and "3 s window" in result.err


def test_a_transcript_longer_than_the_decoder_is_refused_before_any_model_work(cli, untrained_whisper,
                                                                              speech_corpus, tmp_path):
    import csv

    rows = list(csv.DictReader(open(speech_corpus / "test.csv")))[:2]
    rows[1]["transcript"] = " ".join(["seven"] * 40)  # 40 tokens; the tiny decoder takes 27 after its prompt
    write_manifest(tmp_path / "test.csv", [{**row, "path": speech_corpus / row["path"]} for row in rows])
    result = cli("evaluate", untrained_whisper, "--test", tmp_path / "test.csv", "--quiet")
    assert result.code == 2 and "row 3" in result.err and "40 tokens" in result.err, result.err


@pytest.mark.parametrize("missing, fragment", [
    (("preprocessor_config.json",), "no Whisper feature extractor settings"),
    (("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"), "no tokenizer files"),
])
def test_a_folder_without_its_processor_files_is_a_clear_error(cli, untrained_whisper, speech_corpus, tmp_path,
                                                                missing, fragment):
    import shutil

    folder = tmp_path / "whisper"
    shutil.copytree(untrained_whisper, folder)
    for name in missing:
        (folder / name).unlink()
    result = cli("evaluate", folder, "--test", speech_corpus / "test.csv", "--quiet")
    assert result.code != 0 and "Traceback" not in result.err, result.err
    assert fragment in result.err and str(folder) in result.err


def test_an_untrained_whisper_is_at_chance_and_nothing_is_written(cli, untrained_whisper, forget_voice, tmp_path):
    result = cli("forget", untrained_whisper, "--forget", forget_voice / "forget.csv", "--retain",
                 forget_voice / "retain.csv", "--test", forget_voice / "test.csv", "--recipe", "whisper_espeak_speaker",
                 "--out", tmp_path / "run", "--quiet")
    assert result.code == 3 and "at chance" in result.err and "preprocessor_config.json" in result.err, result.err
    assert not (tmp_path / "run").exists()


def test_audio_normalisation_is_refused_for_whisper(cli, untrained_whisper, forget_voice, tmp_path):
    result = cli("forget", untrained_whisper, "--forget", forget_voice / "forget.csv", "--retain",
                 forget_voice / "retain.csv", "--recipe", "whisper_espeak_speaker", "--set",
                 "data.audio_normalize=utterance", "--out", tmp_path / "run", "--quiet")
    assert result.code == 2 and "does not apply to Whisper" in result.err, result.err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_weights_file_alone_is_refused_with_the_folder_to_pass(cli, whisper_demo, forget_voice):
    out, _ = whisper_demo
    result = cli("evaluate", out / "model.safetensors", "--test", forget_voice / "test.csv", "--quiet")
    assert result.code != 0 and "Traceback" not in result.err, result.err
    assert "model.safetensors" in result.err and "model folder" in result.err
