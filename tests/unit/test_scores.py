"""UIS and the loss-based MIA against values worked out by hand."""

import numpy as np
import pytest

from orthograd_cli.metrics.scores import mia_logreg_loss_cv, unlearning_impact_score


def test_sample_wise_uis_follows_the_paper_formula():
    # O_t=0.9, U_t=0.85, U_u=0.95: ½(0.05 + 0.05)/0.9
    assert unlearning_impact_score(0.9, 0.85, 0.95, "sample") == pytest.approx(0.05 / 0.9, abs=1e-12)


def test_class_wise_uis_counts_remaining_forget_accuracy():
    # O_t=0.8, U_t=0.8, U_u=0.1: ½(0 + 0.1)/0.8
    assert unlearning_impact_score(0.8, 0.8, 0.1, "class") == pytest.approx(0.0625, abs=1e-12)
    assert unlearning_impact_score(0.8, 0.8, 0.0, "class") == 0.0


def test_mia_is_near_chance_for_one_distribution_and_near_one_for_separated_losses():
    rng = np.random.default_rng(0)
    same = mia_logreg_loss_cv(rng.exponential(0.1, 400), rng.exponential(0.1, 400))
    apart = mia_logreg_loss_cv(rng.exponential(0.001, 400), rng.exponential(1.0, 400))
    assert 0.4 < same < 0.6
    assert apart > 0.9
    assert mia_logreg_loss_cv([0.1, 0.2], [0.3, 0.4]) is None


def test_sharded_scores_combine_to_the_whole_sets_score(trained_model, recipe, image_sets):
    """Evaluation over several processes scores consecutive parts and combines them (Task.combine): the
    same accuracy and per-sample losses, in order, as scoring the whole set at once."""
    import torch

    from orthograd_cli.loading import load_checkpoint_and_info
    from orthograd_cli.models.registry import load_model
    from orthograd_cli.tasks.classification import TASK

    checkpoint, info = load_checkpoint_and_info(trained_model, recipe)
    model = load_model(checkpoint, info).eval()
    test = image_sets["test"]
    whole = TASK.score(model, test, 64, "cpu")
    parts = [TASK.score(model, test.subset(share), 64, "cpu") for share in torch.arange(len(test)).tensor_split(3)]
    combined = TASK.combine(parts)
    assert combined.n == whole.n == len(test)
    assert combined.accuracy == pytest.approx(whole.accuracy, abs=1e-7)  # the whole's is a float32 ratio
    assert torch.allclose(combined.losses, whole.losses, rtol=1e-5, atol=1e-6)  # other batch sizes, same samples


def test_speech_parts_combine_to_the_corpus_wer():
    """Corpus WER is total edits over total reference words: parts weighted by their words give jiwer's figure
    for the whole corpus (not the mean of the parts' WERs)."""
    import jiwer
    import torch

    from orthograd_cli.tasks.asr import TASK, word_error_rate
    from orthograd_cli.tasks.base import SetResult

    references = ["one two three", "four five", "six seven eight nine", "ten", "one one two"]
    hypotheses = ["one two", "four five six", "six seven eight nine", "tin", "one two"]
    parts = []
    for rows in ([0, 1], [2], [3, 4]):
        refs, hyps = [references[i] for i in rows], [hypotheses[i] for i in rows]
        wer = word_error_rate(refs, hyps)
        parts.append(SetResult(n=len(rows), accuracy=max(0.0, 1 - wer), losses=torch.zeros(len(rows)),
                               extra={"wer": wer}, weight=sum(len(r.split()) for r in refs)))
    combined = TASK.combine(parts)
    assert combined.extra["wer"] == pytest.approx(jiwer.wer(references, hypotheses), abs=1e-12)
    assert combined.accuracy == pytest.approx(1 - jiwer.wer(references, hypotheses), abs=1e-12)
    assert combined.extra["wer"] != pytest.approx(sum(p.extra["wer"] for p in parts) / 3)
