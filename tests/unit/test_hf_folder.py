"""Reading Hugging Face model folders: shards, what is derived from config and processor files, and clear
errors for folders the tool cannot use (never unpickling)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from orthograd_cli.errors import CheckpointError
from orthograd_cli.models.checkpoint import read_checkpoint
from tests.hf_models import tiny_vit, tiny_wav2vec2


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "vit"
    tiny_vit(folder)
    return folder


def test_a_sharded_folder_reads_like_a_single_file(vit_folder, tmp_path):
    import transformers

    sharded = tmp_path / "sharded"
    transformers.ViTForImageClassification.from_pretrained(str(vit_folder)).save_pretrained(
        str(sharded), max_shard_size="100KB")
    shutil.copy(vit_folder / "preprocessor_config.json", sharded)
    assert (sharded / "model.safetensors.index.json").is_file() and not (sharded / "model.safetensors").exists()
    single, shards = read_checkpoint(vit_folder), read_checkpoint(sharded)
    assert set(single.state_dict) == set(shards.state_dict)
    assert all(torch.equal(single.state_dict[k], shards.state_dict[k]) for k in single.state_dict)
    assert shards.sha256 != single.sha256 and len(shards.sha256) == 64


def test_what_a_folder_says_becomes_metadata(vit_folder, tmp_path):
    from orthograd_cli.data.speech import vocabulary

    vit = read_checkpoint(vit_folder)
    assert vit.meta("arch") == "hf:ViTForImageClassification" and vit.meta("num_classes") == "10"
    assert vit.meta_json("data") == {"channels": 3, "resize": "squash", "image_size": 32, "mean": [0.4] * 3,
                                     "std": [0.3] * 3}
    tiny_wav2vec2(tmp_path / "w2v", vocabulary(), do_normalize=False)
    speech = read_checkpoint(tmp_path / "w2v")
    assert speech.meta("task") == "asr" and speech.meta_json("data") == {"audio_normalize": "none"}
    assert speech.meta_json("vocab")[:3] == ["<pad>", " ", "E"]  # word delimiter as a space, blank first


def test_a_recipe_key_beats_the_folder_and_the_folder_beats_the_default(vit_folder):
    from orthograd_cli.recipe import Recipe, parse_recipe, with_checkpoint_preprocessing

    recorded = read_checkpoint(vit_folder).meta_json("data")
    assert with_checkpoint_preprocessing(Recipe(), recorded).data.mean == [0.4] * 3
    given = parse_recipe({"data": {"mean": [0.1, 0.2, 0.3]}}, "test")
    assert with_checkpoint_preprocessing(given, recorded).data.mean == [0.1, 0.2, 0.3]
    assert with_checkpoint_preprocessing(given, recorded).data.std == [0.3] * 3


@pytest.mark.parametrize("case, fragment", [
    ("no-config", "no config.json"),
    ("pickled-weights", "never unpickles"),
    ("no-architectures", "no 'architectures'"),
    ("unsupported", "is not supported"),
    ("missing-shard", "is missing"),
])
def test_unusable_folders_are_clear_errors(vit_folder, tmp_path, case, fragment):
    folder = tmp_path / case
    shutil.copytree(vit_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    if case == "no-config":
        (folder / "config.json").unlink()
    elif case == "pickled-weights":
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    elif case == "no-architectures":
        (folder / "config.json").write_text(json.dumps({**config, "architectures": None}))
    elif case == "unsupported":
        (folder / "config.json").write_text(json.dumps({**config, "architectures": ["ViTForMaskedImageModeling"]}))
    elif case == "missing-shard":
        (folder / "model.safetensors").unlink()
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "shard-1.safetensors"}}))
    with pytest.raises(CheckpointError, match=fragment):
        read_checkpoint(folder)


def test_a_folder_does_the_task_of_its_class(tmp_path):
    from orthograd_cli.data.speech import vocabulary
    from orthograd_cli.models.registry import resolve_model_info

    tiny_wav2vec2(tmp_path / "w2v", vocabulary())
    with pytest.raises(CheckpointError, match="model for asr, but the task is 'classification'"):
        resolve_model_info(read_checkpoint(tmp_path / "w2v"), task="classification")


@pytest.fixture
def sharded_folder(vit_folder, tmp_path):
    """The ViT saved in shards of 100 KB (several files and an index)."""
    import transformers

    sharded = tmp_path / "sharded"
    transformers.ViTForImageClassification.from_pretrained(str(vit_folder), trust_remote_code=False).save_pretrained(
        str(sharded), max_shard_size="100KB")
    shutil.copy(vit_folder / "preprocessor_config.json", sharded)
    return sharded


@pytest.mark.parametrize("place", ["absolute", "parent", "subfolder"])
def test_a_shard_index_naming_a_file_outside_the_folder_is_refused(sharded_folder, tmp_path, place):
    index_path = sharded_folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    tensor, shard = next(iter(index["weight_map"].items()))
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(sharded_folder / shard, outside / shard)  # a real shard there: only the path is wrong
    (sharded_folder / "sub").mkdir()
    shutil.copy(sharded_folder / shard, sharded_folder / "sub" / shard)
    index["weight_map"][tensor] = {"absolute": str(outside / shard), "parent": f"../outside/{shard}",
                                   "subfolder": f"sub/{shard}"}[place]
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="not a file name in the model folder") as refused:
        read_checkpoint(sharded_folder)
    assert refused.value.exit_code == 3


def test_a_tensor_in_a_shard_the_index_does_not_name_is_refused(sharded_folder):
    """Two shards holding one tensor: which copy wins would depend on read order."""
    from safetensors.torch import load_file, save_file

    index = json.loads((sharded_folder / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    first, second = (load_file(str(sharded_folder / name)) for name in shards[:2])
    stray = next(iter(first))
    save_file({**second, stray: torch.zeros_like(first[stray])}, str(sharded_folder / shards[1]),
              metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=f"holds tensor '{stray}', which .* places in '{shards[0]}'"):
        read_checkpoint(sharded_folder)


def test_a_tensor_the_index_names_but_no_shard_holds_is_refused(sharded_folder):
    index_path = sharded_folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["vit.extra.weight"] = next(iter(index["weight_map"].values()))
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="'vit.extra.weight' is in no shard"):
        read_checkpoint(sharded_folder)


def edit_json(path, **changes):
    values = json.loads(path.read_text())
    values.update(changes)
    path.write_text(json.dumps(values))


@pytest.mark.parametrize("file, changes, fragment", [
    ("config.json", {"architectures": ["AutoModelForImageClassification"]}, "is not supported"),
    ("config.json", {"architectures": 5}, "expected a list of class names"),
    ("config.json", {"num_labels": "ten"}, "'num_labels' is 'ten'"),
    ("config.json", {"id2label": ["a", "b"]}, "'id2label' is"),
    ("config.json", {"num_channels": "3"}, "'num_channels' is '3'"),
    ("config.json", {"model_type": "bert"}, "model_type 'bert' does not belong to ViTForImageClassification"),
    ("config.json", {"hidden_size": "wide"}, "not a valid ViTConfig"),
    ("preprocessor_config.json", {"size": {"height": 0, "width": 0}}, "'height' is 0"),
    ("preprocessor_config.json", {"size": {"shortest_edge": 32}, "crop_pct": 0}, "'crop_pct' is 0"),
    ("preprocessor_config.json", {"image_std": [0, 0, 0]}, "'image_std' is"),
    ("preprocessor_config.json", {"image_mean": "grey"}, "'image_mean' is 'grey'"),
    ("preprocessor_config.json", {"size": "large"}, "image size"),
], ids=lambda value: value if isinstance(value, str) and "." not in value else None)
def test_malformed_folder_settings_are_checkpoint_errors_naming_the_key(vit_folder, tmp_path, file, changes,
                                                                       fragment):
    """A user's edited or foreign config must say which value is wrong, never 'unexpected'."""
    from orthograd_cli.loading import load_checkpoint_and_info
    from orthograd_cli.recipe import Recipe

    folder = tmp_path / "vit"
    shutil.copytree(vit_folder, folder)
    edit_json(folder / file, **changes)
    with pytest.raises(CheckpointError, match=fragment):
        load_checkpoint_and_info(folder, Recipe())


@pytest.mark.parametrize("file, changes, fragment", [
    ("preprocessor_config.json", {"sampling_rate": 0}, "'sampling_rate' is 0"),
    ("config.json", {"pad_token_id": "x"}, "is not token 0"),
    ("config.json", {"vocab_size": 8}, "but the model's head has 8 outputs"),
])
def test_malformed_speech_folder_settings_are_checkpoint_errors(tmp_path, file, changes, fragment):
    from orthograd_cli.data.speech import vocabulary

    tiny_wav2vec2(tmp_path / "w2v", vocabulary())
    edit_json(tmp_path / "w2v" / file, **changes)
    with pytest.raises(CheckpointError, match=fragment):
        read_checkpoint(tmp_path / "w2v")


@pytest.mark.parametrize("do_normalize", [True, False])
def test_a_processor_saved_whole_reads_as_its_feature_extractor_file(tmp_path, do_normalize):
    """transformers 5 saves Wav2Vec2Processor's settings in processor_config.json, not preprocessor_config.json."""
    import transformers

    from orthograd_cli.data.speech import vocabulary

    separate, whole = tmp_path / "separate", tmp_path / "whole"
    tiny_wav2vec2(separate, vocabulary(), do_normalize=do_normalize)
    shutil.copytree(separate, whole)
    (whole / "preprocessor_config.json").unlink()
    processor = transformers.Wav2Vec2Processor(
        feature_extractor=transformers.Wav2Vec2FeatureExtractor.from_pretrained(str(separate)),
        tokenizer=transformers.Wav2Vec2CTCTokenizer.from_pretrained(str(separate)))
    processor.save_pretrained(str(whole))
    assert not (whole / "preprocessor_config.json").exists(), "this transformers writes the old file: test moot"
    saved = json.loads((whole / "processor_config.json").read_text())["feature_extractor"]
    assert saved["do_normalize"] is do_normalize
    read = read_checkpoint(whole)
    assert read.metadata == read_checkpoint(separate).metadata
    assert json.loads(read.metadata["orthograd.data"]) == {"audio_normalize": "utterance" if do_normalize else "none"}
    edit_json(whole / "processor_config.json", feature_extractor={**saved, "sampling_rate": 0})
    with pytest.raises(CheckpointError, match=r"processor_config.json: 'sampling_rate' is 0"):
        read_checkpoint(whole)


def test_a_metadata_entry_that_is_not_a_number_is_a_checkpoint_error(trained_model, tmp_path, cli):
    from orthograd_cli.models.checkpoint import save_checkpoint

    original = read_checkpoint(trained_model)
    bad = tmp_path / "bad.safetensors"
    save_checkpoint(original.state_dict, bad, {**original.metadata, "orthograd.num_classes": "ten"})
    (tmp_path / "unused.csv").write_text("path,label\n")  # exists: a missing one is reported before the model
    result = cli("evaluate", bad, "--test", tmp_path / "unused.csv")
    assert result.code == 3 and "'orthograd.num_classes' is 'ten'" in result.err and result.err.count("\n") == 1


def test_an_unknown_state_dict_without_an_architecture_says_so(trained_model, digits, tmp_path, cli):
    """One extra key: no common architecture matches, and guessing must not fail on the way (regnet cannot be
    built on the meta device)."""
    from orthograd_cli.models.checkpoint import save_checkpoint

    original = read_checkpoint(trained_model)
    bad = tmp_path / "extra.safetensors"
    save_checkpoint({**original.state_dict, "extra.weight": torch.zeros(3)}, bad, {})
    result = cli("evaluate", bad, "--forget", digits / "sample/forget.csv")
    assert result.code == 3 and "no architecture given" in result.err and result.err.count("\n") == 1, result.err
