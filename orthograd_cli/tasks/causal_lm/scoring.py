"""Scoring a text set: teacher-forced losses and token log-probs (one batched pass), greedy completions of the
prompts (transformers' `generate`, left-padded batches), ROUGE-L recall and exact match against the references,
and the membership attacks' per-sample statistics (see __init__.py)."""

from __future__ import annotations

import zlib


def references(text_set) -> list[str]:
    """What each completion is scored against: the manifest's completion; for a text row, the text after the half
    its prompt takes (decoded from its tokens)."""
    from orthograd_cli.tasks.causal_lm.tokens import decode

    decoder = text_set.decoder
    out = []
    for i, sample in enumerate(text_set.manifest.samples):
        example = sample.target
        if example.whole_text:
            ids, _, split = text_set.item(i)
            out.append(decode(decoder.folder, [ids[split:].tolist()])[0])
        else:
            out.append(" ".join(example.completion.split()))
    return out


def generate_greedy(model, prompt_ids, mask, max_new_tokens: int, settings: dict):
    """Greedy continuations (token ids after the prompt) of left-padded prompts."""
    import transformers

    from orthograd_cli.tasks.asr_seq2seq import quiet_transformers

    module = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = transformers.GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                                           eos_token_id=settings["eos"], pad_token_id=settings["pad"])
    with quiet_transformers():
        sequences = transformers.GenerationMixin.generate(module, input_ids=prompt_ids, attention_mask=mask,
                                                          generation_config=config)
    return sequences[:, prompt_ids.shape[1]:]


def completions(model, text_set, batch_size: int, device: str) -> list[str]:
    """Each prompt's greedy completion, as many tokens as its reference has (its own count: the batch does not
    change it), cut at the end token."""
    from orthograd_cli.tasks.causal_lm.tokens import decode

    decoder, eos = text_set.decoder, int(text_set.decoder.settings["eos"])
    out = []
    for start in range(0, len(text_set), batch_size):
        items = [text_set.item(i) for i in range(start, min(start + batch_size, len(text_set)))]
        prompt_ids, mask, lengths = decoder.prompts(items)
        generated = generate_greedy(model, prompt_ids.to(device), mask.to(device), max(lengths),
                                    decoder.settings).cpu()
        rows = []
        for row, length in zip(generated.tolist(), lengths):
            row = row[:length]
            rows.append(row[:row.index(eos)] if eos in row else row)
        out += decode(decoder.folder, rows)
    return out


def rouge_l_recalls(references: list[str], predictions: list[str]) -> list[float]:
    """Each prediction's ROUGE-L recall against its reference (one scorer, with the Porter stemmer, for the set)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(ref, pred)["rougeL"].recall for ref, pred in zip(references, predictions)]


def zlib_bytes(text: str) -> int:
    return len(zlib.compress(text.encode("utf-8")))


def score_set(model, text_set, batch_size: int, device: str):
    import torch

    from orthograd_cli.tasks.base import SetResult
    from orthograd_cli.tasks.causal_lm import MIN_K, TASK, per_sample_mean

    was_training = model.training
    model.eval()
    losses, min_k = [], []
    with torch.inference_mode():
        for inputs, targets in text_set.batches(batch_size, device):
            token_losses, counted = TASK.label_losses(model(*inputs), targets)
            losses.append(per_sample_mean(token_losses, counted).cpu())
            for row, keep in zip(token_losses.cpu(), counted.cpu()):
                # Min-K% Prob: the k % least likely tokens (highest NLL), their mean NLL
                values = row[keep].sort(descending=True).values
                min_k.append(values[:max(1, int(MIN_K * len(values)))].mean())
        predictions = completions(model, text_set, batch_size, device)
    model.train(was_training)
    refs = references(text_set)
    recall = rouge_l_recalls(refs, predictions)
    exact = [float(pred == ref) for ref, pred in zip(refs, predictions)]  # both whitespace-collapsed
    losses = torch.cat(losses) if losses else torch.empty(0)
    n = len(text_set)
    texts = [sample.target.completion for sample in text_set.manifest.samples]
    return SetResult(n=n, accuracy=sum(recall) / max(n, 1), losses=losses,
                     extra={"exact_match": sum(exact) / max(n, 1), "nll": float(losses.double().mean()) if n else 0.0},
                     attacks={"loss": losses.clone(),
                              "zlib": losses / torch.tensor([zlib_bytes(text) for text in texts], dtype=losses.dtype),
                              "min_k": torch.stack(min_k) if min_k else torch.empty(0)})
