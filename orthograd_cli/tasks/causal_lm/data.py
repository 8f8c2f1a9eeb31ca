"""Text as a causal LM sees it: each row's token ids, and which of them its loss covers.

A `prompt,completion` row is the prompt's tokens (with the tokens the tokenizer puts first, e.g. BOS), then the
completion's, tokenized on its own, then the end token; the loss covers the completion and the end token. A
`text` row is the text's tokens and the end token, every one after the first counted. An item is
`(ids, start, split)`: the counted tokens are ids[start:], and scoring generates from ids[:split] (the prompt;
for a text row its first half, MUSE's verbatim-memorisation test).

A batch's inputs are `(input_ids (B, L), attention_mask (B, L))`, its targets `(labels (B, L), counted (B, L))`:
labels are the inputs shifted left by one, padding (right or left, the tokenizer's side) is masked and counted
nowhere. The model places each token by the unmasked tokens before it, so a row's logits, loss and gradient do not
depend on the batch it is in.
"""

from __future__ import annotations

from typing import NamedTuple

from orthograd_cli.data.manifest import Manifest
from orthograd_cli.data.streaming import SampleCache, StreamedSet
from orthograd_cli.errors import ManifestError


class Example(NamedTuple):
    """A manifest row's text: `prompt` is empty for a `text` row, whose `completion` is the whole text."""

    prompt: str
    completion: str
    whole_text: bool


class TextDecoder:
    """One manifest row → (ids, start, split); the token ids are computed once for the whole manifest."""

    def __init__(self, folder: str, settings: dict, items: dict):
        self.folder, self.settings, self.items = folder, settings, items
        self.pad, self.left = int(settings["pad"]), settings["padding_side"] == "left"

    def decode(self, sample):
        import torch

        ids, start, split = self.items[sample.target]
        return torch.tensor(ids, dtype=torch.long), start, split

    def collate(self, items):
        """((input_ids, attention_mask), (labels, counted)), padded on the tokenizer's side."""
        import torch

        width = max(len(ids) for ids, _, _ in items) - 1
        inputs = torch.full((len(items), width), self.pad, dtype=torch.long)
        labels = torch.full_like(inputs, self.pad)
        mask = torch.zeros_like(inputs, dtype=torch.bool)
        counted = torch.zeros_like(mask)
        for row, (ids, start, _) in enumerate(items):
            n = len(ids) - 1
            at = width - n if self.left else 0
            inputs[row, at:at + n], labels[row, at:at + n] = ids[:-1], ids[1:]
            mask[row, at:at + n] = True
            counted[row, at + start - 1:at + n] = True  # label j is token j + 1
        return (inputs, mask.long()), (labels, counted)

    def prompts(self, items):
        """(prompt ids, attention mask), left-padded for generation, and each row's reference token count."""
        import torch

        width = max(split for _, _, split in items)
        ids = torch.full((len(items), width), self.pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, (tokens, _, split) in enumerate(items):
            ids[row, width - split:], mask[row, width - split:] = tokens[:split], 1
        return ids, mask, [len(tokens) - split for tokens, _, split in items]


def tokenized(manifest: Manifest, folder: str, settings: dict) -> dict:
    """{example: (ids, start, split)} for the manifest's rows; rows longer than the model's context are refused
    (named), before any model work."""
    from orthograd_cli.tasks.causal_lm.tokens import encode

    examples = [sample.target for sample in manifest.samples]
    firsts = encode(folder, [e.completion if e.whole_text else e.prompt for e in examples], special=True)
    rests = encode(folder, [e.completion for e in examples if not e.whole_text], special=False)
    eos, context = int(settings["eos"]), int(settings["context"])
    items = {}
    for sample, example in zip(manifest.samples, examples):
        if example.whole_text:
            ids = firsts[example.completion] + [eos]
            start, split = 1, max(1, len(ids) // 2)
        else:
            prompt = firsts[example.prompt]
            if not prompt:
                raise ManifestError(f"{manifest.path} row {sample.row}: the prompt encodes to no tokens",
                                    "give every row a prompt, or use a `text` column")
            ids = prompt + rests[example.completion] + [eos]
            start = split = len(prompt)
        if len(ids) > context:
            raise ManifestError(f"{manifest.path} row {sample.row}: {len(ids)} tokens with the end token, more than "
                                f"the model's context of {context}", "shorten the row or split it into several")
        items[example] = (ids, start, split)
    return items


def load_text_set(name: str, manifest: Manifest, folder: str, settings: dict,
                  cache: SampleCache | None = None) -> StreamedSet:
    # text is tokenized here at once (small beside the model), so decoding needs no worker processes
    return StreamedSet(name, manifest, TextDecoder(folder, settings, tokenized(manifest, folder, settings)), cache, 0)
