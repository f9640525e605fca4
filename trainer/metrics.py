"""Task metrics, on the 0-100 scale the paper reports.

Each corpus metric also comes as per-sentence sufficient statistics and a score from their sums, so that a
bootstrap can recompute the corpus score on resampled sentences (orchestrator/report.py) without decoding
again: F1 from span counts, BLEU from n-gram matches and lengths, exactly as the corpus functions compute them.
"""

from __future__ import annotations

import numpy as np
from sacrebleu.metrics import BLEU, CHRF


def span_f1(gold: list[list[str]], predicted: list[list[str]]) -> float:
    """CoNLL span F1 (conlleval semantics: seqeval's default, non-strict mode), in percent."""
    # Imported here: seqeval pulls in scikit-learn (about 2 s), which every command line would pay at start,
    # even one that only refuses its input.
    from seqeval.metrics import f1_score

    return 100.0 * float(f1_score(gold, predicted))


def span_statistics(gold: list[list[str]], predicted: list[list[str]]) -> np.ndarray:
    """(N, 3) per sentence: spans predicted correctly (type and boundaries), predicted spans, gold spans;
    spans as `span_f1` reads them (seqeval's get_entities, conlleval semantics)."""
    from seqeval.metrics.sequence_labeling import get_entities

    rows = []
    for gold_tags, predicted_tags in zip(gold, predicted, strict=True):
        gold_spans, predicted_spans = set(get_entities(list(gold_tags))), set(get_entities(list(predicted_tags)))
        rows.append((len(gold_spans & predicted_spans), len(predicted_spans), len(gold_spans)))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def f1_from_statistics(sums: np.ndarray) -> float:
    """Span F1 in percent from summed span_statistics: 2·correct / (predicted + gold); 0 with no spans."""
    correct, predicted, gold = (float(x) for x in sums)
    return 200.0 * correct / (predicted + gold) if predicted + gold else 0.0


def bleu_statistics(hypotheses: list[str], references: list[str]) -> np.ndarray:
    """(N, 10) per sentence: hypothesis and reference length, then matched and total n-grams for n = 1..4;
    sacrebleu's own statistics (what its paired bootstrap resamples), with corpus_bleu's settings."""
    return np.array(_bleu()._extract_corpus_statistics(hypotheses, [references]), dtype=np.int64).reshape(-1, 10)


def bleu_from_statistics(sums: np.ndarray) -> float:
    return _bleu()._compute_score_from_stats([int(x) for x in sums]).score


def _bleu() -> BLEU:
    return BLEU(tokenize="none", force=True)


def corpus_bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU with multi-bleu semantics, as the paper reports for MT (§5).

    Text arrives already tokenized and lowercased (as the IWSLT14 preparation and
    trainer.data.ding leave it), so sacrebleu must not tokenize again: tokenize='none'
    splits on whitespace only, like multi-bleu.perl. One reference per sentence;
    the same number as `sacrebleu REF -i HYP -tok none -m bleu`.
    """
    return _bleu().corpus_score(hypotheses, [references]).score


def corpus_chrf(hypotheses: list[str], references: list[str]) -> float:
    """chrF (sacrebleu defaults: character 6-grams, β=2), a second column beside BLEU; same as `-m chrf`."""
    return CHRF().corpus_score(hypotheses, [references]).score


SCORE_FROM_STATISTICS = {"f1": f1_from_statistics, "bleu": bleu_from_statistics}  # by the tasks' metric names
