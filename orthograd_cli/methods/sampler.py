"""Which samples each unlearning step uses.

Forget batches cycle through a seeded shuffle of the forget set (a fresh shuffle each pass); each
step then draws k retain samples without replacement from the same seeded generator. The ids drawn
go into a chained sha256 (each step's hash covers the previous one and that step's ids), so the report can
prove which retain samples were used. The indices are global: every process of a multi-process run draws the
same ones and takes its own share. `state_dict` is all a resumed run needs to draw what comes next.
"""

from __future__ import annotations

import hashlib

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class UnlearnSampler:
    def __init__(self, forget_size: int, retain_ids: list[str], unlearn_batch_size: int, retain_batch_size: int,
                 seed: int):
        import torch

        self.generator = torch.Generator().manual_seed(seed)
        self.forget_size, self.retain_ids = forget_size, retain_ids
        self.forget_batch_size = min(unlearn_batch_size, forget_size)
        self.retain_batch_size = retain_batch_size
        self._order, self._position = None, forget_size
        self._digest = EMPTY_SHA256

    def next_forget(self):
        import torch

        if self._position + self.forget_batch_size > self.forget_size:
            self._order, self._position = torch.randperm(self.forget_size, generator=self.generator), 0
        index = self._order[self._position:self._position + self.forget_batch_size]
        self._position += self.forget_batch_size
        return index

    def next_retain(self):
        import torch

        index = torch.randperm(len(self.retain_ids), generator=self.generator)[:self.retain_batch_size]
        drawn = "\n".join(self.retain_ids[i] for i in index.tolist())
        self._digest = hashlib.sha256(f"{self._digest}\n{drawn}".encode()).hexdigest()
        return index

    def next_step(self):
        """(forget indices, retain indices) for one step."""
        return self.next_forget(), self.next_retain()

    @property
    def retain_ids_sha256(self) -> str:
        return self._digest

    def state_dict(self) -> dict:
        """Where the sampler stands: its generator, the current forget pass's order and position, the digest."""
        return {"generator": self.generator.get_state(), "order": self._order, "position": self._position,
                "digest": self._digest}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._order, self._position, self._digest = state["order"], state["position"], state["digest"]
