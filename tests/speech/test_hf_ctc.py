"""Hugging Face CTC model folders: the tool's WER against an independent decode with the folder's own
processor, the normalisation a checkpoint was trained with, a forget run that writes a model folder back,
and per-sample LoRA gradients on padded batches with attention masks."""

from __future__ import annotations

import json

import pytest
import torch

from tests.hf_models import hf_ctc_transcripts, tiny_wav2vec2


@pytest.mark.slow
def test_evaluate_gives_the_wer_of_an_independent_decode(cli, hf_ctc_folder, speech_corpus):
    import jiwer

    result = cli("evaluate", hf_ctc_folder, "--test", speech_corpus / "test.csv", "--set", "eval.batch_size=8",
                 "--json", "--quiet")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    references, hypotheses = hf_ctc_transcripts(hf_ctc_folder, speech_corpus / "test.csv", batch_size=8)
    expected = jiwer.wer(references, hypotheses)
    assert abs(report["metrics"]["test_wer"]["value"] - expected) <= 1e-9
    assert expected <= 0.35, "the fixture model should have learned the corpus"
    assert report["warnings"] == []


def torchaudio_copy(folder, target):
    """The HF model converted to the tool's torchaudio format with the documented metadata, as a user who
    trained elsewhere would do it, and without saying how its waveforms were normalised."""
    import transformers
    from torchaudio.models.wav2vec2.utils import import_huggingface as convert

    from orthograd_cli.models.checkpoint import read_checkpoint, save_checkpoint

    hf_model = transformers.AutoModelForCTC.from_pretrained(str(folder)).eval()
    model = convert.import_huggingface_model(hf_model)
    meta = read_checkpoint(folder).metadata
    save_checkpoint(model.state_dict(), target, {
        "orthograd.arch": "wav2vec2_model", "orthograd.task": "asr", "orthograd.vocab": meta["orthograd.vocab"],
        "orthograd.sample_rate": "16000",
        "orthograd.arch_config": json.dumps(convert._get_config(hf_model.config))})
    return target


@pytest.mark.slow
def test_a_model_trained_on_normalised_audio_needs_the_key(cli, hf_ctc_folder, forget_voice, tmp_path):
    """Evaluated on raw waveforms the converted model is at chance: forget refuses with the cause and writes
    nothing; with data.audio_normalize=utterance its WER is the HF folder's, and the output records the key."""
    import jiwer

    model = torchaudio_copy(hf_ctc_folder, tmp_path / "converted.safetensors")
    args = ["forget", model, "--forget", forget_voice / "forget.csv", "--retain", forget_voice / "retain.csv",
            "--test", forget_voice / "test.csv", "--recipe", "wav2vec2_model_espeak_speaker", "--set",
            "method.max_steps=2", "--require", "!target_reached", "--out", tmp_path / "run", "--quiet", "--json"]
    refused = cli(*args)
    assert refused.code == 3 and "at chance" in refused.err and "data.audio_normalize" in refused.err
    assert not (tmp_path / "run").exists()
    unseen = forget_voice / "forget_test.csv"  # 12 utterances, one at a time on both sides: no padding at all
    evaluated = cli("evaluate", model, "--test", unseen, "--set", "data.audio_normalize=utterance",
                    "--set", "eval.batch_size=1", "--json", "--quiet")
    assert evaluated.code == 0, evaluated.err
    references, hypotheses = hf_ctc_transcripts(hf_ctc_folder, unseen, batch_size=1)
    assert abs(json.loads(evaluated.out)["metrics"]["test_wer"]["value"] - jiwer.wer(references, hypotheses)) <= 1e-9
    ran = cli(*args, "--set", "data.audio_normalize=utterance")
    assert ran.code == 0, ran.err
    again = cli("evaluate", tmp_path / "run/model.safetensors", "--test", forget_voice / "test.csv", "--json", "--quiet")
    assert again.code == 0, again.err  # the recorded key is used: same WER as the report's, no key given
    after = json.loads(ran.out)["metrics"]["after"]["test_wer"]["value"]
    assert json.loads(again.out)["metrics"]["test_wer"]["value"] == after


@pytest.mark.slow
def test_forget_on_a_folder_writes_a_model_folder(cli, hf_ctc_folder, forget_voice, tmp_path):
    import jiwer
    import transformers
    from peft import PeftModel
    from safetensors.torch import load_file

    out = tmp_path / "run"
    result = cli("forget", hf_ctc_folder, "--forget", forget_voice / "forget.csv", "--retain",
                 forget_voice / "retain.csv", "--test", forget_voice / "test.csv", "--forget-test",
                 forget_voice / "forget_test.csv", "--recipe", "wav2vec2_hf_espeak_speaker", "--set",
                 "method.max_steps=20", "--require", "!target_reached", "--out", out, "--quiet", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    before, after = report["metrics"]["before"], report["metrics"]["after"]
    # 20 steps on a model trained for 20 is no promise about the voice's unseen utterances (with SimNPO's loss their
    # WER moved 0.208 -> 0.188 in one CI run); the utterances it ascended on must be worse recognised
    assert after["forget_wer"]["value"] > before["forget_wer"]["value"]
    for name in ("config.json", "preprocessor_config.json", "vocab.json", "tokenizer_config.json"):
        assert (out / name).read_bytes() == (hf_ctc_folder / name).read_bytes(), name
    # the folder decodes, with the folder's own processor, to the WER the report gives
    references, hypotheses = hf_ctc_transcripts(out, forget_voice / "test.csv", batch_size=32)
    assert abs(jiwer.wer(references, hypotheses) - after["test_wer"]["value"]) <= 1e-9
    # the adapter is a peft adapter for the original model class: merged, it gives the written weights
    base = transformers.AutoModelForCTC.from_pretrained(str(hf_ctc_folder))
    merged = PeftModel.from_pretrained(base, str(out / "adapter")).merge_and_unload().state_dict()
    written = load_file(str(out / "model.safetensors"))
    assert set(written) == set(load_file(str(hf_ctc_folder / "model.safetensors")))
    assert max(float((merged[k] - v).abs().max()) for k, v in written.items()) <= 1e-6
    # and `merge` on the folder writes the same folder again, byte for byte
    merged_dir = tmp_path / "merged"
    assert cli("merge", hf_ctc_folder, out / "adapter", "--out", merged_dir, "--quiet").code == 0
    assert (merged_dir / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    assert (merged_dir / "vocab.json").read_bytes() == (hf_ctc_folder / "vocab.json").read_bytes()


@pytest.mark.parametrize("model_class", ["Wav2Vec2ForCTC", "HubertForCTC"])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_hooks_match_the_per_utterance_loop_with_padding_and_attention_masks(speech_corpus, tmp_path, model_class,
                                                                              dtype, tolerance):
    from orthograd_cli.data.speech import vocabulary
    from orthograd_cli.gradients.per_sample import per_sample_grads
    from orthograd_cli.loading import load_set
    from orthograd_cli.models.checkpoint import read_checkpoint
    from orthograd_cli.models.lora import wrap_with_lora
    from orthograd_cli.models.registry import load_model, resolve_model_info
    from orthograd_cli.recipe import Recipe, with_checkpoint_preprocessing
    from orthograd_cli.tasks import asr

    tiny_wav2vec2(tmp_path / "m", vocabulary(), model_class=model_class)
    checkpoint = read_checkpoint(tmp_path / "m")
    info = resolve_model_info(checkpoint)
    recipe = with_checkpoint_preprocessing(Recipe(), checkpoint.meta_json("data"))
    utterances = load_set(speech_corpus / "train.csv", info, recipe).subset(torch.tensor([0, 61, 130, 200, 333]))
    model = load_model(checkpoint, info)
    model = wrap_with_lora(model, 4, 8, info.source.default_lora_targets(model)).to(dtype).eval()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for p in params.values():
            p.add_(0.05 * torch.randn_like(p))
    inputs, targets = utterances.batch(torch.arange(len(utterances)))
    inputs = (inputs[0].to(dtype), inputs[1])
    assert int(inputs[1].min()) < inputs[0].shape[1], "the batch must contain padding"
    got, _ = per_sample_grads(model, params, inputs, targets, asr.mean_loss, "hooks")
    assert len(params) == 2 * 4 * 2  # q, k, v, out × 2 layers × (lora_A, lora_B)
    for i in range(len(utterances)):  # each utterance alone, unpadded, no mask needed
        wave, tokens = utterances.item(i)
        loss = asr.mean_loss(model(wave.to(dtype)[None], torch.tensor([len(wave)])),
                             (tokens[None], torch.tensor([len(tokens)])))
        for name, grad in zip(params, torch.autograd.grad(loss, list(params.values()))):
            error = float((got[name][i] - grad).norm() / grad.norm())
            assert error <= tolerance, f"{name}, utterance {i}: relative error {error:.2e}"


@pytest.mark.parametrize("model_class", ["Wav2Vec2ForCTC", "HubertForCTC"])
def test_a_dry_run_plans_a_folder_whose_model_masks_padding(cli, forget_voice, tmp_path, model_class):
    """feat_extract_norm "layer" models take an attention mask; the plan's probe on the meta device has no values
    for transformers to read from one (it exited 1 with "unexpected RuntimeError" on the zoo's Hubert)."""
    from orthograd_cli.data.speech import vocabulary

    tiny_wav2vec2(tmp_path / "m", vocabulary(), model_class=model_class)
    assert json.loads((tmp_path / "m/config.json").read_text())["feat_extract_norm"] == "layer"
    result = cli("forget", tmp_path / "m", "--forget", forget_voice / "forget.csv", "--retain",
                 forget_voice / "retain.csv", "--recipe", "wav2vec2_hf_espeak_speaker", "--tune", "--out",
                 tmp_path / "run", "--dry-run", "--json")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert plan["memory"]["estimate_mib"] > 0 and plan["tune"]["retain_val"] > 0
    assert not (tmp_path / "run").exists()
