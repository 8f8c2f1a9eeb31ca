"""Tiny Hugging Face model folders built offline from config objects (as mergekit's tests do): the
config, the weights via save_pretrained and the processor files a real folder has. Nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

SPEECH_SAMPLE_RATE = 16_000


def ctc_tokens(vocab: list[str]) -> dict[str, int]:
    """The tool's CTC vocabulary (blank first, space as word boundary) as a Wav2Vec2CTCTokenizer's vocab.json,
    upper-cased like most published English CTC models, with <unk> last."""
    tokens = ["<pad>"] + ["|" if t == " " else t.upper() for t in vocab[1:]] + ["<unk>"]
    return {token: i for i, token in enumerate(tokens)}


def tiny_wav2vec2(folder: Path, vocab: list[str], do_normalize: bool = True, seed: int = 0, model_class="Wav2Vec2ForCTC"):
    """A random-init Wav2Vec2ForCTC (or HubertForCTC) folder: layer-norm feature extractor (takes an attention mask),
    2 transformer layers of width 64; its feature extractor and tokenizer saved beside it. Returns the model."""
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    tokens = ctc_tokens(vocab)
    (folder / "vocab.json").write_text(json.dumps(tokens))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), pad_token="<pad>", unk_token="<unk>",
                                                  word_delimiter_token="|", do_lower_case=False)
    extractor = transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SPEECH_SAMPLE_RATE,
                                                      padding_value=0.0, do_normalize=do_normalize,
                                                      return_attention_mask=True)
    config_class = transformers.HubertConfig if model_class == "HubertForCTC" else transformers.Wav2Vec2Config
    config = config_class(vocab_size=len(tokens), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=128, conv_dim=(64, 64, 64, 64), conv_stride=(5, 4, 4, 4),
                          conv_kernel=(10, 4, 4, 4), conv_bias=True, feat_extract_norm="layer",
                          do_stable_layer_norm=True, num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=4,
                          pad_token_id=0, mask_time_prob=0.0, layerdrop=0.0, hidden_dropout=0.0,
                          attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0,
                          ctc_loss_reduction="mean")
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(config)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    extractor.save_pretrained(str(folder))
    return model


def tiny_vit(folder: Path, num_labels: int = 10, image_size: int = 32, seed: int = 0):
    """A random-init ViTForImageClassification folder (2 layers, width 64, 8-px patches) with its image processor."""
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    config = transformers.ViTConfig(image_size=image_size, patch_size=8, hidden_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=128, num_labels=num_labels,
                                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                    id2label={i: str(i) for i in range(num_labels)},
                                    label2id={str(i): i for i in range(num_labels)})
    torch.manual_seed(seed)
    model = transformers.ViTForImageClassification(config)
    model.save_pretrained(str(folder))
    transformers.ViTImageProcessor(size={"height": image_size, "width": image_size}, image_mean=[0.4, 0.4, 0.4],
                                   image_std=[0.3, 0.3, 0.3]).save_pretrained(str(folder))
    return model


def trained_wav2vec2(folder: Path, corpus: Path, epochs: int = 10, seed: int = 0) -> Path:
    """tiny_wav2vec2 trained (by the tool's own CTC loop, on waveforms normalised as its saved feature extractor
    says) on every voice of the espeak corpus (about 2 minutes)."""
    from orthograd_cli.data.speech import vocabulary
    from orthograd_cli.training import train_ctc

    return trained_in_place(folder, lambda f: tiny_wav2vec2(f, vocabulary(), seed=seed), corpus / "train.csv",
                            lambda model, data: train_ctc(model, data, epochs=epochs, batch_size=8, lr=2e-3, seed=seed))


def trained_in_place(folder: Path, build, manifest: Path, train) -> Path:
    """`build` an untrained folder, train its model with `train(model, data set)` on `manifest` as the tool
    loads it (preprocessing from the folder's processor files), and save_pretrained the result into `folder`
    beside the processor files. A folder that holds a model already is returned as it is."""
    from orthograd_cli.loading import load_set
    from orthograd_cli.models.checkpoint import read_checkpoint
    from orthograd_cli.models.registry import load_model, resolve_model_info
    from orthograd_cli.recipe import Recipe, with_checkpoint_preprocessing

    if (folder / "model.safetensors").is_file():
        return folder
    build(folder / "untrained")
    checkpoint = read_checkpoint(folder / "untrained")
    info = resolve_model_info(checkpoint)
    recipe = with_checkpoint_preprocessing(Recipe(), checkpoint.meta_json("data"))
    model = train(load_model(checkpoint, info), load_set(manifest, info, recipe, "train"))
    for path in (folder / "untrained").iterdir():
        if path.name != "model.safetensors":
            path.rename(folder / path.name)
    model.save_pretrained(str(folder))
    return folder


def manifest_batches(manifest: Path, batch_size: int):
    """(rows, waveforms read with soundfile) of a speech manifest, batch by batch in manifest order."""
    import csv

    import soundfile as sf

    with open(manifest) as handle:
        rows = list(csv.DictReader(handle))
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        yield chunk, [sf.read(str(manifest.parent / row["path"]), dtype="float32")[0] for row in chunk]


def hf_ctc_transcripts(folder: Path, manifest: Path, batch_size: int) -> tuple[list[str], list[str]]:
    """(references, hypotheses) decoded independently of orthograd: the folder's own feature extractor,
    tokenizer and model class via from_pretrained, soundfile for the audio, batches in manifest order."""
    import torch
    import transformers

    extractor = transformers.Wav2Vec2FeatureExtractor.from_pretrained(str(folder))
    tokenizer = transformers.Wav2Vec2CTCTokenizer.from_pretrained(str(folder))
    model = transformers.AutoModelForCTC.from_pretrained(str(folder)).eval()
    references, hypotheses = [], []
    for chunk, audio in manifest_batches(manifest, batch_size):
        inputs = extractor(audio, sampling_rate=extractor.sampling_rate, padding=True, return_tensors="pt",
                           return_attention_mask=True)
        with torch.no_grad():
            logits = model(inputs.input_values, attention_mask=inputs.attention_mask).logits
        # frames computed from padding carry no speech: their predictions become the pad (blank) token, which
        # the tokenizer drops (decoding them reads letters into the silence of shorter utterances)
        frames = model._get_feat_extract_output_lengths(inputs.attention_mask.sum(-1))
        ids = logits.argmax(-1).masked_fill(torch.arange(logits.shape[1])[None] >= frames[:, None],
                                            tokenizer.pad_token_id)
        hypotheses += tokenizer.batch_decode(ids)
        references += [" ".join(row["transcript"].upper().split()) for row in chunk]
    return references, hypotheses


def trained_vit(folder: Path, digits: Path, epochs: int = 30, seed: int = 0) -> Path:
    """tiny_vit trained by the tool's own loop on the digits train split (about 25 s)."""
    from orthograd_cli.training import train_classifier

    return trained_in_place(folder, lambda f: tiny_vit(f, seed=seed), digits / "train.csv",
                            lambda model, data: train_classifier(model, data, epochs=epochs, batch_size=64, lr=2e-3,
                                                                 seed=seed))


def hf_whisper_transcripts(folder: Path, manifest: Path, batch_size: int) -> tuple[list[str], list[str]]:
    """(references, hypotheses) decoded independently of orthograd: the folder's own feature extractor,
    tokenizer and generation config via from_pretrained, Whisper's own `generate` (English, transcribe),
    soundfile for the audio; both sides through Whisper's basic text normaliser."""
    import torch
    import transformers
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer

    extractor = transformers.WhisperFeatureExtractor.from_pretrained(str(folder))
    tokenizer = transformers.WhisperTokenizer.from_pretrained(str(folder))
    model = transformers.WhisperForConditionalGeneration.from_pretrained(str(folder)).eval()
    normalise = BasicTextNormalizer()
    references, hypotheses = [], []
    for chunk, audio in manifest_batches(manifest, batch_size):
        features = extractor(audio, sampling_rate=extractor.sampling_rate, return_tensors="pt").input_features
        with torch.no_grad():
            ids = model.generate(features, language="en", task="transcribe")
        texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
        hypotheses += [" ".join(normalise(text).split()) for text in texts]
        references += [" ".join(normalise(row["transcript"]).split()) for row in chunk]
    return references, hypotheses
