"""Task metrics, on the 0-100 scale the paper reports."""

from __future__ import annotations

from seqeval.metrics import f1_score


def span_f1(gold: list[list[str]], predicted: list[list[str]]) -> float:
    """CoNLL span F1 (conlleval semantics: seqeval's default, non-strict mode), in percent."""
    return 100.0 * f1_score(gold, predicted)
