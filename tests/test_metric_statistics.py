"""Per-sentence metric statistics: their sums give exactly the corpus F1 and BLEU the trainer reports, so a
bootstrap that resamples them recomputes the corpus metric on each resample."""

import random

import numpy as np
import pytest

from trainer.config import resolve_data_dir
from trainer.data.conll import read_conll
from trainer.data.ding import fetch_ding_de_en
from trainer.metrics import (
    bleu_from_statistics,
    bleu_statistics,
    corpus_bleu,
    f1_from_statistics,
    span_f1,
    span_statistics,
)

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]


def corrupted(tags: list[str], rng: random.Random) -> list[str]:
    return [rng.choice(TAGS) if rng.random() < 0.15 else tag for tag in tags]


def test_summed_span_statistics_give_seqeval_f1_on_real_dev_tags(conll2003_en):
    rng = random.Random(0)
    gold = [list(s.tags) for s in read_conll(conll2003_en["dev"])]
    predicted = [corrupted(tags, rng) for tags in gold]
    statistics = span_statistics(gold, predicted)
    assert statistics.shape == (len(gold), 3)
    assert f1_from_statistics(statistics.sum(axis=0)) == pytest.approx(span_f1(gold, predicted), abs=1e-9)


def test_span_statistics_of_a_subset_give_the_f1_of_that_subset(conll2003_en):
    rng = random.Random(1)
    gold = [list(s.tags) for s in read_conll(conll2003_en["dev"])][:400]
    predicted = [corrupted(tags, rng) for tags in gold]
    chosen = [rng.randrange(len(gold)) for _ in range(len(gold))]  # a resample, repeats included
    statistics = span_statistics(gold, predicted)
    resampled_f1 = span_f1([gold[i] for i in chosen], [predicted[i] for i in chosen])
    assert f1_from_statistics(statistics[chosen].sum(axis=0)) == pytest.approx(resampled_f1, abs=1e-9)


def test_summed_bleu_statistics_give_corpus_bleu_on_real_references():
    references = fetch_ding_de_en(resolve_data_dir(None))["valid.en"].read_text(encoding="utf-8").splitlines()
    hypotheses = [" ".join(line.split()[::-1]) if n % 4 == 0 else line for n, line in enumerate(references)]
    statistics = bleu_statistics(hypotheses, references)
    assert statistics.shape == (len(references), 10)
    assert bleu_from_statistics(statistics.sum(axis=0)) == pytest.approx(corpus_bleu(hypotheses, references))


def test_no_spans_at_all_is_f1_zero():
    assert f1_from_statistics(np.zeros(3)) == 0.0
