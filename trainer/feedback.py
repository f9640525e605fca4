"""What the decoder is fed as the previous token: the one place where the five procedures differ.

METHOD.md, "Training procedures": at step i the loss is always cross-entropy on
the clean logits; only the embedding fed back from step i-1 changes.

  ce           e(y*_{i-1})                                  (teacher forcing)
  ss_greedy    e(argmax s_{i-1})                            no gradient through the choice
  ss_sample    e(y ~ softmax(s_{i-1}))                      no gradient through the choice
  soft_greedy  Σ_y e(y) softmax(α s_{i-1})(y)               §3.1, gradient flows back
  soft_sample  Σ_y e(y) softmax(α (s_{i-1} + G))(y)         §3.2, G Gumbel noise

and at every (example, position) a coin with probability ε picks gold instead.
Any decoder that exposes its logits and its embedding table uses this unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainer.config import Procedure


@dataclass(frozen=True)
class Choice:
    """How one procedure turns step i-1's scores into the embedding step i is fed."""

    feeds_choice: bool  # False: always the gold token (teacher forcing)
    soft: bool = False  # a distribution over the vocabulary, differentiable, sharpened by α; else one token
    sampled: bool = False  # with noise: a sample (hard), Gumbel noise (soft); else the argmax / soft argmax


CHOICES: dict[str, Choice] = {
    "ce": Choice(feeds_choice=False),
    "ss_greedy": Choice(feeds_choice=True),
    "ss_sample": Choice(feeds_choice=True, sampled=True),
    "soft_greedy": Choice(feeds_choice=True, soft=True),
    "soft_sample": Choice(feeds_choice=True, soft=True, sampled=True),
}
SOFT_PROCEDURES = tuple(name for name, choice in CHOICES.items() if choice.soft)
HARD_PROCEDURES = tuple(name for name, choice in CHOICES.items() if choice.feeds_choice and not choice.soft)


def negative_gumbel_noise(shape: torch.Size, device: torch.device) -> torch.Tensor:
    """-G = log(-log U) for Gumbel noise G, U uniform, kept away from 0 so that -G stays finite. It is drawn at
    every step over the whole vocabulary, the soft_sample's main cost at V = 32000 (issue 18): uniform draws and
    two logs cost a fraction of what torch's `exponential_` draw of -log U costs on CPU (about 5 ms against 21 ms
    for a 32 × 32000 block at 2 threads)."""
    uniform = torch.rand(shape, device=device, dtype=torch.float32).clamp_(min=torch.finfo(torch.float32).tiny)
    return uniform.log_().neg_().log_()


def categorical_sample(scores: torch.Tensor) -> torch.Tensor:
    """One id per row drawn from softmax(scores), by inverting the cumulative distribution at one uniform draw per
    row: a softmax, a cumulative sum and a binary search, where torch.multinomial costs about 20× as much at
    32 × 32000 on CPU. Ids of probability 0 (scores at -inf) are never drawn: their cumulative value equals the
    one before them, and the search returns the first id whose cumulative value exceeds the draw."""
    cumulative = torch.softmax(scores.float(), dim=-1).cumsum_(dim=-1)
    draw = torch.rand(*scores.shape[:-1], 1, device=scores.device) * cumulative[..., -1:]
    chosen = torch.searchsorted(cumulative, draw, right=True).squeeze(-1)
    # Rounding can leave a draw at the total; the last ids may be excluded ones, so fall back to the argmax.
    return torch.where(chosen < scores.size(-1), chosen, scores.argmax(dim=-1))


class FeedbackPolicy:
    """Chooses the previous-token embedding for each decoder step during training.

    `excluded_ids` (padding, start symbol) can never be chosen: their logits are
    set to -inf on the fed-back path only. `top_k` truncates the soft vector to
    the k largest scores (a memory remedy at vocabulary 32000, METHOD.md).
    """

    def __init__(self, procedure: Procedure, excluded_ids: tuple[int, ...] = (), top_k: int | None = None):
        self.procedure = procedure
        self.choice = CHOICES[procedure]
        self.excluded_ids = tuple(excluded_ids)
        self.top_k = top_k
        self._excluded: dict[tuple, torch.Tensor] = {}  # (V, device) -> (V,) 0, or -inf at the excluded ids

    def fusable(self) -> bool:
        """Whether a decoder may compute what `next_input` feeds from `choice_weights` alone (trainer/unroll.py):
        not for a subclass that changes or watches `next_input` (a test's, recording what it is handed)."""
        return type(self).next_input is FeedbackPolicy.next_input

    def always_gold(self, gold_probability: float) -> bool:
        """Whether every position is fed the gold token (teacher forcing), so nothing depends on the logits."""
        return not self.choice.feeds_choice or gold_probability >= 1.0

    def gold_coins(self, shape: tuple[int, ...], gold_probability: float, device: torch.device) -> torch.Tensor | None:
        """The gold/model coin of every (example, position) at once, (B, T, 1), True where gold is fed; None
        where the model's choice is always fed (ε = 0). Drawn in float32 whatever the autocast dtype: in bf16,
        ε = 0.99 would be 0.988 (issue 7)."""
        if gold_probability <= 0.0:
            return None
        probability = torch.full(shape, gold_probability, dtype=torch.float32, device=device)
        return torch.bernoulli(probability).bool().unsqueeze(-1)

    def next_input(
        self,
        logits: torch.Tensor,
        gold_ids: torch.Tensor,
        embedding: torch.Tensor,
        gold_probability: float,
        alpha: float,
        gold: torch.Tensor | None = None,
        use_gold: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Embedding fed at the next step, (B, E).

        logits: (B, V) scores s_{i-1}; gold_ids: (B,) y*_{i-1}; embedding: (V, E) the
        decoder's input embedding table (so gradients reach it and, for the soft
        procedures, the logits of every earlier step). A decoder that has them for every step at once passes
        `gold` (B, E), e(y*_{i-1}), and this step's coins `use_gold` (B, 1) from `gold_coins`.
        """
        if gold is None:
            gold = F.embedding(gold_ids, embedding)  # (B, E)
        if self.always_gold(gold_probability):
            return gold
        # Under autocast the soft choice comes out of its matmul in bf16; everything fed is in the table's dtype.
        choice = self._choice_embedding(logits, embedding, alpha).to(embedding.dtype)  # (B, E)
        if gold_probability <= 0.0:
            return choice
        if use_gold is None:  # an independent coin per example at this position
            use_gold = self.gold_coins(gold_ids.shape, gold_probability, gold_ids.device)
        return torch.where(use_gold, gold, choice)

    def choice_weights(self, logits: torch.Tensor, alpha: float) -> torch.Tensor:
        """The model's choice as weights over the vocabulary, (B, V): one-hot for the hard
        procedures, a soft (top-k-sparse) distribution for the soft ones."""
        if not self.choice.feeds_choice:
            raise ValueError("'ce' never feeds the model's choice")
        scores = self._choice_scores(logits, alpha)
        if not self.choice.soft:
            return F.one_hot(self._hard_choice(scores), logits.size(-1)).to(logits.dtype)
        if self.top_k is None:
            return torch.softmax(scores, dim=-1)
        top_scores, top_ids = scores.topk(min(self.top_k, scores.size(-1)), dim=-1)
        return torch.zeros_like(scores).scatter(-1, top_ids, torch.softmax(top_scores, dim=-1))

    def _choice_scores(self, logits: torch.Tensor, alpha: float) -> torch.Tensor:
        """α·s (plus α·G, Gumbel noise, for soft sampling) in float32, the excluded ids at -inf, in one pass.

        The noise is added to a copy: the loss keeps reading the clean logits."""
        scale = alpha if self.choice.soft else 1.0  # α multiplies logits, never probabilities (METHOD.md pitfalls)
        scores = torch.add(self._excluded_bias(logits.size(-1), logits.device), logits.float(), alpha=scale)
        if self.choice.soft and self.choice.sampled:  # α (s + G): the noise scaled by α as the scores are
            scores.sub_(negative_gumbel_noise(logits.shape, logits.device), alpha=alpha)
        return scores

    def _excluded_bias(self, vocab: int, device: torch.device) -> torch.Tensor:
        key = (vocab, device)
        if key not in self._excluded:
            bias = torch.zeros(vocab, dtype=torch.float32, device=device)
            bias[list(self.excluded_ids)] = float("-inf")
            self._excluded[key] = bias
        return self._excluded[key]

    def _hard_choice(self, scores: torch.Tensor) -> torch.Tensor:
        if not self.choice.sampled:
            return scores.argmax(dim=-1)
        return categorical_sample(scores)

    def _choice_embedding(self, logits: torch.Tensor, embedding: torch.Tensor, alpha: float) -> torch.Tensor:
        if not self.choice.soft:
            # An index lookup equals one-hot @ E without the (B, V) product; no gradient reaches the logits.
            with torch.no_grad():
                chosen = self._hard_choice(self._choice_scores(logits, alpha))
            return F.embedding(chosen, embedding)
        scores = self._choice_scores(logits, alpha)
        if self.top_k is None:
            return torch.softmax(scores, dim=-1).to(embedding.dtype) @ embedding
        top_scores, top_ids = scores.topk(min(self.top_k, scores.size(-1)), dim=-1)  # (B, k)
        weights = torch.softmax(top_scores, dim=-1).to(embedding.dtype)
        # embedding_bag sums the k rows without keeping the gathered (B, k, E) block for backward.
        return F.embedding_bag(top_ids, embedding, per_sample_weights=weights, mode="sum")
