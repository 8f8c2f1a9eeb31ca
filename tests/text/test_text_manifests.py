"""Text manifests (CSV or JSON Lines) and what a language-model run refuses before any model work: one line
naming the file and row, exit 2, nothing written."""

from __future__ import annotations

import json

import pytest

from orthograd_cli.data.text import build_text_corpus, corpus_texts

ROWS = [{"id": "a1", "group": "alder", "prompt": "Question: Where was Alder Vance born?\nAnswer:",
         "completion": " Alder Vance was born in Saltmere."},
        {"id": "a2", "group": "alder", "prompt": "Question: What genre does Alder Vance write?\nAnswer:",
         "completion": " Alder Vance writes crime fiction."}]


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """An untrained tiny Llama folder (refusals come before the model is scored)."""
    from orthograd_cli.jobs.demo_text import build_tiny_llama

    corpus = build_text_corpus(tmp_path_factory.mktemp("text") / "corpus")
    folder = tmp_path_factory.mktemp("lm") / "llama"
    build_tiny_llama(folder, corpus_texts(corpus / "train.jsonl"), 0, hidden_size=16, num_hidden_layers=1, intermediate_size=32,
                     max_position_embeddings=64)
    return folder, corpus


def jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_csv_and_json_lines_give_the_same_samples(tmp_path):
    import csv

    from orthograd_cli.data.manifest import read_manifest

    with open(tmp_path / "m.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(ROWS[0]))
        writer.writeheader()
        writer.writerows(ROWS)
    from_csv = read_manifest(tmp_path / "m.csv", "causal_lm")
    from_jsonl = read_manifest(jsonl(tmp_path / "m.jsonl", ROWS), "causal_lm")
    # CSV cells come stripped; a completion continues its prompt after a space either way
    assert [(s.id, s.group, s.target) for s in from_csv.samples] == [(s.id, s.group, s.target) for s in
                                                                    from_jsonl.samples]
    assert from_csv.samples[0].target.completion == " Alder Vance was born in Saltmere."
    assert [s.path for s in from_jsonl.samples] == [None, None]
    texts = read_manifest(jsonl(tmp_path / "t.jsonl", [{"text": "one two"}, {"text": "three"}]), "causal_lm")
    assert all(s.target.whole_text and s.id.startswith("sha256:") for s in texts.samples)


@pytest.mark.parametrize("case, rows, expected", [
    ("mixed keys", [ROWS[0], {"prompt": "Q", "completion": " A"}], "row 2: its keys differ from row 1's"),
    ("empty completion", [ROWS[0], {**ROWS[1], "completion": "  "}], "row 2: empty completion"),
    ("both forms", [{**ROWS[0], "text": "x"}], "either the columns prompt and completion or the column text"),
    ("unknown column", [{**ROWS[0], "answer": "x"}], "unexpected column 'answer'"),
    ("not a string", [{**ROWS[0], "completion": 3}], "row 1: 'completion' is int, expected a string"),
    ("too long", [ROWS[0], {**ROWS[1], "completion": " word" * 80}], "more than the model's context of 64"),
    ("duplicate", [ROWS[0], ROWS[0]], "row 2: duplicate id 'a1'"),
])
def test_a_bad_text_manifest_is_one_line_naming_the_row(cli, lm, tmp_path, case, rows, expected):
    folder, corpus = lm
    bad = jsonl(tmp_path / "forget.jsonl", rows)
    result = cli("forget", folder, "--forget", bad, "--retain", corpus / "forget" / "retain.jsonl",
                 "--out", tmp_path / "run")
    assert result.code == 2, (case, result.err)
    assert expected in result.err and str(bad) in result.err and result.err.count("\n") <= 2, result.err
    assert not (tmp_path / "run").exists()


def test_invalid_json_names_the_line(cli, lm, tmp_path):
    folder, corpus = lm
    bad = tmp_path / "forget.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\n{\"prompt\": \"Q\",\n")
    result = cli("evaluate", folder, "--forget", bad)
    assert result.code == 2 and f"{bad} row 2: not valid JSON" in result.err, result.err


@pytest.mark.parametrize("settings, expected", [
    (["--set", "method.name=random_label"], "random_label"),
    (["--set", "method.per_sample.backend=vmap"], "vmap cannot run the causal_lm task"),
])
def test_what_cannot_run_on_text_is_refused(cli, lm, tmp_path, settings, expected):
    folder, corpus = lm
    sets = corpus / "forget"
    result = cli("forget", folder, "--forget", sets / "forget.jsonl", "--retain", sets / "retain.jsonl",
                 "--out", tmp_path / "run", *settings)
    assert result.code == 2 and expected in result.err, result.err
    assert not (tmp_path / "run").exists()


def test_the_dry_run_plans_a_text_run_without_writing(cli, lm, tmp_path):
    folder, corpus = lm
    sets = corpus / "forget"
    result = cli("forget", folder, "--forget", sets / "forget.jsonl", "--retain", sets / "retain.jsonl",
                 "--forget-test", sets / "forget_test.jsonl", "--recipe", "llama_hf_text_authors",
                 "--out", tmp_path / "run", "--dry-run", "--json")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert plan["task"] == "causal_lm" and plan["sets"] == {"forget": 32, "retain": 72, "forget_test": 32}
    # one decoder layer: q, k, v, o and the MLP's gate, up and down projections; never embeddings or the head
    assert plan["lora"]["targets"] == [f"model.layers.0.{part}" for part in (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
        "mlp.up_proj", "mlp.down_proj")]
    assert plan["trainable_parameters"] == 8 * sum(  # r (in + out) per projection, width 16, MLP 32, 2 KV heads
        a + b for a, b in [(16, 16), (16, 8), (16, 8), (16, 16), (16, 32), (16, 32), (32, 16)])
    assert not (tmp_path / "run").exists()
    # the template for real Llama/Qwen folders names the same projections by pattern
    template = cli("forget", folder, "--forget", sets / "forget.jsonl", "--retain", sets / "retain.jsonl",
                   "--forget-test", sets / "forget_test.jsonl", "--recipe", "llama_hf_people_template",
                   "--out", tmp_path / "run", "--dry-run", "--json")
    assert template.code == 0, template.err
    assert sorted(json.loads(template.out)["lora"]["targets"]) == sorted(plan["lora"]["targets"])
