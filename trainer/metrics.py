"""Task metrics, on the 0-100 scale the paper reports."""

from __future__ import annotations

from sacrebleu.metrics import BLEU, CHRF


def span_f1(gold: list[list[str]], predicted: list[list[str]]) -> float:
    """CoNLL span F1 (conlleval semantics: seqeval's default, non-strict mode), in percent."""
    # Imported here: seqeval pulls in scikit-learn (about 2 s), which every command line would pay at start,
    # even one that only refuses its input.
    from seqeval.metrics import f1_score

    return 100.0 * float(f1_score(gold, predicted))


def corpus_bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU with multi-bleu semantics, as the paper reports for MT (§5).

    Text arrives already tokenized and lowercased (as the IWSLT14 preparation and
    trainer.data.ding leave it), so sacrebleu must not tokenize again: tokenize='none'
    splits on whitespace only, like multi-bleu.perl. One reference per sentence;
    the same number as `sacrebleu REF -i HYP -tok none -m bleu`.
    """
    return BLEU(tokenize="none", force=True).corpus_score(hypotheses, [references]).score


def corpus_chrf(hypotheses: list[str], references: list[str]) -> float:
    """chrF (sacrebleu defaults: character 6-grams, β=2), a second column beside BLEU; same as `-m chrf`."""
    return CHRF().corpus_score(hypotheses, [references]).score
