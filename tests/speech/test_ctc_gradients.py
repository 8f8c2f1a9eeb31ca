"""Per-sample CTC gradients on real espeak-ng speech: hooks on a padded batch against an
independent per-utterance loop on unpadded audio, in float32 and float64."""

from __future__ import annotations

import pytest
import torch

from orthograd_cli.tasks.asr.data import load_audio_set
from orthograd_cli.data.manifest import read_manifest
from orthograd_cli.gradients.per_sample import per_sample_grads
from orthograd_cli.jobs.demo_asr import speech_info
from orthograd_cli.methods.loop import apply_update
from orthograd_cli.models.lora import wrap_with_lora
from orthograd_cli.models.sources.torchaudio import SOURCE
from orthograd_cli.models.registry import build_model
from orthograd_cli.tasks import asr


@pytest.fixture(scope="module")
def utterances(speech_corpus):
    info = speech_info()
    manifest = read_manifest(speech_corpus / "train.csv", "asr", info)
    every = load_audio_set("train", manifest, info.vocab, info.sample_rate)
    # utterances of different voices and lengths, so the batch really is padded
    return every.subset(torch.tensor([0, 61, 130, 200, 333, 470]))


def lora_model(dtype):
    """An untrained model, LoRA on the attention projections, after two steps so lora_B is non-zero."""
    torch.manual_seed(0)
    model = build_model(speech_info())
    model = wrap_with_lora(model, r=4, alpha=8, targets=SOURCE.default_lora_targets(model)).to(dtype).eval()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    for p in params.values():
        with torch.no_grad():
            p.add_(0.05 * torch.randn_like(p))
    return model, params


def loop_reference(model, params, utterances, dtype):
    """One backward per utterance on its own unpadded waveform: no batching at all."""
    rows = []
    for i in range(len(utterances)):
        wave, tokens = utterances.item(i)
        wave, tokens = wave.to(dtype)[None], tokens[None]
        outputs = model(wave, torch.tensor([wave.shape[1]]))
        loss = asr.mean_loss(outputs, (tokens, torch.tensor([tokens.shape[1]])))
        rows.append(torch.autograd.grad(loss, list(params.values())))
    return {name: torch.stack([row[j] for row in rows]) for j, name in enumerate(params)}


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-3), (torch.float64, 1e-9)])
def test_hooks_on_padded_batch_match_per_utterance_loop(utterances, dtype, tolerance):
    model, params = lora_model(dtype)
    inputs, targets = utterances.batch(torch.arange(len(utterances)))
    inputs = (inputs[0].to(dtype), inputs[1])
    assert int(inputs[1].min()) < inputs[0].shape[1], "the batch must contain padding"
    got, losses = per_sample_grads(model, params, inputs, targets, asr.mean_loss, "hooks")
    expected = loop_reference(model, params, utterances, dtype)
    assert len(params) == 4 * 3 * 2  # q, k, v, out × 3 layers × (lora_A, lora_B)
    for name in params:
        diff = (got[name] - expected[name]).flatten(1).norm(dim=1)
        scale = expected[name].flatten(1).norm(dim=1)
        assert bool((scale > 0).all()), name
        assert float((diff / scale).max()) <= tolerance, f"{name}: relative error {float((diff / scale).max()):.2e}"
    assert losses.shape == (len(utterances),) and bool(torch.isfinite(losses).all())


def test_loop_backend_matches_hooks_and_vmap_is_refused(utterances):
    from orthograd_cli.errors import RecipeError

    model, params = lora_model(torch.float64)
    inputs, targets = utterances.batch(torch.arange(3))
    inputs = (inputs[0].double(), inputs[1])
    hooks, _ = per_sample_grads(model, params, inputs, targets, asr.mean_loss, "hooks")
    loop, _ = per_sample_grads(model, params, inputs, targets, asr.mean_loss, "loop")
    for name in params:
        assert torch.allclose(hooks[name], loop[name], rtol=1e-9, atol=1e-12), name
    with pytest.raises(RecipeError, match="vmap"):
        per_sample_grads(model, params, inputs, targets, asr.mean_loss, "vmap")


def test_one_projected_step_leaves_retain_losses_first_order_unchanged(utterances):
    """g⊥ ⟂ every retain gradient, so a small step along it moves retain losses far less than g_u does."""
    from orthograd_cli.gradients.per_sample import batch_grad
    from orthograd_cli.gradients.projection import project

    model, params = lora_model(torch.float64)
    forget_in, forget_t = utterances.batch(torch.tensor([0, 1]))
    retain_in, retain_t = utterances.batch(torch.tensor([2, 3, 4, 5]))
    forget_in, retain_in = (forget_in[0].double(), forget_in[1]), (retain_in[0].double(), retain_in[1])
    g_u, _ = batch_grad(model, params, forget_in, forget_t, asr.mean_loss)
    rows, before = per_sample_grads(model, params, retain_in, retain_t, asr.mean_loss, "hooks")
    projected, _ = project(g_u, rows, "global")

    def retain_change(direction):
        saved = {n: p.detach().clone() for n, p in params.items()}
        apply_update(params, {n: -d for n, d in direction.items()}, 1e-4, None)
        with torch.no_grad():
            after = asr.per_sample_losses(model(*retain_in), retain_t)
        for n, p in params.items():
            p.data.copy_(saved[n])
        return float((after - before).abs().max())

    assert retain_change(projected) <= 0.01 * retain_change(g_u)


def test_model_is_padding_invariant(utterances):
    """layer_norm front end + attention mask: an utterance decodes the same alone or padded in a batch."""
    torch.manual_seed(0)
    model = build_model(speech_info()).eval()
    inputs, _ = utterances.batch(torch.arange(len(utterances)))
    with torch.no_grad():
        batched, lengths = model(*inputs)
        for i in range(len(utterances)):
            wave, _ = utterances.item(i)
            alone, alone_length = model(wave[None], torch.tensor([len(wave)]))
            assert int(alone_length) == int(lengths[i])
            assert torch.allclose(batched[i, :lengths[i]], alone[0], atol=1e-4)


def test_greedy_decode_merges_repeats_and_drops_blanks():
    vocab = ["<blank>", " ", "a", "b"]
    frames = [2, 2, 0, 2, 1, 1, 3, 0, 3, 3, 0]  # "aa" (blank between), space, "bb"
    logits = torch.nn.functional.one_hot(torch.tensor(frames), 4).float()[None]
    assert asr.greedy_decode(logits, torch.tensor([len(frames)]), vocab) == ["aa bb"]
    assert asr.greedy_decode(logits, torch.tensor([4]), vocab) == ["aa"]
    assert asr.word_error_rate(["one two three"], ["one too three"]) == pytest.approx(1 / 3)
    assert asr.word_accuracy(1.4) == 0.0


def test_gram_backend_ghost_products_match_hooks_rows_on_padded_speech(utterances):
    """Sequence Linear layers: ⟨g_i, g_j⟩ from ghost products over time steps, padding included."""
    from orthograd_cli.gradients.ghost import ghost_gram

    model, params = lora_model(torch.float64)
    inputs, targets = utterances.batch(torch.arange(len(utterances)))
    inputs = (inputs[0].double(), inputs[1])
    rows, _ = per_sample_grads(model, params, inputs, targets, asr.mean_loss, "hooks")
    unlearn = {n: torch.randn_like(p) for n, p in params.items()}
    gram, along, _, weighted_sum = ghost_gram(model, params, inputs, targets, asr.mean_loss, unlearn)
    G = torch.cat([rows[n].reshape(len(utterances), -1) for n in params], dim=1)
    assert torch.allclose(gram, G @ G.T, rtol=1e-9, atol=1e-12 * float((G @ G.T).abs().max()))
    assert torch.allclose(along, G @ torch.cat([unlearn[n].reshape(-1) for n in params]), rtol=1e-9, atol=1e-14)
    weights = torch.linspace(-1, 1, len(utterances), dtype=torch.float64)
    combined = weighted_sum(weights)
    for name in params:
        assert torch.allclose(combined[name], torch.einsum("k,k...->...", weights, rows[name]), rtol=1e-9,
                              atol=1e-14), name


@pytest.mark.parametrize("arch, width", [("wav2vec2_base", 768), ("hubert_base", 768), ("wav2vec2_large", 1024)])
def test_torchaudio_builders_get_a_ctc_head_sized_by_the_vocabulary(arch, width):
    """Built on the meta device (no memory): the registry hands the vocabulary size to `aux_num_out`."""
    from orthograd_cli.models.registry import ModelInfo

    vocab = ["<blank>", " "] + list("abcdefghijklmnopqrstuvwxyz'")
    with torch.device("meta"):
        model = build_model(ModelInfo(arch=arch, num_classes=len(vocab), task="asr", vocab=vocab, sample_rate=16000))
    assert tuple(model.state_dict()["aux.weight"].shape) == (len(vocab), width)
    targets = SOURCE.default_lora_targets(model)
    assert targets and all(t.rsplit(".", 1)[1] in ("q_proj", "k_proj", "v_proj", "out_proj") for t in targets)


def test_word_accuracy_moves_in_steps_of_one_reference_word(utterances, speech_corpus):
    """The smallest fall a damage limit can see on a speech set: one of its words, counted here from the CSV."""
    import csv

    from orthograd_cli.tasks import get_task

    with open(speech_corpus / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    words = sum(len(rows[i]["transcript"].split()) for i in (0, 61, 130, 200, 333, 470))
    assert words > len(utterances)  # several words per utterance: not one step per utterance
    assert get_task("asr").accuracy_unit(utterances) == pytest.approx(1 / words)
    assert get_task("asr_seq2seq").accuracy_unit(utterances) == pytest.approx(1 / words)
    assert get_task("classification").accuracy_unit(utterances) == pytest.approx(1 / len(utterances))
