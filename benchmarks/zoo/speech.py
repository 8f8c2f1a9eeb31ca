"""Speech recognisers trained by code other than the tool's, for tuning and checking its defaults.

The espeak-ng digit corpus (orthograd_cli/data/speech.py: nine voices, 60 training and 12 test utterances each)
is the data; the models and their training loops are written here, not taken from the tool's `training.py`:
- torchaudio `wav2vec2_model` state dicts (plain safetensors, no metadata: the user gives the size parameters,
  the vocabulary and the waveform normalisation, as a user of such a file would), trained by a plain PyTorch loop
  (shuffled mini-batches, Adam, F.ctc_loss);
- Hugging Face Wav2Vec2ForCTC and HubertForCTC folders with their processor files (`save_pretrained`), trained by
  a Trainer-style loop (the model's own CTC loss, AdamW, warm-up then linear decay);
- Hugging Face Whisper folders, trained by a Seq2SeqTrainer-style loop (labels padded with -100, the model's own
  loss, AdamW, warm-up then linear decay).
Each forgets one voice and comes with a reference trained the same way without that voice. `split` says whether
a member may be used to tune defaults (`tune`) or only to report on them (`held_out`).

A member is built once into CACHE/<name>/ (model, reference, `member.json`) and reused.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

from benchmarks.zoo import INFO, built_before
from orthograd_cli.data.speech import DIGITS, SAMPLE_RATE, slug

LETTERS = sorted({c for word in DIGITS for c in word})
# The forgotten voices are accents the others do not cover (en, en-029, en-gb-scotland): the en-us variants are
# too alike to be worth forgetting (a Whisper and a Hubert retrained without en-us+f4 or en-us+m3 recognised
# every word of that voice's unseen utterances).
MEMBERS = {
    # torchaudio wav2vec2, 3 pre-norm layers of width 96, per-utterance normalised audio, Adam at a fixed step
    "ta_w2v2_norm_l3": dict(kind="torchaudio", layers=3, width=96, ffn=192, conv=64, normalize=True, lr=1e-3,
                            epochs=14, batch=8, seed=21, forget_voice="en+f1", split="tune"),
    # torchaudio wav2vec2, 2 layers of width 128, raw audio, wider first convolution
    "ta_w2v2_raw_l2": dict(kind="torchaudio", layers=2, width=128, ffn=256, conv=48, normalize=False, lr=1.5e-3,
                           epochs=14, batch=8, seed=22, forget_voice="en+m2", split="held_out"),
    # a Hugging Face Wav2Vec2ForCTC folder (stable layer norm, 3 layers of width 96), do_normalize
    "hf_wav2vec2_ctc": dict(kind="hf_wav2vec2", layers=3, width=96, ffn=192, conv=64, normalize=True, lr=2e-3,
                            epochs=14, batch=8, seed=23, forget_voice="en-029+f3", split="tune"),
    # a Hugging Face HubertForCTC folder (stable layer norm, 2 layers of width 112), raw audio
    "hf_hubert_ctc": dict(kind="hf_hubert", layers=2, width=112, ffn=224, conv=64, normalize=False, lr=2e-3,
                          epochs=14, batch=8, seed=24, forget_voice="en-gb-scotland+m2", split="held_out"),
    # Hugging Face Whisper folders: width 48 with 2 + 2 layers; width 64 with 3 encoder layers and 1 decoder layer
    "hf_whisper_d48": dict(kind="whisper", d_model=48, encoder_layers=2, decoder_layers=2, lr=1.5e-3, epochs=40,
                           batch=4, seed=25, forget_voice="en-029+f3", split="tune"),
    "hf_whisper_d64_e3d1": dict(kind="whisper", d_model=64, encoder_layers=3, decoder_layers=1, lr=1e-3, epochs=40,
                                batch=4, seed=26, forget_voice="en-gb-scotland+m2", split="held_out"),
}


def rows_of(manifest: Path) -> list[dict]:
    with open(manifest, newline="") as handle:
        return [{**row, "path": str((manifest.parent / row["path"]).resolve())} for row in csv.DictReader(handle)]


def waveform(path: str, normalize: bool):
    import soundfile as sf
    import torch

    audio, rate = sf.read(path, dtype="float32")
    assert rate == SAMPLE_RATE, path
    wave = torch.from_numpy(audio)
    if normalize:  # as Wav2Vec2FeatureExtractor(do_normalize=True): zero mean, unit variance
        wave = (wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7)
    return wave


def ctc_config(spec: dict) -> dict:
    """torchaudio wav2vec2_model keyword arguments for this member's size."""
    return {"extractor_mode": "layer_norm", "extractor_conv_layer_config": [[spec["conv"], 10, 5]] +
            [[spec["conv"], 4, 4]] * 3, "extractor_conv_bias": False, "encoder_embed_dim": spec["width"],
            "encoder_projection_dropout": 0.0, "encoder_pos_conv_kernel": 32, "encoder_pos_conv_groups": 4,
            "encoder_num_layers": spec["layers"], "encoder_num_heads": 4, "encoder_attention_dropout": 0.0,
            "encoder_ff_interm_features": spec["ffn"], "encoder_ff_interm_dropout": 0.0, "encoder_dropout": 0.0,
            "encoder_layer_norm_first": True, "encoder_layer_drop": 0.0}


# --- CTC models --------------------------------------------------------------------------------------------

def ctc_vocab(spec: dict) -> list[str]:
    """The member's token order: torchaudio members blank, space, letters; HF members their tokenizer's."""
    if spec["kind"] == "torchaudio":
        return ["<blank>", " "] + LETTERS
    return ["<pad>", "<unk>", "|"] + LETTERS


def new_ctc_model(spec: dict, vocab_size: int):
    import torch
    import torchaudio
    import transformers

    torch.manual_seed(spec["seed"])
    if spec["kind"] == "torchaudio":
        return torchaudio.models.wav2vec2_model(**ctc_config(spec), aux_num_out=vocab_size)
    common = dict(vocab_size=vocab_size, hidden_size=spec["width"], num_hidden_layers=spec["layers"],
                  num_attention_heads=4, intermediate_size=spec["ffn"], conv_dim=(spec["conv"],) * 4,
                  conv_stride=(5, 4, 4, 4), conv_kernel=(10, 4, 4, 4), conv_bias=False, feat_extract_norm="layer",
                  do_stable_layer_norm=True, num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=4,
                  hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
                  final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0, pad_token_id=0,
                  ctc_loss_reduction="mean", ctc_zero_infinity=True)
    if spec["kind"] == "hf_wav2vec2":
        return transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**common))
    return transformers.HubertForCTC(transformers.HubertConfig(**common))


def ctc_batch(items: list[tuple], pad_label: int):
    """(padded waves, wave lengths, attention mask, padded labels, label lengths)."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    waves, labels = zip(*items)
    lengths = torch.tensor([len(w) for w in waves])
    mask = (torch.arange(int(lengths.max()))[None] < lengths[:, None]).long()
    return (pad_sequence(list(waves), batch_first=True), lengths, mask,
            pad_sequence(list(labels), batch_first=True, padding_value=pad_label),
            torch.tensor([len(t) for t in labels]))


def ctc_loss(model, spec: dict, batch):
    import torch

    waves, lengths, mask, labels, label_lengths = batch
    if spec["kind"] == "torchaudio":
        logits, frames = model(waves, lengths)
        log_probs = logits.log_softmax(-1).transpose(0, 1)
        return torch.nn.functional.ctc_loss(log_probs, labels, frames, label_lengths, blank=0, zero_infinity=True)
    return model(waves, attention_mask=mask, labels=labels).loss


def ctc_greedy(model, spec: dict, batch, vocab: list[str]) -> list[str]:
    """Best token per frame, repeats merged, blanks dropped (the member's own decoder, for its build report)."""
    import torch

    waves, lengths, mask, _, _ = batch
    with torch.no_grad():
        if spec["kind"] == "torchaudio":
            logits, frames = model(waves, lengths)
        else:
            logits = model(waves, attention_mask=mask).logits
            frames = model._get_feat_extract_output_lengths(lengths)
    texts = []
    for row, n in zip(logits.argmax(-1), frames):
        ids = torch.unique_consecutive(row[:int(n)]).tolist()
        text = "".join(vocab[i] for i in ids if i != 0).replace("|", " ").replace("<unk>", "")
        texts.append(" ".join(text.split()))
    return texts


def schedule_of(optimizer, spec: dict, steps: int):
    """HF-style members: 10 % linear warm-up, then linear decay to zero; torchaudio members: a fixed step."""
    import torch

    if spec["kind"] == "torchaudio":
        return None
    warm = max(1, steps // 10)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: s / warm if s < warm else max(0.0, (steps - s) / (steps - warm)))


def train_ctc_member(spec: dict, rows: list[dict], vocab: list[str]):
    import torch

    index = {token: i for i, token in enumerate(vocab)}
    space = " " if spec["kind"] == "torchaudio" else "|"
    items = [(waveform(row["path"], spec["normalize"]),
              torch.tensor([index[space if c == " " else c] for c in row["transcript"]])) for row in rows]
    model = new_ctc_model(spec, len(vocab))
    generator = torch.Generator().manual_seed(spec["seed"])
    steps = spec["epochs"] * math.ceil(len(items) / spec["batch"])
    optimizer = (torch.optim.Adam if spec["kind"] == "torchaudio" else torch.optim.AdamW)(
        model.parameters(), lr=spec["lr"])
    schedule = schedule_of(optimizer, spec, steps)
    model.train()
    for _ in range(spec["epochs"]):
        for order in torch.randperm(len(items), generator=generator).split(spec["batch"]):
            loss = ctc_loss(model, spec, ctc_batch([items[i] for i in order], 0))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if schedule is not None:
                schedule.step()
    return model.eval()


def ctc_wer(model, spec: dict, rows: list[dict], vocab: list[str]) -> float:
    import torch
    from torchaudio.functional import edit_distance

    items = [(waveform(row["path"], spec["normalize"]), torch.zeros(1, dtype=torch.long)) for row in rows]
    hypotheses = []
    for start in range(0, len(items), 16):
        hypotheses += ctc_greedy(model, spec, ctc_batch(items[start:start + 16], 0), vocab)
    errors = sum(edit_distance(row["transcript"].split(), hyp.split()) for row, hyp in zip(rows, hypotheses))
    return errors / sum(len(row["transcript"].split()) for row in rows)


def save_ctc(model, spec: dict, vocab: list[str], path: Path) -> Path:
    if spec["kind"] == "torchaudio":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path.with_suffix(".safetensors")))
        return path.with_suffix(".safetensors")
    import transformers

    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    (path / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(path / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                                                  word_delimiter_token="|")
    extractor = transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                                      do_normalize=spec["normalize"], return_attention_mask=True)
    transformers.Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(str(path))
    return path


# --- Whisper -----------------------------------------------------------------------------------------------

def train_whisper_member(spec: dict, folder: Path, rows: list[dict]):
    """A Seq2SeqTrainer-style loop on an untrained folder: log-mel features from the folder's extractor, labels
    = the tokenizer's ids (prefix tokens, text, end) without the start token (the model prepends it), -100
    padding, the model's own loss, AdamW, warm-up then linear decay."""
    import torch
    import transformers

    model = transformers.WhisperForConditionalGeneration.from_pretrained(str(folder))
    extractor = transformers.WhisperFeatureExtractor.from_pretrained(str(folder))
    tokenizer = transformers.WhisperTokenizer.from_pretrained(str(folder))
    waves = [waveform(row["path"], False).numpy() for row in rows]
    features = torch.from_numpy(extractor(waves, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features)
    start = model.config.decoder_start_token_id
    labels = [torch.tensor([i for i in tokenizer(row["transcript"]).input_ids if i != start]) for row in rows]
    generator = torch.Generator().manual_seed(spec["seed"])
    steps = spec["epochs"] * math.ceil(len(rows) / spec["batch"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=0.01)
    schedule = schedule_of(optimizer, spec, steps)
    model.train()
    for _ in range(spec["epochs"]):
        for order in torch.randperm(len(rows), generator=generator).split(spec["batch"]):
            batch_labels = torch.nn.utils.rnn.pad_sequence([labels[i] for i in order], batch_first=True,
                                                           padding_value=-100)
            loss = model(input_features=features[order], labels=batch_labels).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
    return model.eval(), extractor, tokenizer


def whisper_wer(model, extractor, tokenizer, rows: list[dict]) -> float:
    import torch
    from torchaudio.functional import edit_distance

    errors = 0
    for start in range(0, len(rows), 16):
        chunk = rows[start:start + 16]
        features = extractor([waveform(row["path"], False).numpy() for row in chunk], sampling_rate=SAMPLE_RATE,
                             return_tensors="pt").input_features
        with torch.no_grad():
            ids = model.generate(features, language="en", task="transcribe", max_new_tokens=12)
        for row, text in zip(chunk, tokenizer.batch_decode(ids, skip_special_tokens=True)):
            errors += edit_distance(row["transcript"].split(), text.lower().split())
    return errors / sum(len(row["transcript"].split()) for row in rows)


def build_whisper(spec: dict, folder: Path, train_rows: list[dict], corpus: Path) -> tuple:
    """The trained Whisper saved as `folder`, and (model, extractor, tokenizer) as trained, for scoring."""
    from orthograd_cli.jobs.demo_whisper import TINY, build_tiny_whisper, corpus_transcripts_and_seconds
    from orthograd_cli.tasks.asr_seq2seq import quiet_transformers

    transcripts, seconds = corpus_transcripts_and_seconds(corpus / "train.csv")
    sizes = {**TINY, "d_model": spec["d_model"], "encoder_layers": spec["encoder_layers"],
             "decoder_layers": spec["decoder_layers"], "encoder_ffn_dim": 4 * spec["d_model"],
             "decoder_ffn_dim": 4 * spec["d_model"]}
    with quiet_transformers():
        build_tiny_whisper(folder, transcripts, seconds, spec["seed"], sizes)
        model, extractor, tokenizer = train_whisper_member(spec, folder, train_rows)
        generation = (folder / "generation_config.json").read_bytes()
        model.save_pretrained(str(folder))
    (folder / "generation_config.json").write_bytes(generation)  # the published-style one, with its tables
    return folder, model, extractor, tokenizer


# --- the member --------------------------------------------------------------------------------------------

LEARNT_WER = 0.3  # a training run that ends above this test WER stalled (CTC's blank plateau, Whisper's LM one)
ATTEMPTS = 3  # as a user would: run the training again with another seed


def train_role(spec: dict, folder: Path, role: str, rows: list[dict], scored: dict, corpus: Path) -> dict:
    """One trained model (the member's, or the reference without the voice) saved as FOLDER/ROLE, with its WER
    on the other voices' and the voice's test utterances; training that stalled is run again with another seed
    (the seeds tried are recorded). Cached in FOLDER/ROLE.json."""
    record_path = folder / f"{role}.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    started, seeds = time.perf_counter(), []
    for attempt in range(ATTEMPTS):
        seeded = {**spec, "seed": spec["seed"] + 100 * attempt}
        seeds.append(seeded["seed"])
        if spec["kind"] == "whisper":
            path, model, extractor, tokenizer = build_whisper(seeded, folder / role, rows, corpus)
            scores = {name: whisper_wer(model, extractor, tokenizer, rows) for name, rows in scored.items()}
        else:
            vocab = ctc_vocab(spec)
            model = train_ctc_member(seeded, rows, vocab)
            path = save_ctc(model, spec, vocab, folder / role)
            scores = {name: ctc_wer(model, spec, rows, vocab) for name, rows in scored.items()}
        if scores["test_wer"] <= LEARNT_WER:
            break
    record = {"path": str(path), "scores": scores, "seeds": seeds, "build_s": round(time.perf_counter() - started, 1)}
    record_path.write_text(json.dumps(record, indent=1))
    return record


def build(name: str, cache: Path, corpus: Path) -> dict:
    """The member built into CACHE/<name>/ (or read back): its files and how a user would call the tool on it."""
    folder, before = built_before(cache, name)
    if before is not None:
        return before
    spec = MEMBERS[name]
    folder.mkdir(parents=True, exist_ok=True)
    voice = corpus / "voices" / slug(spec["forget_voice"])
    scored = {"test_wer": rows_of(voice / "test.csv"), "forget_test_wer": rows_of(voice / "forget_test.csv")}
    model = train_role(spec, folder, "model", rows_of(corpus / "train.csv"), scored, corpus)
    reference = train_role(spec, folder, "retrained", rows_of(voice / "train_without.csv"), scored, corpus)
    if spec["kind"] == "whisper":
        recipe, sets = "whisper_espeak_speaker", []
    elif spec["kind"] == "torchaudio":
        # what a user of a plain state dict tells the tool: the builder's size parameters, the token order, and
        # the normalisation the model was trained with
        recipe = "wav2vec2_model_espeak_speaker"
        sets = ["model.arch=wav2vec2_model", f"model.config={json.dumps(ctc_config(spec))}",
                f"model.vocab={json.dumps(ctc_vocab(spec))}",
                f"data.audio_normalize={'utterance' if spec['normalize'] else 'none'}"]
    else:
        recipe, sets = "wav2vec2_hf_espeak_speaker", []
    info = {"name": name, "split": spec["split"], "kind": spec["kind"], "forget_voice": spec["forget_voice"],
            "model": model["path"], "reference": reference["path"], "forget": str(voice / "forget.csv"),
            "retain": str(voice / "retain.csv"), "test": str(voice / "test.csv"),
            "forget_test": str(voice / "forget_test.csv"), "recipe": recipe, "sets": sets,
            "scores": {"model": model["scores"], "retrained": reference["scores"]},
            "seeds": {"model": model["seeds"], "retrained": reference["seeds"]},
            "build_s": round(model["build_s"] + reference["build_s"], 1)}
    (folder / INFO).write_text(json.dumps(info, indent=1))
    return info


if __name__ == "__main__":  # python -m benchmarks.zoo.speech NAME CACHE CORPUS: build one member, print its scores
    import sys

    print(json.dumps(build(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])), indent=1))
