"""Manifests, validated before any model work: CSV, or JSON Lines (`.jsonl`, one object per line). The task
says which columns it needs (`path,label` for image classification, `path,transcript,speaker` for speech,
`prompt,completion` or `text` for language models) and parses each row; an `id` column is always allowed.
Tasks that read files name them in `path`; a text task's row is its sample.

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

from orthograd_cli.errors import ManifestError

OPTIONAL = ("id",)


@dataclass(frozen=True)
class Sample:
    id: str
    path: Path | None  # None where the row is the sample (text)
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
    range, transcripts in the vocabulary), or None to check the columns and files only. A `.jsonl` file is read
    as JSON Lines (one object per line, string values), anything else as CSV."""
    from orthograd_cli.tasks import get_task

    task = get_task(task) if isinstance(task, str) else task
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: cannot read manifest (no such file)", "check the path")
    digest = hashlib.sha256()
    columns, records = _json_lines(path, digest) if is_json_lines(path) else _csv_records(path, digest, task)
    task.check_columns(columns, path)
    base = path.parent
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    seen_files: dict[Path, int] = {}
    for line, values in records:
        where = f"{path} row {line}"
        file_path = None
        if task.reads_files:
            if not values["path"]:
                raise ManifestError(f"{where}: empty path")
            file_path = _sample_path(values["path"], base, where, check_files)
        target, group = task.parse_row(values, where, info)
        sample_id = values.get("id") or (values["path"] if task.reads_files else task.default_id(target))
        if sample_id in seen:
            raise ManifestError(f"{where}: duplicate id '{sample_id}' (first at row {seen[sample_id]})",
                                "every sample needs a unique id" if values.get("id") else "list every sample once")
        if file_path is not None and file_path in seen_files:  # the same file spelt another way is one sample
            raise ManifestError(f"{where}: {values['path']} is the same file as row {seen_files[file_path]}",
                                "list every sample once")
        seen[sample_id] = line
        if file_path is not None:
            seen_files[file_path] = line
        samples.append(Sample(id=sample_id, path=file_path, row=line, target=target, group=group))
    if not samples:
        raise ManifestError(f"{path}: empty manifest ({'no rows' if is_json_lines(path) else 'header only'})",
                            "add at least one sample row")
    return Manifest(path=path, samples=samples, sha256=digest.hexdigest())


def is_json_lines(path: Path) -> bool:
    return path.suffix.lower() == ".jsonl"


def _csv_records(path: Path, digest, task):
    """(columns, (line, {column: stripped value}) pairs) of a CSV manifest."""
    reader = csv.DictReader(_hashed_lines(path, digest))
    try:
        columns = [c.strip() for c in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise ManifestError(f"{path} row 1: not a valid CSV header ({exc})", "check quotes and separators") from None
    if not columns:
        raise ManifestError(f"{path}: empty manifest", f"expected a header line: {','.join(task.columns)}[,id]")
    reader.fieldnames = columns

    def records():
        for line, record in _rows(reader, path):
            if None in record:
                raise ManifestError(f"{path} row {line}: more fields than the header has",
                                    "quote values that contain commas")
            yield line, {k: (v or "").strip() for k, v in record.items()}

    return columns, records()


def _json_lines(path: Path, digest):
    """(columns, (line, values) pairs) of a JSON Lines manifest: the columns are the first object's keys, and every
    object must have those keys, with string values (a whole-number id is taken as text). Blank lines are skipped.
    Read whole (text manifests are small beside the files other tasks list)."""
    import json

    rows = []
    for number, text in enumerate(_hashed_lines(path, digest), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path} row {number}: not valid JSON ({exc.msg})",
                                'one JSON object per line, e.g. {"prompt": "...", "completion": "..."}') from None
        if not isinstance(record, dict):
            raise ManifestError(f"{path} row {number}: expected a JSON object, got {type(record).__name__}")
        values = {}
        for key, value in record.items():
            if isinstance(value, int) and not isinstance(value, bool) and key == "id":
                value = str(value)
            if not isinstance(value, str):
                raise ManifestError(f"{path} row {number}: '{key}' is {type(value).__name__}, expected a string",
                                    "write every value as a JSON string")
            values[str(key)] = value
        if rows and set(values) != set(rows[0][1]):
            differ = sorted(set(values) ^ set(rows[0][1]))[0]
            raise ManifestError(f"{path} row {number}: its keys differ from row {rows[0][0]}'s (e.g. '{differ}')",
                                "give every line the same keys")
        rows.append((number, values))
    return (list(rows[0][1]) if rows else []), iter(rows)


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
    forget_files = {s.path for s in forget.samples if s.path is not None}
    both = [s.id for s in other.samples if s.id in forget_ids or (s.path is not None and s.path in forget_files)]
    if both:
        raise ManifestError(f"{other.path}: {len(both)} sample(s) also in the forget set {forget.path}, "
                            f"e.g. ids {both[:3]}", f"remove them from the {role} manifest")


def content_sha256(manifest: Manifest) -> str:
    """sha256 over the sha256 of every file the manifest lists, in manifest order: the data itself, so an image
    changed under the same CSV changes it (the manifest's own sha256 would not)."""
    from orthograd_cli.models.checkpoint import file_sha256

    combined = hashlib.sha256()
    for sample in manifest.samples:
        if sample.path is None:  # a text sample: its content is the row itself
            combined.update(hashlib.sha256(repr(sample.target).encode()).hexdigest().encode() + b"\n")
            continue
        try:
            combined.update(file_sha256(sample.path).encode() + b"\n")
        except OSError as exc:
            raise ManifestError(f"{manifest.path} row {sample.row}: cannot read {sample.path} ({exc.strerror})",
                                "check the file") from None
    return combined.hexdigest()


def listed_paths(path: Path) -> list[Path]:
    """The files a manifest lists, resolved, read without validating anything else (preflight.py: before the
    task and the model are known)."""
    if is_json_lines(path):
        return []  # JSON Lines manifests hold text, not files
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []  # the full read names the problem
    return [(path.parent / row["path"]).resolve() for row in rows if row.get("path")]


def check_files_exist(path: Path) -> None:
    """Every file a manifest lists exists, checked as the full read checks it (same error), before the task and
    the model are known (preflight.py); what this cannot parse, the full read names."""
    if is_json_lines(path):
        return
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            for line, record in _rows(reader, path):
                raw = (record.get("path") or "").strip() if isinstance(record.get("path"), str) else ""
                if raw:
                    _sample_path(raw, path.parent, f"{path} row {line}", check_files=True)
    except (OSError, UnicodeDecodeError, csv.Error):
        return
