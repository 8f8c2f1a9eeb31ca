"""`orthograd demo text`: forget a tenth of the fictitious authors a small language model learnt, nothing to
download.

The corpus (data/text.py) is question/answer pairs about made-up authors. A byte-level BPE tokenizer is
trained on it (`tokenizers`), a small Llama is built from a config (transformers) and trained until it knows
the training authors' answers, and saved as a Hugging Face folder (config, generation config, tokenizer files,
safetensors weights), as a user would hold one; a second is trained without the forgotten authors (the
reference). Both are cached. OrthoGrad then forgets the authors with the shipped recipe, the authors never
trained on serving as the forgotten ones' unseen counterpart.
"""

from __future__ import annotations

import shutil
from pathlib import Path

RECIPE = "llama_hf_text_authors"
BPE_VOCAB = 512
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
# 4 layers of width 128 memorise the 320 answers in 40 epochs (ROUGE-L 1.000 on them), about 25 s on 2 CPU cores
TINY = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 64, "tie_word_embeddings": True, "rms_norm_eps": 1e-6}
EPOCHS, BATCH_SIZE, LR = 40, 16, 3e-3


def train_tokenizer(texts: list[str], folder: Path, vocab_size: int = BPE_VOCAB):
    """A byte-level BPE tokenizer trained on `texts`, wrapped as a transformers fast tokenizer that puts <s> first."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    bos = bpe.token_to_id(SPECIAL["bos_token"])
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, **SPECIAL)
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def build_tiny_llama(folder: Path, texts: list[str], seed: int = 0, architecture: str = "llama", **sizes):
    """An untrained causal LM folder (`llama` or `gpt2`) with a tokenizer trained on `texts`."""
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, folder)
    ids = {key: tokenizer.convert_tokens_to_ids(token) for key, token in SPECIAL.items()}
    common = {"vocab_size": len(tokenizer), "bos_token_id": ids["bos_token"], "eos_token_id": ids["eos_token"],
              "pad_token_id": ids["pad_token"]}
    if architecture == "gpt2":
        config = transformers.GPT2Config(n_embd=sizes.get("hidden_size", 64), n_layer=sizes.get("num_hidden_layers", 2),
                                         n_head=4, n_positions=sizes.get("max_position_embeddings", 64),
                                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common)
        model_class = transformers.GPT2LMHeadModel
    else:
        config = transformers.LlamaConfig(**{**TINY, **sizes}, **common)
        model_class = transformers.LlamaForCausalLM
    torch.manual_seed(seed)
    model = model_class(config)
    model.save_pretrained(str(folder))
    return model


def text_checkpoint(corpus: Path, train_manifest: str = "train.jsonl", name: str = "llama_authors", seed: int = 0,
                    epochs: int = EPOCHS, progress=None, architecture: str = "llama", **sizes) -> Path:
    """A small causal LM folder trained on `corpus/train_manifest`, cached beside the corpus (written under a
    temporary name and renamed when complete). The tokenizer is trained on the whole corpus' text, so a model
    trained without some authors still spells them."""
    from orthograd_cli.data.text import corpus_texts
    from orthograd_cli.loading import load_set
    from orthograd_cli.models.checkpoint import read_checkpoint
    from orthograd_cli.models.registry import load_model, resolve_model_info
    from orthograd_cli.recipe import Recipe
    from orthograd_cli.tasks.asr_seq2seq import quiet_transformers
    from orthograd_cli.tasks.causal_lm import TASK
    from orthograd_cli.training import train_speech

    folder = corpus / f"{name}_seed{seed}"
    if (folder / "model.safetensors").is_file():
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with quiet_transformers():
        build_tiny_llama(tmp, corpus_texts(corpus), seed, architecture, **sizes)
    checkpoint = read_checkpoint(tmp)
    info = resolve_model_info(checkpoint)
    train = load_set(corpus / train_manifest, info, Recipe(), "train")
    model = train_speech(load_model(checkpoint, info), train, TASK.mean_loss, lambda item: len(item[0]), epochs,
                         BATCH_SIZE, LR, seed, progress=progress)
    with quiet_transformers():
        model.save_pretrained(str(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def run_demo_text(out_dir: Path, observer=None):
    from orthograd_cli.data.text import build_text_corpus
    from orthograd_cli.jobs.demo import cache_dir
    from orthograd_cli.jobs.forget import run_forget
    from orthograd_cli.jobs.proof import Proof
    from orthograd_cli.recipe import load_recipe
    from orthograd_cli.report import DemoReport

    corpus = build_text_corpus(cache_dir() / "text")
    checkpoint = text_checkpoint(corpus)
    reference = text_checkpoint(corpus, "train_without_forget.jsonl", name="llama_authors_retrained")
    recipe, _ = load_recipe(RECIPE)
    folder = corpus / "forget"
    manifests = {name: folder / f"{name}.jsonl" for name in ("forget", "retain", "test", "forget_test")}
    proof = Proof.of(recipe, None, "forget", reference_path=str(reference))
    run = run_forget(str(checkpoint), manifests, recipe, str(out_dir / "authors"), overwrite=True, observer=observer,
                     proof=proof)
    return DemoReport(scenario="text", checkpoint=str(checkpoint), data=str(corpus), runs={"authors": run})
