"""Causal LMs without training: per-sample gradients from one padded batch (hooks on the LoRA layers) against
each sample alone through transformers' own forward and a plain cross-entropy (no mask, no padding, the model's
own positions), for a tiny Llama and a tiny GPT-2 (transposed Conv1D layers), right- and left-padded; the gram
backend's products against the explicit rows; and what a text manifest or folder may not be (one line, exit 2
or 3, nothing written)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from orthograd_cli.data.text import build_text_corpus, corpus_texts


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_text_corpus(tmp_path_factory.mktemp("text") / "corpus")


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def untrained_lm(request, corpus, tmp_path_factory):
    """A random-init tiny causal LM folder of each kind, its tokenizer trained on the corpus."""
    from orthograd_cli.jobs.demo_text import build_tiny_llama

    folder = tmp_path_factory.mktemp(request.param) / "untrained"
    build_tiny_llama(folder, corpus_texts(corpus / "train.jsonl"), 0, request.param, hidden_size=32, num_hidden_layers=2, intermediate_size=64)
    return folder


def lora_lm(folder, manifest, dtype):
    """(model with LoRA on the default targets, its perturbed adapter weights, 6 rows of several lengths)."""
    from orthograd_cli.loading import load_set
    from orthograd_cli.models.checkpoint import read_checkpoint
    from orthograd_cli.models.lora import wrap_with_lora
    from orthograd_cli.models.registry import load_model, resolve_model_info
    from orthograd_cli.recipe import Recipe

    checkpoint = read_checkpoint(folder)
    info = resolve_model_info(checkpoint)
    rows = load_set(manifest, info, Recipe()).subset(torch.tensor([0, 3, 9, 17, 30, 41]))
    model = load_model(checkpoint, info)
    model = wrap_with_lora(model, 4, 8, info.source.default_lora_targets(model)).to(dtype).eval()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    torch.manual_seed(0)
    with torch.no_grad():
        for p in params.values():
            p.add_(0.05 * torch.randn_like(p))
    return model, params, rows


def alone(model, params, ids, start):
    """One sample's gradient, its loss computed here: the class's own forward on the unpadded ids (no mask, its
    own positions), cross-entropy of the tokens from `start` on."""
    logits = model(input_ids=ids[None]).logits[0]
    loss = F.cross_entropy(logits[start - 1:-1], ids[start:])
    return dict(zip(params, torch.autograd.grad(loss, list(params.values())))), loss.detach()


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_hooks_match_each_sample_alone_on_padded_batches(untrained_lm, corpus, side, dtype, tolerance):
    from orthograd_cli.gradients.per_sample import per_sample_grads
    from orthograd_cli.tasks import causal_lm

    # prompt/completion rows (loss on the completion) and text rows (loss on every token after the first)
    text_manifest = corpus.parent / "text.jsonl"
    text_manifest.write_text("".join(json.dumps({"text": text}) + "\n"
                                     for text in corpus_texts(corpus / "train.jsonl")[:60]))
    for manifest in (corpus / "train.jsonl", text_manifest):
        model, params, rows = lora_lm(untrained_lm, manifest, dtype)
        assert 4 * len(params) >= 8, "LoRA on several layers"
        rows.decoder.left = side == "left"
        inputs, targets = rows.batch(torch.arange(len(rows)))
        lengths = inputs[1].sum(1)
        assert len(set(lengths.tolist())) > 1, "the batch must have rows of several lengths (padding)"
        assert bool(inputs[1][:, 0 if side == "left" else -1].eq(0).any()), f"padded on the {side}"
        got, losses = per_sample_grads(model, params, inputs, targets, causal_lm.mean_loss, "hooks")
        for i in range(len(rows)):
            ids, start, _ = rows.item(i)
            expected, loss = alone(model, params, ids, start)
            assert abs(float(losses[i]) - float(loss)) <= tolerance * max(1.0, float(loss))
            for name, grad in expected.items():
                error = float((got[name][i] - grad).norm() / grad.norm())
                assert error <= tolerance, f"{manifest.name} {name}, row {i}: relative error {error:.2e}"


def test_ghost_products_equal_the_explicit_gram(untrained_lm, corpus):
    """The `gram` backend's K = G Gᵀ and G·g_u over token positions equal the products of the explicit rows."""
    from orthograd_cli.gradients.ghost import ghost_gram, supports
    from orthograd_cli.gradients.per_sample import batch_grad, per_sample_grads
    from orthograd_cli.tasks import causal_lm

    model, params, rows = lora_lm(untrained_lm, corpus / "train.jsonl", torch.float64)
    assert supports(model, params)
    inputs, targets = rows.batch(torch.arange(len(rows)))
    explicit, _ = per_sample_grads(model, params, inputs, targets, causal_lm.mean_loss, "hooks")
    g_u, _ = batch_grad(model, params, tuple(t[:2] for t in inputs), tuple(t[:2] for t in targets),
                        causal_lm.mean_loss)
    G = torch.cat([explicit[n].reshape(len(rows), -1) for n in params], 1)
    g = torch.cat([g_u[n].reshape(-1) for n in params])
    gram, along, _, _ = ghost_gram(model, params, inputs, targets, causal_lm.mean_loss, g_u)
    assert float((gram - G @ G.T).norm() / (G @ G.T).norm()) <= 1e-9
    assert float((along - G @ g).norm() / (G @ g).norm()) <= 1e-9


def test_scrubs_kl_averages_the_token_kl_over_each_samples_counted_positions(untrained_lm, corpus):
    from orthograd_cli.tasks import causal_lm

    model, _, rows = lora_lm(untrained_lm, corpus / "train.jsonl", torch.float64)
    inputs, targets = rows.batch(torch.arange(len(rows)))
    with torch.no_grad():
        student = model(*inputs)
        teacher = student + torch.randn(student.shape, generator=torch.Generator().manual_seed(1), dtype=student.dtype)
    got = float(causal_lm.TASK.distill_kl(student, teacher, targets, 2.0))
    per_sample = []
    for i in range(len(rows)):  # right-padded: sample i's label j sits at position j
        ids, start, _ = rows.item(i)
        terms = []
        for position in range(start - 1, len(ids) - 1):
            p = torch.softmax(teacher[i, position] / 2.0, -1)
            q = torch.softmax(student[i, position] / 2.0, -1)
            terms.append(float((p * (p.log() - q.log())).sum()))
        per_sample.append(sum(terms) / len(terms))
    assert got == pytest.approx(4.0 * sum(per_sample) / len(per_sample), rel=1e-5)  # × T²
