"""CSV manifests, validated before any model work. The task says which columns it needs
(`path,label` for image classification, `path,transcript,speaker` for speech) and parses each row;
an `id` column is always allowed.

Errors name the file and the row (the CSV line number, header = line 1). Relative paths resolve
against the manifest's own folder. The file is streamed line by line (and hashed on the way), so large
manifests validate in seconds and in little memory.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orthograd_cli.errors import ManifestError, did_you_mean

OPTIONAL = ("id",)


@dataclass(frozen=True)
class Sample:
    id: str
    path: Path
    row: int
    target: Any  # what the task predicts: a class index, a transcript (lower-case, single spaces)
    group: str = ""  # who the sample belongs to, where the task knows it (speech: the speaker)


@dataclass
class Manifest:
    path: Path
    samples: list[Sample]
    sha256: str

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.samples]

    def where(self, keep) -> "Manifest":
        """The samples for which `keep(sample)` holds (same file and sha256: a view of it)."""
        return Manifest(path=self.path, samples=[s for s in self.samples if keep(s)], sha256=self.sha256)


def read_manifest(path: str | Path, task="classification", info=None, check_files: bool = True) -> Manifest:
    """Every row validated; `task` is a Task or its name, `info` the ModelInfo the rows must fit (labels in
    range, transcripts in the vocabulary), or None to check the columns and files only."""
    from orthograd_cli.tasks import get_task

    task = get_task(task) if isinstance(task, str) else task
    path = Path(path)
    required = task.columns
    if not path.is_file():
        raise ManifestError(f"{path}: cannot read manifest (no such file)", "check the path")
    digest = hashlib.sha256()
    reader = csv.DictReader(_hashed_lines(path, digest))
    try:
        columns = [c.strip() for c in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise ManifestError(f"{path} row 1: not a valid CSV header ({exc})", "check quotes and separators") from None
    if not columns:
        raise ManifestError(f"{path}: empty manifest", f"expected a header line: {','.join(required)}[,id]")
    missing = [c for c in required if c not in columns]
    if missing:
        raise ManifestError(f"{path}: missing column '{missing[0]}' (header: {','.join(columns)})",
                            f"a {task.name} manifest needs the columns {','.join(required)} (+ optional id)")
    extra = [c for c in columns if c not in required and c not in OPTIONAL]
    if extra:
        hint = did_you_mean(extra[0], required + OPTIONAL) or f"allowed: {','.join(required + OPTIONAL)}"
        raise ManifestError(f"{path}: unexpected column '{extra[0]}'", hint)
    reader.fieldnames = columns
    base = path.parent
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    seen_files: dict[Path, int] = {}
    for line, record in _rows(reader, path):
        where = f"{path} row {line}"
        if None in record:
            raise ManifestError(f"{where}: more fields than the header has", "quote values that contain commas")
        values = {k: (v or "").strip() for k, v in record.items()}
        if not values["path"]:
            raise ManifestError(f"{where}: empty path")
        file_path = _sample_path(values["path"], base, where, check_files)
        target, group = task.parse_row(values, where, info)
        sample_id = values.get("id") or values["path"]
        if sample_id in seen:
            raise ManifestError(f"{where}: duplicate id '{sample_id}' (first at row {seen[sample_id]})",
                                "every sample needs a unique id")
        if file_path in seen_files:  # the same file spelt another way (./a.png, a.png, a symlink) is one sample
            raise ManifestError(f"{where}: {values['path']} is the same file as row {seen_files[file_path]}",
                                "list every sample once")
        seen[sample_id], seen_files[file_path] = line, line
        samples.append(Sample(id=sample_id, path=file_path, row=line, target=target, group=group))
    if not samples:
        raise ManifestError(f"{path}: empty manifest (header only)", "add at least one sample row")
    return Manifest(path=path, samples=samples, sha256=digest.hexdigest())


def _rows(reader, path: Path):
    """(line number, record) pairs; a line the CSV reader cannot parse is a ManifestError naming it."""
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # the underlying reader has counted the line it failed on
            raise ManifestError(f"{path} row {reader.reader.line_num}: not a valid CSV line ({exc})",
                                "check quotes and separators on that line") from None
        yield reader.line_num, record


def _sample_path(raw: str, base: Path, where: str, check_files: bool) -> Path:
    """The sample's file, relative paths against the manifest's folder, resolved (symlinks followed)."""
    try:
        file_path = (Path(raw) if Path(raw).is_absolute() else base / raw).resolve()
        if check_files and not file_path.exists():
            raise ManifestError(f"{where}: file not found: {file_path}", "paths are relative to the manifest's folder")
        if check_files and not file_path.is_file():  # a folder, a FIFO, a device such as /dev/zero
            raise ManifestError(f"{where}: {file_path} is not a regular file", "list image or audio files only")
    except OSError as exc:  # a name too long for the file system, a loop of symlinks
        raise ManifestError(f"{where}: unusable path {raw[:80]!r} ({exc.strerror})", "fix the path") from None
    return file_path


def _hashed_lines(path: Path, digest):
    """The file's lines as text, streamed, feeding every byte to `digest` on the way."""
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                digest.update(raw)
                try:
                    text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError:
                    raise ManifestError(f"{path} row {number}: not UTF-8 text",
                                        "save the manifest as a UTF-8 CSV") from None
                # lines ended by a lone CR (classic Mac, some spreadsheet exports) are lines too
                yield from text.replace("\r\n", "\n").replace("\r", "\n").splitlines(keepends=True)
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc.strerror})", "check the path") from None


def check_disjoint(forget: Manifest, other: Manifest, role: str = "retain") -> None:
    """A forgotten sample cannot also be retained (the request would contradict itself) or serve as a test
    sample (the scores would be measured on what was unlearned). Paths are compared resolved."""
    forget_ids = {s.id for s in forget.samples}
    forget_files = {s.path for s in forget.samples}
    both = [s.id for s in other.samples if s.id in forget_ids or s.path in forget_files]
    if both:
        raise ManifestError(f"{other.path}: {len(both)} sample(s) also in the forget set {forget.path}, "
                            f"e.g. ids {both[:3]}", f"remove them from the {role} manifest")


def content_sha256(manifest: Manifest) -> str:
    """sha256 over the sha256 of every file the manifest lists, in manifest order: the data itself, so an image
    changed under the same CSV changes it (the manifest's own sha256 would not)."""
    from orthograd_cli.models.checkpoint import file_sha256

    combined = hashlib.sha256()
    for sample in manifest.samples:
        try:
            combined.update(file_sha256(sample.path).encode() + b"\n")
        except OSError as exc:
            raise ManifestError(f"{manifest.path} row {sample.row}: cannot read {sample.path} ({exc.strerror})",
                                "check the file") from None
    return combined.hexdigest()



def listed_paths(path: Path) -> list[Path]:
    """The files a manifest lists, resolved, read without validating anything else (preflight.py: before the
    task and the model are known)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []  # the full read names the problem
    return [(path.parent / row["path"]).resolve() for row in rows if row.get("path")]


def check_files_exist(path: Path) -> None:
    """Every file a manifest lists exists, checked as the full read checks it (same error), before the task and
    the model are known (preflight.py); what this cannot parse, the full read names."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            for line, record in _rows(reader, path):
                raw = (record.get("path") or "").strip() if isinstance(record.get("path"), str) else ""
                if raw:
                    _sample_path(raw, path.parent, f"{path} row {line}", check_files=True)
    except (OSError, UnicodeDecodeError, csv.Error):
        return
