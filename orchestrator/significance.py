"""Bootstrap intervals over test sentences, and the paired bootstrap test of a row against the baseline.

Each system is given as per-sentence metric statistics (trainer.metrics: span counts for F1, n-gram matches
and lengths for BLEU) and the function that turns their sum into the corpus score, so every resample
recomputes the corpus metric (F1, BLEU) on the resampled sentences; nothing is averaged per sentence. Paired:
both systems are scored on the same resamples, so what the interval measures is the difference itself, not
two independent noises (Koehn 2004; Berg-Kirkpatrick et al. 2012).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Score = Callable[[np.ndarray], float]  # summed statistics (S,) → corpus score


@dataclass(frozen=True)
class Resamples:
    """B resamples of N sentences, drawn with replacement, as counts: weights[b, i] = times sentence i is drawn."""

    weights: np.ndarray  # (B, N)

    @classmethod
    def draw(cls, sentences: int, resamples: int = 1000, seed: int = 0) -> Resamples:
        rng = np.random.default_rng(seed)
        return cls(rng.multinomial(sentences, np.full(sentences, 1.0 / sentences), size=resamples))

    def scores(self, statistics: np.ndarray, score: Score) -> np.ndarray:
        """(B,) the corpus score of each resample."""
        if statistics.shape[0] != self.weights.shape[1]:
            raise ValueError(f"statistics for {statistics.shape[0]} sentences, resamples of {self.weights.shape[1]}")
        return np.array([score(sums) for sums in self.weights @ statistics])


@dataclass(frozen=True)
class Interval:
    estimate: float  # on all sentences
    low: float
    high: float


@dataclass(frozen=True)
class Comparison:
    difference: Interval  # system − baseline
    p_value: float  # two-sided, of "no difference"
    verdict: str  # "better than {baseline}", "worse than {baseline}" or "indistinguishable"


def interval(statistics: np.ndarray, score: Score, resamples: Resamples, level: float = 0.95) -> Interval:
    """The corpus score with its percentile bootstrap interval."""
    low, high = np.quantile(resamples.scores(statistics, score), [(1 - level) / 2, (1 + level) / 2])
    return Interval(score(statistics.sum(axis=0)), float(low), float(high))


def paired_comparison(
    system: np.ndarray,
    baseline: np.ndarray,
    score: Score,
    resamples: Resamples,
    level: float = 0.95,
    baseline_name: str = "CE",
) -> Comparison:
    """The difference system − baseline on the same resampled sentences: its percentile interval, and the
    share of resampled differences, shifted to mean zero (the null of no difference), at least as far from
    zero as the observed one (p = 1 for identical systems). The verdict reads the interval at `level`."""
    differences = resamples.scores(system, score) - resamples.scores(baseline, score)
    observed = score(system.sum(axis=0)) - score(baseline.sum(axis=0))
    low, high = np.quantile(differences, [(1 - level) / 2, (1 + level) / 2])
    null = differences - differences.mean()
    p_value = (1 + np.sum(np.abs(null) >= abs(observed) - 1e-12)) / (len(differences) + 1)
    if low > 0:
        verdict = f"better than {baseline_name}"
    elif high < 0:
        verdict = f"worse than {baseline_name}"
    else:
        verdict = "indistinguishable"
    return Comparison(Interval(observed, float(low), float(high)), float(min(1.0, p_value)), verdict)
