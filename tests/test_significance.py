"""The bootstrap of orchestrator/significance.py on constructed per-sentence statistics with known answers."""

import numpy as np
import pytest

from orchestrator.significance import Resamples, interval, paired_comparison, restart_comparison, restart_interval
from trainer.metrics import f1_from_statistics


def tagger(correct_share: float, sentences: int = 500, spans: int = 4, seed: int = 0) -> np.ndarray:
    """Span statistics of a tagger that finds each of `spans` gold spans per sentence with this probability
    (and predicts nothing else)."""
    found = np.random.default_rng(seed).binomial(spans, correct_share, size=sentences)
    return np.stack([found, found, np.full(sentences, spans)], axis=1)


def test_identical_systems_differ_by_exactly_zero_with_p_one():
    system = tagger(0.7)
    comparison = paired_comparison(system, system.copy(), f1_from_statistics, Resamples.draw(len(system)))
    assert (comparison.difference.estimate, comparison.difference.low, comparison.difference.high) == (0, 0, 0)
    assert comparison.p_value == 1.0
    assert comparison.verdict == "indistinguishable"


def test_a_clearly_better_system_has_an_interval_above_zero_and_a_small_p():
    better, baseline = tagger(0.9, seed=1), tagger(0.6, seed=2)
    comparison = paired_comparison(better, baseline, f1_from_statistics, Resamples.draw(len(better)))
    assert comparison.difference.low > 0
    assert comparison.p_value < 0.01
    assert comparison.verdict == "better than CE"


def test_a_clearly_worse_system_is_called_worse():
    worse, baseline = tagger(0.5, seed=3), tagger(0.8, seed=4)
    comparison = paired_comparison(worse, baseline, f1_from_statistics, Resamples.draw(len(worse)))
    assert comparison.difference.high < 0 and comparison.verdict == "worse than CE"


def test_two_draws_of_the_same_tagger_are_indistinguishable():
    first, second = tagger(0.7, seed=5), tagger(0.7, seed=6)
    comparison = paired_comparison(first, second, f1_from_statistics, Resamples.draw(len(first)))
    assert comparison.difference.low < 0 < comparison.difference.high
    assert comparison.p_value > 0.05
    assert comparison.verdict == "indistinguishable"


def test_the_score_interval_holds_the_score_on_all_sentences_and_narrows_with_more_sentences():
    small, large = tagger(0.7, sentences=200), tagger(0.7, sentences=5000)
    narrow = interval(large, f1_from_statistics, Resamples.draw(len(large)))
    wide = interval(small, f1_from_statistics, Resamples.draw(len(small)))
    assert narrow.low <= narrow.estimate <= narrow.high
    assert narrow.estimate == pytest.approx(f1_from_statistics(large.sum(axis=0)))
    assert narrow.high - narrow.low < wide.high - wide.low


def test_resamples_draw_every_sentence_count_to_the_corpus_size():
    weights = Resamples.draw(300, resamples=50, seed=7).weights
    assert weights.shape == (50, 300) and (weights.sum(axis=1) == 300).all()


# --- the two-level bootstrap: restarts, then sentences ----------------------------------------------------------


def restarts(*shares: float, sentences: int = 500) -> np.ndarray:
    """(R, N, S): one tagger per restart, each finding gold spans with its own probability (its seed's luck)."""
    return np.stack([tagger(share, sentences=sentences, seed=10 + r) for r, share in enumerate(shares)])


def test_restarts_that_agree_give_the_interval_of_one_over_sentences():
    same = np.stack([tagger(0.7)] * 3)
    draws = Resamples.draw(500)
    over_restarts = restart_interval(same, f1_from_statistics, draws, np.random.default_rng(0))
    over_sentences = interval(same[0], f1_from_statistics, draws)
    assert over_restarts == over_sentences


def test_seed_variance_widens_the_interval_around_the_mean_over_restarts():
    spread = restarts(0.5, 0.7, 0.9)
    draws = Resamples.draw(500)
    two_level = restart_interval(spread, f1_from_statistics, draws, np.random.default_rng(0))
    scores = [f1_from_statistics(r.sum(axis=0)) for r in spread]
    assert two_level.estimate == pytest.approx(np.mean(scores))
    for one in spread:
        single = interval(one, f1_from_statistics, draws)
        assert two_level.high - two_level.low > 2 * (single.high - single.low)


def test_one_lucky_restart_beats_the_baseline_but_the_configuration_does_not():
    lucky, steady = restarts(0.9, 0.5, 0.5), restarts(0.7, 0.7, 0.7)
    draws = Resamples.draw(500)
    chosen = paired_comparison(lucky[0], steady[0], f1_from_statistics, draws)
    seeds = restart_comparison(lucky, steady, f1_from_statistics, draws, np.random.default_rng(0))
    assert chosen.verdict == "better than CE"
    assert seeds.verdict == "indistinguishable" and seeds.difference.low < 0 < seeds.difference.high


def test_a_configuration_better_at_every_seed_is_better():
    better, baseline = restarts(0.85, 0.86, 0.87), restarts(0.6, 0.62, 0.64)
    comparison = restart_comparison(better, baseline, f1_from_statistics, Resamples.draw(500), np.random.default_rng(0))
    assert comparison.difference.low > 0 and comparison.p_value < 0.01 and comparison.verdict == "better than CE"


def test_a_configuration_against_itself_differs_by_zero_at_every_restart_draw_with_p_one():
    same = restarts(0.6, 0.7)
    comparison = restart_comparison(
        same, same.copy(), f1_from_statistics, Resamples.draw(500), np.random.default_rng(0)
    )
    assert comparison.difference.estimate == 0 and comparison.p_value > 0.05
    assert comparison.verdict == "indistinguishable"
