"""A tiny Whisper for `orthograd demo asr --model whisper` and the tests: built offline from config objects,
its tokenizer trained on the corpus' transcripts, trained on the espeak digit corpus, saved as a Hugging Face
model folder (config, generation config, feature extractor, tokenizer, weights) as a user would hold one.

Sizes: width 64, 2 encoder and 2 decoder layers, 80 mel bins; the feature window (`chunk_length`) is the
corpus' longest utterance rounded up to whole seconds (3 s here, `max_source_positions` 150, instead of
Whisper's 30 s and 1500), so that the encoder does not spend its time on silence.
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

from orthograd_cli.data.speech import SAMPLE_RATE

SPECIAL_TOKENS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
                  "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
BPE_VOCAB = 300  # 256 bytes and the merges that make the digit words whole tokens
TINY = {"d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
        "decoder_attention_heads": 4, "encoder_ffn_dim": 256, "decoder_ffn_dim": 256, "num_mel_bins": 80,
        "max_target_positions": 32, "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0}
# Small batches, a modest step: with batches of 16 at 3e-3 the decoder sat on its language-model plateau
# (loss ≈ 2) for good in some seeds (test WER 0.75 for seed 2 after 60 epochs, 0.53 for seed 3 with batches
# of 8); batches of 4 at 1e-3 reached test WER 0.012–0.023 in 45 epochs for every seed tried (0, 1, 3, 4).
EPOCHS, BATCH_SIZE, LR = 45, 4, 1e-3
RECIPE = "whisper_espeak_speaker"


def corpus_transcripts_and_seconds(manifest: Path) -> tuple[list[str], float]:
    """A manifest's transcripts and its longest recording in seconds."""
    import soundfile as sf

    with open(manifest) as handle:
        rows = list(csv.DictReader(handle))
    longest = max(sf.info(str(manifest.parent / row["path"])).duration for row in rows)
    return [row["transcript"] for row in rows], longest


def build_tiny_whisper(folder: Path, transcripts: list[str], seconds: float, seed: int = 0, sizes: dict = TINY):
    """An untrained WhisperForConditionalGeneration folder whose window holds `seconds` of audio (`sizes`: config
    keyword arguments, the demo's by default)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # Whisper's pre-tokenisation
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(transcripts, trainers.BpeTrainer(
        vocab_size=BPE_VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    bpe.model.save(str(folder))  # vocab.json, merges.txt
    tokenizer = transformers.WhisperTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})  # <|endoftext|> is there
    tokenizer.set_prefix_tokens(language="en", task="transcribe", predict_timestamps=False)
    ids = dict(zip(SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS)))
    chunk = math.ceil(seconds)
    extractor = transformers.WhisperFeatureExtractor(feature_size=sizes["num_mel_bins"], sampling_rate=SAMPLE_RATE,
                                                     chunk_length=chunk)
    end = ids["<|endoftext|>"]
    config = transformers.WhisperConfig(
        vocab_size=len(tokenizer), max_source_positions=extractor.nb_max_frames // 2, pad_token_id=end,
        bos_token_id=end, eos_token_id=end, decoder_start_token_id=ids["<|startoftranscript|>"],
        suppress_tokens=[], begin_suppress_tokens=[end], **sizes)
    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(config)
    model.save_pretrained(str(folder))
    # what a published Whisper's generation_config.json says, so that Whisper's own generate can use it
    # (save_pretrained writes one derived from config.json, without the language and task tables)
    transformers.GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id, bos_token_id=end, eos_token_id=end, pad_token_id=end,
        max_length=config.max_target_positions, suppress_tokens=[], begin_suppress_tokens=[end],
        lang_to_id={"<|en|>": ids["<|en|>"]}, is_multilingual=True,
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"]).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    extractor.save_pretrained(str(folder))
    return model


def whisper_checkpoint(corpus: Path, train_manifest: str = "train.csv", name: str = "whisper_digits", seed: int = 0,
                       epochs: int = EPOCHS, progress=None) -> Path:
    """A tiny Whisper folder trained on `corpus/train_manifest`, cached beside the corpus (written under a
    temporary name and renamed when complete)."""
    from orthograd_cli.loading import load_set
    from orthograd_cli.models.checkpoint import read_checkpoint
    from orthograd_cli.models.registry import load_model, resolve_model_info
    from orthograd_cli.recipe import Recipe
    from orthograd_cli.tasks.asr_seq2seq import TASK, quiet_transformers
    from orthograd_cli.training import train_speech

    folder = corpus / f"{name}_seed{seed}"
    if (folder / "model.safetensors").is_file():
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    transcripts, seconds = corpus_transcripts_and_seconds(corpus / "train.csv")  # one window for the whole corpus
    with quiet_transformers():
        build_tiny_whisper(tmp, transcripts, seconds, seed)
    checkpoint = read_checkpoint(tmp)
    info = resolve_model_info(checkpoint)
    train = load_set(corpus / train_manifest, info, Recipe(), "train")
    model = train_speech(load_model(checkpoint, info), train, TASK.mean_loss, lambda item: len(item[1]), epochs,
                         BATCH_SIZE, LR, seed, progress=progress)
    generation = (tmp / "generation_config.json").read_bytes()
    with quiet_transformers():
        model.save_pretrained(str(tmp))
    (tmp / "generation_config.json").write_bytes(generation)  # the folder's own, not one derived from config.json
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder
