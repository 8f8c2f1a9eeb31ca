"""CSV manifests, validated before any model work: `path,label[,id]` for image classification,
`path,transcript,speaker[,id]` for speech recognition.

Errors name the file and the row (the CSV line number, header = line 1). Relative paths resolve
against the manifest's own folder. The file is streamed line by line (and hashed on the way), so large
manifests validate in seconds and in little memory.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from orthograd_cli.errors import ManifestError, did_you_mean

REQUIRED = {"classification": ("path", "label"), "asr": ("path", "transcript", "speaker")}
OPTIONAL = ("id",)


@dataclass(frozen=True)
class Sample:
    id: str
    path: Path
    label: int  # -1 for speech
    row: int
    transcript: str = ""  # speech: lower-case, single spaces
    speaker: str = ""


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


def _parse_label(raw: str, where: str, num_classes: int | None, labels: list[str] | None) -> int:
    raw = raw.strip()
    if raw.lstrip("-").isdigit():
        index = int(raw)
        if num_classes is not None and not 0 <= index < num_classes:
            raise ManifestError(f"{where}: label {index} is out of range", f"labels are 0..{num_classes - 1}")
        return index
    if labels is None:
        raise ManifestError(f"{where}: label '{raw}' is not a class index",
                            "use integers, or give class names in model.labels / checkpoint metadata")
    if raw not in labels:
        raise ManifestError(f"{where}: unknown class name '{raw}'", did_you_mean(raw, labels) or
                            f"known classes: {', '.join(labels[:10])}")
    return labels.index(raw)


def _parse_transcript(raw: str, where: str, vocab: list[str] | None) -> str:
    text = " ".join(raw.lower().split())
    if not text:
        raise ManifestError(f"{where}: empty transcript", "every recording needs its transcript")
    if vocab is not None:
        unknown = sorted({c for c in text if c not in vocab})
        if unknown:
            shown = "".join(unknown)
            raise ManifestError(f"{where}: transcript has characters outside the model's vocabulary: {shown!r}",
                                f"the model knows {''.join(t for t in vocab if len(t) == 1)!r}; spell them out or "
                                f"remove the row")
    return text


def read_manifest(path: str | Path, task: str = "classification", num_classes: int | None = None,
                  labels: list[str] | None = None, check_files: bool = True,
                  vocab: list[str] | None = None) -> Manifest:
    path = Path(path)
    required = REQUIRED[task]
    if not path.is_file():
        raise ManifestError(f"{path}: cannot read manifest (no such file)", "check the path")
    digest = hashlib.sha256()
    reader = csv.DictReader(_hashed_lines(path, digest))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    if not columns:
        raise ManifestError(f"{path}: empty manifest", f"expected a header line: {','.join(required)}[,id]")
    missing = [c for c in required if c not in columns]
    if missing:
        raise ManifestError(f"{path}: missing column '{missing[0]}' (header: {','.join(columns)})",
                            f"a {task} manifest needs the columns {','.join(required)} (+ optional id)")
    extra = [c for c in columns if c not in required and c not in OPTIONAL]
    if extra:
        hint = did_you_mean(extra[0], required + OPTIONAL) or f"allowed: {','.join(required + OPTIONAL)}"
        raise ManifestError(f"{path}: unexpected column '{extra[0]}'", hint)
    reader.fieldnames = columns
    base = path.parent
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for line, record in enumerate(reader, start=2):
        where = f"{path} row {line}"
        if None in record:
            raise ManifestError(f"{where}: more fields than the header has", "quote values that contain commas")
        values = {k: (v or "").strip() for k, v in record.items()}
        if not values["path"]:
            raise ManifestError(f"{where}: empty path")
        file_path = Path(values["path"])
        if not file_path.is_absolute():
            file_path = base / file_path
        if check_files and not file_path.is_file():
            raise ManifestError(f"{where}: file not found: {file_path}", "paths are relative to the manifest's folder")
        label, transcript, speaker = -1, "", ""
        if task == "asr":
            transcript = _parse_transcript(values["transcript"], where, vocab)
            speaker = values["speaker"]
        else:
            if not values["label"]:
                raise ManifestError(f"{where}: empty label")
            label = _parse_label(values["label"], where, num_classes, labels)
        sample_id = values.get("id") or values["path"]
        if sample_id in seen:
            raise ManifestError(f"{where}: duplicate id '{sample_id}' (first at row {seen[sample_id]})",
                                "every sample needs a unique id")
        seen[sample_id] = line
        samples.append(Sample(id=sample_id, path=file_path, label=label, row=line, transcript=transcript,
                              speaker=speaker))
    if not samples:
        raise ManifestError(f"{path}: empty manifest (header only)", "add at least one sample row")
    return Manifest(path=path, samples=samples, sha256=digest.hexdigest())


def _hashed_lines(path: Path, digest):
    """The file's lines as text, streamed, feeding every byte to `digest` on the way."""
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                digest.update(raw)
                try:
                    yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError:
                    raise ManifestError(f"{path} row {number}: not UTF-8 text",
                                        "save the manifest as a UTF-8 CSV") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc.strerror})", "check the path") from None


def check_disjoint(forget: Manifest, retain: Manifest) -> None:
    """A sample cannot be both forgotten and retained: that request contradicts itself."""
    forget_keys = {s.id for s in forget.samples} | {str(s.path.resolve()) for s in forget.samples}
    both = [s.id for s in retain.samples if s.id in forget_keys or str(s.path.resolve()) in forget_keys]
    if both:
        raise ManifestError(f"{retain.path}: {len(both)} sample(s) also in the forget set {forget.path}, "
                            f"e.g. ids {both[:3]}", "remove them from the retain manifest")
