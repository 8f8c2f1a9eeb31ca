"""Forgetting 4 of 40 made-up authors from the `orthograd demo text` Llama: OrthoGrad (the shipped recipe
llama_hf_text_authors) and NegGrad+ (the same recipe, method.name=neggrad_plus) over unlearning seeds, each against
the Llama retrained without the 4 authors; then the per-sample gradient backends on that model side by side
(hooks: one batched backward; loop: one backward per sample), k retain rows of the recipe's LoRA.

Run: python benchmarks/text_forget.py CORPUS [SEEDS]  (CORPUS: ~/.cache/orthograd/demo/text after
`orthograd demo text`, or the tests' cache; it holds forget/ and the two model folders)."""

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "orthograd"


def forget(corpus: Path, out: Path, method: str, seed: int) -> dict:
    sets = corpus / "forget"
    done = subprocess.run([str(BIN), "forget", corpus / "llama_authors_seed0", "--forget", sets / "forget.jsonl",
                           "--retain", sets / "retain.jsonl", "--test", sets / "test.jsonl", "--forget-test",
                           sets / "forget_test.jsonl", "--reference", corpus / "llama_authors_retrained_seed0",
                           "--recipe", "llama_hf_text_authors", "--set", f"method.name={method}", "--set",
                           f"seed={seed}", "--out", out, "--json", "--quiet"], capture_output=True, text=True)
    assert done.returncode in (0, 5), done.stderr
    return json.loads(done.stdout)


def per_sample_seconds(corpus: Path, k: int = 16, repeats: int = 3) -> dict:
    import torch

    from orthograd_cli.gradients.per_sample import per_sample_grads
    from orthograd_cli.loading import load_set
    from orthograd_cli.models.checkpoint import read_checkpoint
    from orthograd_cli.models.lora import wrap_with_lora
    from orthograd_cli.models.registry import load_model, resolve_model_info
    from orthograd_cli.recipe import Recipe
    from orthograd_cli.tasks import causal_lm

    checkpoint = read_checkpoint(corpus / "llama_authors_seed0")
    info = resolve_model_info(checkpoint)
    model = load_model(checkpoint, info)
    model = wrap_with_lora(model, 8, 16, info.source.default_lora_targets(model)).eval()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    batch = load_set(corpus / "forget" / "retain.jsonl", info, Recipe()).batch(torch.arange(k))
    times = {"hooks": [], "loop": []}
    for _ in range(repeats):  # interleaved
        for backend in times:
            start = time.perf_counter()
            per_sample_grads(model, params, *batch, causal_lm.mean_loss, backend)
            times[backend].append(time.perf_counter() - start)
    return {backend: min(values) for backend, values in times.items()}


def main() -> None:
    corpus = Path(sys.argv[1])
    seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    value = lambda run, when, name: run["metrics"][when][name]["value"]  # noqa: E731
    print("| method | seed | forget ROUGE-L | unseen authors | retrained on forget | test ROUGE-L | forget-loss EMD "
          "to retrained | mia_loss_auc | steps | wall s | exit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        for method in ("orthograd", "neggrad_plus"):
            for seed in range(seeds):
                run = forget(corpus, Path(scratch) / f"{method}-{seed}", method, seed)
                rows.setdefault(method, []).append(run)
                print(f"| {method} | {seed} | {value(run, 'before', 'forget_acc'):.3f} → "
                      f"{value(run, 'after', 'forget_acc'):.3f} | {value(run, 'before', 'forget_test_acc'):.3f} | "
                      f"{run['reference_metrics']['forget_acc']['value']:.3f} | "
                      f"{value(run, 'before', 'test_acc'):.3f} → {value(run, 'after', 'test_acc'):.3f} | "
                      f"{value(run, 'before', 'forget_loss_emd'):.2f} → {value(run, 'after', 'forget_loss_emd'):.2f}"
                      f" | {value(run, 'before', 'mia_loss_auc'):.3f} → {value(run, 'after', 'mia_loss_auc'):.3f} | "
                      f"{run['steps']} | {run['wall_s']:.0f} | {'ok' if run['verdict']['passed'] else 'NOT met'} |",
                      flush=True)
    for method, runs in rows.items():
        gaps = [abs(value(r, "after", "forget_acc") - value(r, "before", "forget_test_acc")) for r in runs]
        drops = [value(r, "before", "test_acc") - value(r, "after", "test_acc") for r in runs]
        print(f"{method}: |forget − unseen| mean {statistics.mean(gaps):.3f} (max {max(gaps):.3f}); test ROUGE-L drop "
              f"mean {statistics.mean(drops):.3f} (max {max(drops):.3f})")
    seconds = per_sample_seconds(corpus)
    print(f"per-sample gradients, k = 16 retain rows, LoRA r 8 on 28 projections: hooks {seconds['hooks']:.3f} s, "
          f"loop {seconds['loop']:.3f} s, loop / hooks = {seconds['loop'] / seconds['hooks']:.1f}×")


if __name__ == "__main__":
    main()
