"""Data sets that decode samples when a batch needs them, so memory is bounded by the batch, the
prefetch and a cache budget, not by the length of the manifest.

A task gives a decoder: `decode(sample)` turns one manifest row into an item (a tensor and its target,
decoded and preprocessed; it runs in DataLoader worker processes, so it is a plain picklable object)
and `collate(items)` stacks or pads items into a batch. `StreamedSet` is what every task's data set is:

- `batch(index, device)`: the samples at `index`, as the unlearning loop draws them (same indices
  and values as a fully decoded set, so same-seed runs stay byte-identical);
- `batches(batch_size, device)`: every sample in order, in batches, decoded by `num_workers` worker
  processes ahead of the model (evaluation);
- `subset(index)`: a view that shares the decoder and the cache.

Decoded items are kept in a cache shared by a set and its views while they fit `cache_bytes` (the
retain and forget sets are read at every step; re-decoding them would be wasteful); past the budget
nothing more is kept, so a set larger than the budget streams.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orthograd_cli.data.manifest import Manifest
from orthograd_cli.errors import ManifestError


@dataclass
class SampleCache:
    """Decoded items by sample path, up to a byte budget (no eviction: a first-come cache, bounded)."""

    budget_bytes: int
    used_bytes: int = 0
    items: dict = field(default_factory=dict)

    def get(self, key):
        return self.items.get(key)

    def offer(self, key, item) -> None:
        size = item_bytes(item)
        if key not in self.items and self.used_bytes + size <= self.budget_bytes:
            self.items[key] = item
            self.used_bytes += size


def item_bytes(item) -> int:
    import torch

    if isinstance(item, torch.Tensor):
        return item.numel() * item.element_size()
    if isinstance(item, (tuple, list)):
        return sum(item_bytes(part) for part in item)
    return 8


def cache_key(sample, manifest_path):
    """A sample's file, or where the row is the sample (text) its manifest and id (ids are unique within one)."""
    return sample.path if sample.path is not None else (str(manifest_path), sample.id)


def to_device(batch, device: str, non_blocking: bool = False):
    """A batch (a tensor or nested tuples of tensors) on `device`."""
    if isinstance(batch, tuple):
        return tuple(to_device(part, device, non_blocking) for part in batch)
    return batch.to(device, non_blocking=non_blocking)


@dataclass
class _Failure:
    """A sample a worker could not decode, carried back whole (DataLoader would flatten our error into a
    traceback text) and raised in the main process."""

    error: Exception


class _PackedSamples:
    """A manifest's samples as one bytes buffer and an offset array, for the worker processes.

    Forked workers share the parent's memory until they write to it, and merely reading a Python object
    writes its reference count: a list of 20,000 sample objects read by 2 workers gets copied into each
    of them, page by page (about 3 KB per row in all, measured). Two flat numpy arrays hold no Python
    objects, so nothing is copied; a sample is unpacked when it is decoded. (Our own objects, pickled
    here in memory: no file is ever unpickled.)"""

    def __init__(self, samples: list):
        import pickle

        import numpy as np

        blobs = [pickle.dumps(sample, protocol=pickle.HIGHEST_PROTOCOL) for sample in samples]
        self.offsets = np.cumsum([0] + [len(blob) for blob in blobs], dtype=np.int64)
        self.buffer = np.frombuffer(b"".join(blobs), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int):
        import pickle

        return pickle.loads(self.buffer[self.offsets[i]:self.offsets[i + 1]].tobytes())


class _Decoded:
    """A map-style torch Dataset over a manifest's samples: item i is decoder.decode(sample i)."""

    def __init__(self, samples: list, decoder, manifest_path):
        self.samples, self.decoder, self.manifest_path = _PackedSamples(samples), decoder, str(manifest_path)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        try:
            return decode(self.decoder, self.samples[i], self.manifest_path)
        except ManifestError as err:
            return _Failure(err)


class _Collate:
    """DataLoader's collate_fn (picklable for worker processes)."""

    def __init__(self, decoder):
        self.decoder = decoder

    def __call__(self, items):
        failures = [item for item in items if isinstance(item, _Failure)]
        return failures[0] if failures else self.decoder.collate(items)


def decode(decoder, sample, manifest_path):
    """decoder.decode(sample), its errors naming the manifest as well as the row."""
    try:
        return decoder.decode(sample)
    except ManifestError as err:
        raise ManifestError(f"{manifest_path} {err}", err.hint) from None


class StreamedSet:
    def __init__(self, name: str, manifest: Manifest, decoder, cache: SampleCache | None = None,
                 num_workers: int = 0):
        self.name, self.manifest, self.decoder = name, manifest, decoder
        self.cache = cache if cache is not None else SampleCache(0)
        self.num_workers = num_workers

    def __len__(self) -> int:
        return len(self.manifest.samples)

    def subset(self, index) -> "StreamedSet":
        picked = [self.manifest.samples[i] for i in index.tolist()]
        manifest = Manifest(path=self.manifest.path, samples=picked, sha256=self.manifest.sha256)
        return StreamedSet(self.name, manifest, self.decoder, self.cache, self.num_workers)

    def item(self, i: int):
        """Sample i decoded (from the cache when it is there)."""
        sample = self.manifest.samples[i]
        key = cache_key(sample, self.manifest.path)
        cached = self.cache.get(key)
        if cached is None:
            cached = decode(self.decoder, sample, self.manifest.path)
            self.cache.offer(key, cached)
        return cached

    def batch(self, index, device: str = "cpu"):
        """The samples at `index` (a tensor of positions) as one batch on `device`."""
        return to_device(self.decoder.collate([self.item(i) for i in index.tolist()]), device)

    def fits_cache(self) -> bool:
        """Whether the whole set, judged by its first sample's size, fits what is left of the cache budget."""
        samples = self.manifest.samples
        missing = sum(self.cache.get(cache_key(s, self.manifest.path)) is None for s in samples)
        return missing == 0 or missing * item_bytes(self.item(0)) <= self.cache.budget_bytes - self.cache.used_bytes

    def batches(self, batch_size: int, device: str = "cpu"):
        """Every sample in order, `batch_size` at a time. A set that fits the cache is decoded here once and
        read from the cache after; a larger one streams: worker processes decode ahead of the caller
        (pinned memory on CUDA) and nothing is kept."""
        import torch

        samples = self.manifest.samples
        if self.num_workers == 0 or self.fits_cache():
            for start in range(0, len(samples), batch_size):
                yield self.batch(torch.arange(start, min(start + batch_size, len(samples))), device)
            return
        cuda = torch.device(device).type == "cuda"
        loader = torch.utils.data.DataLoader(_Decoded(samples, self.decoder, self.manifest.path), batch_size=batch_size,
                                             num_workers=self.num_workers, collate_fn=_Collate(self.decoder),
                                             pin_memory=cuda, prefetch_factor=2)
        import gc

        gc.freeze()  # the workers fork now; their garbage collector would otherwise touch (copy) every object
        try:
            for batch in loader:
                if isinstance(batch, _Failure):
                    raise batch.error
                yield to_device(batch, device, non_blocking=cuda)
        finally:
            gc.unfreeze()
