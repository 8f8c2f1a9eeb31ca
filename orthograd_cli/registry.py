"""One registry type for every kind of plug-in: methods, tasks and model sources.

As lm-evaluation-harness does: an entry is a `"module:attribute"` path, imported the first time it is asked for
(so `orthograd --help` imports no torch), or an object registered at run time (a test's own method). Every
entry is checked against the kind's base type when it is loaded, names are unique, and an unknown name is the
kind's own error with a did-you-mean. It is a mapping (`name in METHODS`, `METHODS[name]`, `METHODS.items()`),
in registration order.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from importlib import import_module
from typing import Generic, TypeVar

from orthograd_cli.errors import OrthogradError, did_you_mean

T = TypeVar("T")


class Registry(MutableMapping, Generic[T]):
    def __init__(self, kind: str, base: type, error: type[OrthogradError], entries: dict[str, str] | None = None):
        self.kind, self.base, self.error = kind, base, error
        self._entries: dict[str, str | T] = {}  # name -> "module:attribute", or the object once loaded
        for name, path in (entries or {}).items():
            self.add(name, path)

    def add(self, name: str, path: str) -> None:
        """A lazy entry: `path` is "module:attribute", imported when the entry is first asked for."""
        if name in self._entries:
            raise ValueError(f"a {self.kind} named '{name}' is registered already")
        self._entries[name] = path

    def register(self, name: str, entry: T) -> T:
        """Add a loaded entry (its name must be new); returns it."""
        if name in self._entries:
            raise ValueError(f"a {self.kind} named '{name}' is registered already")
        self[name] = entry
        return entry

    def get_or_error(self, name: str) -> T:
        """The entry, or the kind's error naming the closest registered name."""
        if name not in self._entries:
            raise self.error(f"unknown {self.kind} '{name}'",
                             did_you_mean(name, self._entries) or f"choose from {', '.join(self._entries)}")
        return self[name]

    def __getitem__(self, name: str) -> T:
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = getattr(import_module(module), attribute)
            self._check(name, entry)
            self._entries[name] = entry
        return entry

    def __setitem__(self, name: str, entry: T) -> None:
        self._check(name, entry)
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:  # without importing the entry
        return name in self._entries

    def _check(self, name: str, entry) -> None:
        if not isinstance(entry, self.base):
            raise TypeError(f"{self.kind} '{name}' is a {type(entry).__name__}, not a {self.base.__name__}")
