"""The recipe: a YAML file validated against a schema, plus `--set a.b=value` overrides.

Unknown keys are errors that name the key path and suggest the nearest valid key; values are
range-checked by the schema. `load_recipe` accepts a file path or the name of a shipped recipe.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer, model_validator

from orthograd_cli.errors import RecipeError, clip, did_you_mean


class _Section(BaseModel):
    # every number finite: inf or NaN (lr=inf, alpha=nan) is refused here, not deep in a solver
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelSpec(_Section):
    arch: str | None = Field(None, description="torchvision/torchaudio builder name; else from checkpoint metadata")
    num_classes: int | None = Field(None, ge=2, description="inferred from the classifier weight when unset")
    labels: list[str] | None = Field(None, description="class names, index order")
    config: dict[str, Any] | None = Field(None, description="builder keyword arguments (torchaudio size "
                                          "parameters); else from orthograd.arch_config metadata")
    vocab: list[str] | None = Field(None, description="speech: CTC tokens, blank first; else from orthograd.vocab")
    sample_rate: int | None = Field(None, ge=1000, description="speech: the model's rate; else metadata or 16000")


class DataSpec(_Section):
    image_size: int = Field(32, ge=8, le=1024, description="images: the side the model sees")
    resize: Literal["squash", "shorter_side_crop"] = Field(
        "squash", description="images: squash to image_size², or resize the shorter side to resize_size and "
                              "centre-crop image_size (torchvision's evaluation transform)")
    resize_size: int | None = Field(None, ge=8, le=4096, description="shorter_side_crop: the shorter side before "
                                    "the crop (e.g. 232 for ResNet-50 V2 weights); unset: image_size")
    channels: Literal[1, 3] = 3
    mean: list[float] = Field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = Field(default_factory=lambda: [0.5, 0.5, 0.5])
    audio_normalize: Literal["none", "utterance"] = Field(
        "none", description="speech: utterance scales each waveform to zero mean and unit variance (what Hugging "
                            "Face's Wav2Vec2FeatureExtractor does with do_normalize), as the model was trained")
    num_workers: int = Field(2, ge=0, le=64, description="processes that decode samples ahead of the model when a "
                             "set is larger than the cache (0: decode in the main process)")
    cache_gb: float = Field(1.0, ge=0, description="decoded samples kept in memory per run (the retain and forget "
                            "sets are read at every step); larger sets stream")

    @model_validator(mode="after")
    def _per_channel(self) -> "DataSpec":
        for key in ("mean", "std"):
            values = getattr(self, key)
            if len(values) not in (1, self.channels):
                raise ValueError(f"{key} needs 1 or {self.channels} values (one per channel), got {len(values)}")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be > 0")
        return self


class LoraSpec(_Section):
    enabled: bool = Field(True, description="false trains the full parameters (the paper's ablation)")
    r: int = Field(8, ge=1, le=1024)
    alpha: float = Field(16.0, gt=0)
    target_modules: list[str] | None = Field(None, description="module names, or patterns with * (every Linear/"
                                             "Conv1d/Conv2d whose name matches); default depends on the architecture")


class ProjectionSpec(_Section):
    scope: Literal["per_tensor", "global"] = "per_tensor"
    retain_grads: Literal["per_sample", "mean", "none"] = "per_sample"
    rank_tol: float = Field(1e-6, ge=0, lt=1, description="drop retain directions under this share of the largest")
    solver: Literal["cholesky", "gram", "qr"] = Field(
        "cholesky", description="cholesky: k×k float64 system by ridge Cholesky, never waits for the device; gram: "
                                "the same system by eigendecomposition (exact rank cut); qr: reduced QR (same projection)")


class PerSampleSpec(_Section):
    backend: Literal["auto", "hooks", "vmap", "loop", "gram"] = Field(
        "auto", description="auto: hooks (one batched backward) for Linear/Conv1d/Conv2d weights such as LoRA, else "
                            "vmap; gram: never stores the k per-sample gradients (global scope only; for "
                            "full-parameter runs)")
    chunk_size: int | None = Field(None, ge=1, description="vmap chunk size, bounds memory")
    memory_gb: float | None = Field(None, gt=0, description="gram backend: the most one layer's temporaries may take "
                                                            "(unset: a quarter of the free device memory, never more "
                                                            "than the hooks backend's k·d float32 rows)")


class StopSpec(_Section):
    target_forget_acc: float | None = Field(
        None, ge=0, le=1, description="unset: sample-wise the original test accuracy, class-wise 0"
    )
    check_every: int = Field(5, ge=1)
    forget_holdout: float = Field(0.0, ge=0, lt=1, description="share of the forget set kept out of the updates")
    retain_holdout: float = Field(0.0, ge=0, lt=1, description="share of the retain set kept out of the updates, "
                                  "scored at each check: what max_damage watches, with the test set")
    max_damage: float | None = Field(
        None, gt=0, le=1, description="the most the held-out retain share's or the test set's accuracy may fall "
                                      "below the original's (speech: WER rise); a check past it ends the run and "
                                      "the run writes the last check within it; unset: no damage watch")
    max_minutes: float | None = Field(
        None, gt=0, description="a time budget: the run ends at the first check after this many minutes and "
                                "reports what it reached (stop reason time_budget); unset: no budget")


class TuneSpec(_Section):
    """`forget --tune`: a budgeted search on validation splits (jobs/tune.py)."""

    enabled: bool = Field(False, description="search the settings before the run (forget --tune)")
    budget_runs: int = Field(8, ge=1, description="the most candidate runs (forget --tune-budget N)")
    budget_minutes: float | None = Field(None, gt=0, description="start no candidate after this many minutes")
    max_damage: float = Field(0.02, gt=0, le=1, description="a candidate meets the constraints when it reaches the "
                                                            "stop target with retain_val accuracy at most this far "
                                                            "below the original's (speech: WER rise)")
    space: dict[str, list] = Field(
        default_factory=dict, description="recipe key -> values to try (method.* and lora.* keys, as compare "
                                          "--sweep); empty: the step length at 1, 1/2, 1/4 and 1/8 times the "
                                          "recipe's, with α at the recipe's (else the method's default) and "
                                          "0.5 when the method has one")


class MethodSpec(_Section):
    """Settings every method shares; a method's own settings are the section named after it
    (`method.gdr_gma.gamma`), declared by the method file (see methods/base.py)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, allow_inf_nan=False)

    name: str = Field("orthograd", description="the unlearning method; `orthograd forget --help` lists them")
    lr: float = Field(0.05, gt=0, description="step length of the normalised update θ ← θ − η·d/‖d‖")
    alpha: float | None = Field(None, ge=0, le=1, description="weight of the retain term; unset: the method's "
                                "default (orthograd 0 = pure projected ascent; neggrad_plus 0.95; random_label and "
                                "salun 0.5)")
    optimizer: Literal["normalized_sgd", "adam"] = "normalized_sgd"
    unlearn_batch_size: int = Field(32, ge=1)
    retain_batch_size: int = Field(64, ge=1, description="k, the number of per-sample retain gradients")
    max_steps: int = Field(200, ge=1)
    projection: ProjectionSpec = Field(default_factory=ProjectionSpec)
    per_sample: PerSampleSpec = Field(default_factory=PerSampleSpec)
    stop: StopSpec = Field(default_factory=StopSpec)
    tune: TuneSpec = Field(default_factory=TuneSpec)

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        from orthograd_cli.methods import METHODS

        if name not in METHODS:
            hint = did_you_mean(name, METHODS)
            raise ValueError(f"unknown method '{name}' ({hint or 'choose from ' + ', '.join(METHODS)})")
        return name

    @model_validator(mode="before")
    @classmethod
    def _method_sections(cls, data: Any) -> Any:
        """Each key that is not a shared setting must be a method's own section, validated by its model."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key, value in data.items():
            if key in cls.model_fields:
                continue
            settings = _settings_model(key)
            if settings is None:
                raise _error_at(key, "extra_forbidden", value)
            try:
                data[key] = settings.model_validate(value if value is not None else {})
            except ValidationError as err:
                raise ValidationError.from_exception_data(cls.__name__, [
                    {"type": e["type"], "loc": (key, *e["loc"]), "input": e["input"],
                     **({"ctx": e["ctx"]} if "ctx" in e else {})} for e in err.errors()]) from None
        return data

    @model_validator(mode="after")
    def _gram_needs_global_scope(self) -> "MethodSpec":
        if self.per_sample.backend == "gram" and (self.projection.scope != "global"
                                                 or self.projection.retain_grads != "per_sample"):
            raise ValueError("per_sample.backend gram computes the global projection on per-sample gradients: set "
                             "projection.scope: global and projection.retain_grads: per_sample")
        if self.per_sample.backend == "gram" and self.projection.solver == "qr":
            raise ValueError("per_sample.backend gram keeps no rows to factor, so projection.solver qr cannot apply: "
                             "set projection.solver: cholesky or gram")
        return self

    @model_validator(mode="after")
    def _alpha_only_where_the_method_has_one(self) -> "MethodSpec":
        from orthograd_cli.methods import METHODS

        info = METHODS.get(self.name)
        if self.alpha is not None and info is not None and info.default_alpha is None:
            with_alpha = ", ".join(name for name, method in METHODS.items() if method.default_alpha is not None)
            raise ValueError(f"method {self.name} has no retain weight α, so alpha would be ignored: leave it unset, "
                             f"or --set method.alpha=null over a recipe that gives one (methods with α: {with_alpha})")
        return self

    @model_serializer(mode="wrap")
    def _with_own_settings(self, handler) -> dict:
        """The dump (report, recipe hash) shows the selected method's settings, defaults filled in."""
        data = handler(self)
        settings = _settings_model(self.name)
        if settings is not None and self.name not in data:
            data[self.name] = settings().model_dump(mode="json")
        return data

    @property
    def settings(self):
        """The selected method's own settings (its pydantic model), defaults filled in; None if it has none."""
        model = _settings_model(self.name)
        if model is None:
            return None
        given = (self.__pydantic_extra__ or {}).get(self.name)
        return given if isinstance(given, model) else model()


def _settings_model(method_name: str):
    from orthograd_cli.methods import METHODS

    info = METHODS.get(method_name)
    return info.settings if info is not None else None


def _error_at(key: str, kind: str, value: Any) -> ValidationError:
    return ValidationError.from_exception_data("MethodSpec", [{"type": kind, "loc": (key,), "input": value}])


class EvalSpec(_Section):
    mode: Literal["sample", "class"] = "sample"
    batch_size: int = Field(256, ge=1)
    mia: bool = True
    require_better_than_chance: bool = Field(
        True, description="forget/compare: stop before unlearning when the original model is at chance on the "
                          "retain or test set (wrong preprocessing, vocabulary or checkpoint)")
    max_test_drop: float | None = Field(
        None, ge=0, le=1, description="the built-in check test_kept: the most the test accuracy may fall below the "
                                      "original model's before the command exits 5; unset: the task's (0.02; "
                                      "speech: 0.03 of word accuracy, a WER rise of 0.03)")

    def test_drop_allowed(self, task) -> float:
        return self.max_test_drop if self.max_test_drop is not None else task.max_test_drop


class RunSpec(_Section):
    """How a run keeps its resumable state (`forget --resume`); neither key changes what a run computes."""

    checkpoint_every_steps: int = Field(
        25, ge=1, description="write the resumable state every this many steps (and on SIGTERM/SIGINT)")
    checkpoint_every_minutes: float = Field(
        10.0, gt=0, description="and at least this often, whatever the step count")


class Recipe(_Section):
    task: str | None = Field(None, description="unset: the checkpoint's orthograd.task, else from the architecture")
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    lora: LoraSpec = Field(default_factory=LoraSpec)
    method: MethodSpec = Field(default_factory=MethodSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    run: RunSpec = Field(default_factory=RunSpec)
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["float32", "bf16"] = Field(
        "float32", description="bf16: unlearning forward/backward passes and per-sample rows under "
                               "autocast(bfloat16); gradients come back as float32, projection (float64) and update "
                               "stay in float32 or higher. Evaluation runs in float32")
    deterministic: bool = Field(
        True, description="deterministic kernels (torch.use_deterministic_algorithms; on CUDA also "
                          "CUBLAS_WORKSPACE_CONFIG), so that same-seed runs on the same device type write the same "
                          "bytes; the report says whether every kernel was deterministic")
    require: list[str] = Field(
        default_factory=list, description="requirements the output must meet, as for --require (e.g. "
                                          "forget_acc<=0.05); the built-in checks target_reached, not_at_chance and "
                                          "test_kept hold unless dropped with !target_reached / !not_at_chance / "
                                          "!test_kept")

    @model_validator(mode="after")
    def _vmap_runs_in_float32(self) -> "Recipe":
        if self.precision == "bf16" and self.method.per_sample.backend == "vmap":
            raise ValueError("precision bf16 cannot reach into the vmap backend's passes: set "
                             "method.per_sample.backend: hooks, loop or auto, or precision: float32")
        return self

    @field_validator("require")
    @classmethod
    def _requirements_parse(cls, require: list[str]) -> list[str]:
        from orthograd_cli.errors import UsageError
        from orthograd_cli.requirements import parse

        for text in require:
            try:
                parse(text)
            except UsageError as err:
                raise ValueError(f"{str(err).removeprefix('--require ')} ({err.hint})") from None
        return require

    @field_validator("task")
    @classmethod
    def _registered_task(cls, task: str | None) -> str | None:
        from orthograd_cli.tasks import TASKS

        if task is not None and task not in TASKS:
            hint = did_you_mean(task, TASKS)
            raise ValueError(f"unknown task '{task}' ({hint or 'choose from ' + ', '.join(TASKS)})")
        return task


def shipped_recipes_dir() -> Path:
    """Where the shipped recipes live: package data when installed, `recipes/` in a checkout."""
    try:
        path = Path(str(resources.files("orthograd_cli.recipes")))
        if path.is_dir():
            return path
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "recipes"


def shipped_recipe_names() -> list[str]:
    return sorted(p.stem for p in shipped_recipes_dir().glob("*.yaml"))


def resolve_recipe_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_recipes_dir() / f"{name_or_path.removesuffix('.yaml')}.yaml"
    if shipped.is_file():
        return shipped
    hint = did_you_mean(path.stem, shipped_recipe_names()) or "run `orthograd recipes ls` for the shipped ones"
    raise RecipeError(f"{name_or_path}: no such recipe file or shipped recipe", hint)


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Valid keys of the schema section that `loc` (a key path) points into; under `method`, the
    methods' own sections (e.g. `method.gdr_gma`) count as keys too."""
    model: type[BaseModel] = Recipe
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is not None and isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            model = field.annotation
        elif issubclass(model, MethodSpec) and _settings_model(str(part)) is not None:
            model = _settings_model(str(part))
        else:
            break
    keys = list(model.model_fields)
    if issubclass(model, MethodSpec):
        from orthograd_cli.methods import METHODS

        keys += [name for name, info in METHODS.items() if info.settings is not None]
    return keys


def _recipe_error(source: str, err: ValidationError) -> RecipeError:
    first = err.errors()[0]
    loc = tuple(first["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        hint = did_you_mean(str(loc[-1]), _fields_at(loc[:-1])) or f"valid keys here: {', '.join(_fields_at(loc[:-1]))}"
        return RecipeError(f"{source}: unknown key '{key}'", hint)
    message = first["msg"].removeprefix("Value error, ")
    return RecipeError(f"{source}: key '{key}': {message}", "see `orthograd recipes show default` for valid values")


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `a.b=value` override in place; the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in assignment:
        raise RecipeError(f"override '{assignment}': expected KEY=VALUE", "e.g. method.lr=0.01")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RecipeError(f"override '{assignment}': '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = yaml_value(raw, f"override '{clip(assignment)}'")


MAX_VALUE_CHARS = 4096  # a recipe value on the command line; a recipe file has its own cap (check_size)


def yaml_value(raw: str, where: str) -> Any:
    """One value given on the command line, parsed as YAML (numbers, lists, null). Anchors and aliases are
    refused before anything is built: a few lines of them expand to gigabytes."""
    if len(raw) > MAX_VALUE_CHARS:
        raise RecipeError(f"{where}: the value is {len(raw)} characters long (at most {MAX_VALUE_CHARS})",
                          "put long settings in a recipe file")
    try:
        if any(isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None)
               for event in yaml.parse(raw, Loader=yaml.SafeLoader)):
            raise RecipeError(f"{where}: YAML anchors and aliases (&, *) are not accepted here",
                              "write the value out")
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{where}: value is not valid YAML ({exc.__class__.__name__})",
                          "quote strings that contain ':' or '#'") from None


def parse_recipe(data: Any, source: str) -> Recipe:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a YAML mapping of sections, got {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise _recipe_error(source, err) from None


MAX_RECIPE_NODES = 100_000  # far above any real recipe; YAML aliases can expand a short file without bound


def check_size(data: Any, source: str) -> None:
    """Refuse a recipe whose values, with YAML aliases expanded, exceed MAX_RECIPE_NODES (a few hundred bytes of
    nested aliases expand ×10 per level when the recipe is hashed and dumped). Stops counting at the cap."""
    count, stack = 0, [data]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_RECIPE_NODES:
            raise RecipeError(f"{source}: the recipe expands to more than {MAX_RECIPE_NODES:,} values (YAML aliases "
                              "nested too deep?)", "write the values out instead of aliasing them")
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def read_recipe_yaml(path: Path) -> Any:
    try:
        data = yaml.safe_load(path.read_text())
        check_size(data, str(path))
        return data
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise RecipeError(f"{path}:{where} malformed YAML ({getattr(exc, 'problem', exc)})",
                          "check indentation and colons") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read recipe ({exc})") from None


def load_recipe(name_or_path: str | None, overrides: list[str] | None = None) -> tuple[Recipe, str]:
    """The validated recipe and the sha256 of its resolved form (what the report records)."""
    data: dict[str, Any] = {}
    source = "default recipe"
    if name_or_path:
        path = resolve_recipe_path(name_or_path)
        source = str(path)
        data = read_recipe_yaml(path) or {}
        if not isinstance(data, dict):
            raise RecipeError(f"{source}: a recipe is a YAML mapping of sections, got {type(data).__name__}")
    for assignment in overrides or []:
        apply_override(data, assignment)
    recipe = parse_recipe(data, source + (" with overrides" if overrides else ""))
    return recipe, recipe_sha256(recipe)


# data keys that say how the checkpoint sees its inputs: recorded in outputs (orthograd.data) and read back from
# checkpoints and model folders for every key the recipe leaves unset
PREPROCESSING_KEYS = ("image_size", "resize", "resize_size", "channels", "mean", "std", "audio_normalize")


def with_checkpoint_preprocessing(recipe: Recipe, recorded: dict | None) -> Recipe:
    """The recipe with the checkpoint's recorded preprocessing for the data keys the recipe does not set."""
    if not recorded:
        return recipe
    unknown = sorted(set(recorded) - set(PREPROCESSING_KEYS))
    if unknown:
        raise RecipeError(f"the checkpoint's orthograd.data metadata has unknown key '{unknown[0]}'",
                          f"known: {', '.join(PREPROCESSING_KEYS)}")
    chosen = {key: value for key, value in recorded.items() if key not in recipe.data.model_fields_set}
    if not chosen:
        return recipe
    data = recipe.data.model_dump()
    data.update(chosen)
    try:
        spec = DataSpec.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(f"the checkpoint's recorded preprocessing (orthograd.data) is invalid: "
                          f"{exc.errors()[0]['msg']}", "set the data keys in the recipe") from None
    spec.__pydantic_fields_set__ = set(recipe.data.model_fields_set)  # still what the user set, for a second call
    return recipe.model_copy(update={"data": spec})


def preprocessing_metadata(data: DataSpec) -> dict[str, str]:
    import json

    return {"orthograd.data": json.dumps({key: getattr(data, key) for key in PREPROCESSING_KEYS}, sort_keys=True)}


# keys that say how a run executes, not what it computes: the recipe's hash (in every checkpoint it writes)
# leaves them out, so that streaming or caching the data cannot change a checkpoint's bytes
EXECUTION_ONLY = (("data", "num_workers"), ("data", "cache_gb"), ("eval", "require_better_than_chance"),
                  ("run", "checkpoint_every_steps"), ("run", "checkpoint_every_minutes"))


def recipe_sha256(recipe: Recipe) -> str:
    data = recipe.model_dump(mode="json")
    for section, key in EXECUTION_ONLY:
        data[section].pop(key, None)
    canonical = yaml.safe_dump(data, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def default_recipe_with_all_method_settings() -> dict:
    """Every recipe key with its default, each method's own settings section included (what
    `orthograd recipes show default` prints)."""
    from orthograd_cli.methods import METHODS

    data = Recipe().model_dump(mode="json")
    for name, info in METHODS.items():
        if info.settings is not None:
            data["method"][name] = info.settings().model_dump(mode="json")
    return data
