"""Hugging Face model folders: `config.json`, the weights (`model.safetensors` or a sharded index) and
the processor files, read into the same Checkpoint as a plain state dict.

What the rest of the tool needs from a folder is written into the checkpoint's `orthograd.*`
metadata, derived from its files (metadata already there, e.g. from an earlier orthograd run, wins):
the architecture (`hf:<config.architectures[0]>`), the task, the classes (`id2label`) or the CTC
vocabulary (`vocab.json`, the word delimiter as a space, blank = pad token = id 0), the sampling rate,
and the preprocessing the processor applies (`orthograd.data`: image size, resize, mean/std, or the
per-utterance waveform normalisation), which recipes may still override key by key. A Whisper folder
gives its feature extractor's settings and the decoder prompt its tokenizer writes (`orthograd.seq2seq`);
the tokenizer itself is read from the folder when transcripts are encoded, as a language model's is when its
text is (`orthograd.causal_lm`: the context length and the end token). This module reads the folder
(weights, config, safety checks); each task reads its own processor and tokenizer settings
(`tasks/<task>/folder.py`, through `Task.folder_metadata`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from orthograd_cli.errors import CheckpointError, clip
from orthograd_cli.models.checkpoint import META_PREFIX, Checkpoint, file_sha256, read_safetensors

CONFIG = "config.json"
SINGLE_FILE = "model.safetensors"
SHARD_INDEX = "model.safetensors.index.json"
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# Files beside the weights that from_pretrained and the processors read; copied into outputs unchanged.
COMPANION_SUFFIXES = (".json", ".txt", ".model", ".jinja")
NOT_COMPANIONS = {SHARD_INDEX, "report.json", "pytorch_model.bin.index.json"}

CTC_ARCHITECTURES = ("Wav2Vec2ForCTC", "HubertForCTC")
SEQ2SEQ_ARCHITECTURES = ("WhisperForConditionalGeneration",)
IMAGE_CLASSIFIER_SUFFIX = "ForImageClassification"
CAUSAL_LM_SUFFIXES = ("ForCausalLM", "LMHeadModel")  # LlamaForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel, …
SUPPORTED = (f"{', '.join(CTC_ARCHITECTURES + SEQ2SEQ_ARCHITECTURES)}, *{IMAGE_CLASSIFIER_SUFFIX} and "
             "*ForCausalLM / GPT2LMHeadModel models")


def kind_of(architecture: str) -> str | None:
    """The family a model class belongs to ("ctc", "seq2seq", "image_classifier" or "decoder_lm"), which says its
    task (KIND_TASKS), what its folder must hold and how it is called."""
    if architecture in CTC_ARCHITECTURES:
        return "ctc"
    if architecture in SEQ2SEQ_ARCHITECTURES:
        return "seq2seq"
    if architecture.endswith(IMAGE_CLASSIFIER_SUFFIX):
        return "image_classifier"
    if architecture.endswith(CAUSAL_LM_SUFFIXES) and "DoubleHeads" not in architecture:
        return "decoder_lm"
    return None


def task_of(architecture: str) -> str | None:
    return KIND_TASKS.get(kind_of(architecture))


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not readable JSON ({type(exc).__name__})",
                              "restore the file from the model's original folder") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return value


def whole(values: dict, key: str, path: Path, default: int | None = None, minimum: int = 1) -> int:
    """A setting that must be a whole number of at least `minimum` (a sampling rate, a size, a label count)."""
    value = values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CheckpointError(f"{path}: '{key}' is {clip(repr(value))}, expected a whole number of at least {minimum}",
                              f"restore {path.name} from the model's original folder")
    return value


def share(values: dict, key: str, path: Path) -> float:
    """A setting that must be a number in (0, 1] (a crop share)."""
    value = values.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise CheckpointError(f"{path}: '{key}' is {clip(repr(value))}, expected a number in (0, 1]",
                              f"restore {path.name} from the model's original folder")
    return float(value)


def numbers(values: dict, key: str, path: Path, default: list, positive: bool = False) -> list[float]:
    """A setting that must be a list of finite numbers (a mean or std per channel)."""
    import math

    value = values.get(key, default)
    if not isinstance(value, list) or not value or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)
            for v in value):
        kind = "positive numbers" if positive else "numbers"
        raise CheckpointError(f"{path}: '{key}' is {clip(repr(value))}, expected a list of {kind}",
                              f"restore {path.name} from the model's original folder")
    return [float(v) for v in value]


def read_json_if_present(path: Path) -> dict | None:
    """An optional file of the folder (processor, generation or tokenizer settings): None where it is absent."""
    return read_json(path) if path.is_file() else None


# Where a folder keeps its processor's settings: a feature extractor or image processor saved alone writes
# preprocessor_config.json; a whole processor saved by transformers 5 (Wav2Vec2Processor.save_pretrained) writes
# processor_config.json with the settings under the part's name.
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
PROCESSOR_PARTS = ("feature_extractor", "image_processor")


def processor_path(folder: Path) -> Path:
    """The file the folder's processor settings come from (the first of PROCESSOR_FILES, when neither is there)."""
    return next((folder / name for name in PROCESSOR_FILES if (folder / name).is_file()), folder / PROCESSOR_FILES[0])


def read_processor(folder: Path) -> dict | None:
    """The folder's feature extractor or image processor settings, from either file; None where there are none."""
    path = processor_path(folder)
    settings = read_json_if_present(path)
    if settings is not None and path.name == "processor_config.json":
        settings = next((settings[part] for part in PROCESSOR_PARTS if isinstance(settings.get(part), dict)), None)
    return settings


# Keys by which a folder's JSON files ask transformers to import Python code shipped in the folder (or a hub repo).
REMOTE_CODE_KEYS = ("auto_map", "custom_pipelines")


def refuse_remote_code(folder: Path) -> None:
    """A folder whose config, tokenizer or processor files name code of their own (`auto_map`) is refused before
    transformers reads any of them: that code would run on loading, and orthograd never runs a folder's code."""
    for path in sorted(folder.glob("*.json")):
        if path.name == SHARD_INDEX or not path.is_file():
            continue
        value = read_json(path)
        asked = [key for key in REMOTE_CODE_KEYS if key in value]
        if asked:
            raise CheckpointError(f"{path}: '{asked[0]}' names Python code shipped with the model, and orthograd never "
                                  "runs a model folder's code", "use a model class that transformers ships "
                                  "(its config.json without auto_map)")


def read_tokenizer(folder: str, files: tuple[str, ...], hint: str):
    """The folder's own tokenizer, read offline and never with the folder's code (its JSON files are checked for
    `auto_map` first: the tokenizer's files are read again here, after the folder was). `files`: one of them must be
    there; `hint`: how to save them."""
    import transformers

    refuse_remote_code(Path(folder))
    if not any((Path(folder) / name).is_file() for name in files):
        raise CheckpointError(f"{folder}: no tokenizer files ({' or '.join(files)})", hint)
    try:
        return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{folder}: the tokenizer cannot be read ({type(exc).__name__})", hint) from None


def weight_files(folder: Path) -> tuple[list[Path], dict[str, str] | None]:
    """The safetensors files holding the weights, single file or shards, and for shards the index's
    {tensor: shard file}; pickled weights are refused."""
    if (folder / SINGLE_FILE).is_file():
        return [folder / SINGLE_FILE], None
    if (folder / SHARD_INDEX).is_file():
        weight_map, shards = shard_map(folder)
        return [folder / name for name in shards], weight_map
    if any((folder / name).is_file() for name in PICKLED_WEIGHTS):
        raise CheckpointError(f"{folder}: the weights are pickled (pytorch_model.bin); orthograd never unpickles files",
                              "convert once, safely: Model.from_pretrained(folder, use_safetensors=False, "
                              "trust_remote_code=False)"
                              ".save_pretrained(folder, safe_serialization=True) in an environment you trust")
    raise CheckpointError(f"{folder}: a model folder needs {SINGLE_FILE} or {SHARD_INDEX}",
                          "save the model with save_pretrained(folder)")


def shard_map(folder: Path) -> tuple[dict[str, str], list[str]]:
    """The shard index's {tensor: shard file} and its shard files in order. Only plain file names of this folder
    are shards: a path (absolute, `../`, a subfolder) could read files from anywhere."""
    index = folder / SHARD_INDEX
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index}: no 'weight_map'", "re-save the model with save_pretrained")
    for tensor, name in weight_map.items():
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
            raise CheckpointError(f"{index}: tensor '{clip(tensor)}' is mapped to {clip(repr(name))}, which is not a "
                                  "file name in the model folder", "shards must lie in the folder beside the index")
    shards = sorted(set(weight_map.values()))
    missing = [name for name in shards if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"{folder}: shard '{clip(missing[0])}' listed in {SHARD_INDEX} is missing",
                              "copy every shard of the model into the folder")
    return weight_map, shards


def read_hf_folder(folder: Path, weights: bool = True) -> Checkpoint:
    if not (folder / CONFIG).is_file():
        raise CheckpointError(f"{folder}: a folder, but not a Hugging Face model folder (no {CONFIG})",
                              "pass a .safetensors file, or a folder written by save_pretrained")
    refuse_remote_code(folder)
    config = read_json(folder / CONFIG)
    files, weight_map = weight_files(folder)
    state_dict, metadata = {}, {}
    for path in files:
        tensors, file_metadata = read_safetensors(path, weights)
        if weight_map is not None:
            check_shard(folder, path.name, tensors, weight_map)
        state_dict.update(tensors)
        metadata = metadata or file_metadata
    if weight_map is not None and set(weight_map) - set(state_dict):
        absent = sorted(set(weight_map) - set(state_dict))[0]
        raise CheckpointError(f"{folder / SHARD_INDEX}: tensor '{clip(absent)}' is in no shard",
                              "re-save the model with save_pretrained")
    metadata.setdefault("format", "pt")  # from_pretrained refuses safetensors files without it
    for key, value in derived_metadata(folder, config).items():
        metadata.setdefault(key, value)
    digest = "" if not weights else file_sha256(files[0]) if len(files) == 1 else \
        hashlib.sha256("".join(file_sha256(path) for path in files).encode()).hexdigest()
    return Checkpoint(path=folder, state_dict=state_dict, metadata=metadata, sha256=digest, is_folder=True,
                      config=config)


def check_shard(folder: Path, shard: str, tensors: dict, weight_map: dict[str, str]) -> None:
    """Each tensor of a shard must be one the index places there: a copy in another shard would otherwise take
    the place of the one the index names, depending on the order the shards are read."""
    stray = next((key for key in tensors if weight_map.get(key) != shard), None)
    if stray is not None:
        where = f"in '{clip(weight_map[stray])}'" if stray in weight_map else "nowhere"
        raise CheckpointError(f"{folder / shard}: holds tensor '{clip(stray)}', which {SHARD_INDEX} places {where}",
                              "re-save the model with save_pretrained")


def derived_metadata(folder: Path, config: dict) -> dict[str, str]:
    architectures = config.get("architectures") or []
    if not architectures:
        raise CheckpointError(f"{folder / CONFIG}: no 'architectures' entry, so the model class is unknown",
                              'add e.g. "architectures": ["Wav2Vec2ForCTC"] to config.json')
    architecture = architectures[0] if isinstance(architectures, list) else architectures
    if not isinstance(architecture, str):
        raise CheckpointError(f"{folder / CONFIG}: 'architectures' is {clip(repr(architectures))}, expected a list "
                              "of class names", 'e.g. "architectures": ["Wav2Vec2ForCTC"]')
    kind = kind_of(architecture)
    if kind is None or architecture.startswith("Auto"):  # an Auto class names no model, only a way to pick one
        raise CheckpointError(f"{folder}: '{clip(architecture)}' is not supported", f"supported: {SUPPORTED}")
    from orthograd_cli.tasks import get_task

    processor = read_processor(folder)
    task = KIND_TASKS[kind]  # the task reads its own processor files (tasks/<task>/folder.py)
    meta = {"arch": f"hf:{architecture}", "task": task, **get_task(task).folder_metadata(folder, config, processor)}
    return {META_PREFIX + key: value for key, value in meta.items()}


KIND_TASKS = {"ctc": "asr", "seq2seq": "asr_seq2seq", "image_classifier": "classification",
              "decoder_lm": "causal_lm"}


def companion_files(folder: Path) -> list[Path]:
    """The folder's config, processor and tokenizer files (everything from_pretrained reads but the weights)."""
    return sorted(path for path in folder.iterdir() if path.is_file() and path.suffix in COMPANION_SUFFIXES
                  and path.name not in NOT_COMPANIONS)


def copy_companions(source: Path, target: Path) -> None:
    for path in companion_files(source):
        shutil.copyfile(path, target / path.name)
