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

import torch
import torch.nn.functional as F

from trainer.config import Procedure

SOFT_PROCEDURES = ("soft_greedy", "soft_sample")
HARD_PROCEDURES = ("ss_greedy", "ss_sample")


def gumbel_noise(shape: torch.Size, device: torch.device) -> torch.Tensor:
    """G = -log(-log U), U ~ Uniform(0, 1), clamped away from 0 and 1 to stay finite."""
    uniform = torch.rand(shape, device=device, dtype=torch.float32).clamp_(1e-10, 1.0 - 1e-7)
    return -torch.log(-torch.log(uniform))


class FeedbackPolicy:
    """Chooses the previous-token embedding for each decoder step during training.

    `excluded_ids` (padding, start symbol) can never be chosen: their logits are
    set to -inf on the fed-back path only. `top_k` truncates the soft vector to
    the k largest scores (a memory remedy at vocabulary 32000, METHOD.md).
    """

    def __init__(self, procedure: Procedure, excluded_ids: tuple[int, ...] = (), top_k: int | None = None):
        self.procedure = procedure
        self.excluded_ids = tuple(excluded_ids)
        self.top_k = top_k

    def always_gold(self, gold_probability: float) -> bool:
        """Whether every position is fed the gold token (teacher forcing), so nothing depends on the logits."""
        return self.procedure == "ce" or gold_probability >= 1.0

    def choice_weights(self, logits: torch.Tensor, alpha: float) -> torch.Tensor:
        """The model's choice as weights over the vocabulary, (B, V): one-hot for the hard
        procedures, a soft (top-k-sparse) distribution for the soft ones."""
        if self.procedure == "ce":
            raise ValueError("'ce' never feeds the model's choice")
        scores = self._choice_scores(logits, alpha)
        if self.procedure in HARD_PROCEDURES:
            return F.one_hot(self._hard_choice(scores), logits.size(-1)).to(logits.dtype)
        if self.top_k is None:
            return torch.softmax(scores, dim=-1)
        top_scores, top_ids = scores.topk(min(self.top_k, scores.size(-1)), dim=-1)
        return torch.zeros_like(scores).scatter(-1, top_ids, torch.softmax(top_scores, dim=-1))

    def next_input(
        self,
        logits: torch.Tensor,
        gold_ids: torch.Tensor,
        embedding: torch.Tensor,
        gold_probability: float,
        alpha: float,
    ) -> torch.Tensor:
        """Embedding fed at the next step, (B, E).

        logits: (B, V) scores s_{i-1}; gold_ids: (B,) y*_{i-1}; embedding: (V, E) the
        decoder's input embedding table (so gradients reach it and, for the soft
        procedures, the logits of every earlier step).
        """
        gold = F.embedding(gold_ids, embedding)  # (B, E)
        if self.always_gold(gold_probability):
            return gold
        # Under autocast the soft choice comes out of its matmul in bf16; everything fed is in the table's dtype.
        choice = self._choice_embedding(logits, embedding, alpha).to(embedding.dtype)  # (B, E)
        if gold_probability <= 0.0:
            return choice
        with torch.no_grad():
            # The coin in float32 whatever the autocast dtype: in bf16, ε = 0.99 would be 0.988 (issue 7).
            probability = torch.full(gold_ids.shape, gold_probability, dtype=torch.float32, device=gold_ids.device)
            use_gold = torch.bernoulli(probability).to(embedding.dtype)
        use_gold = use_gold.unsqueeze(-1)  # (B, 1), an independent coin per example at this position
        return use_gold * gold + (1.0 - use_gold) * choice

    def _choice_scores(self, logits: torch.Tensor, alpha: float) -> torch.Tensor:
        """α·s (plus Gumbel noise for sampling) in float32, specials masked.

        The noise is added to a copy: the loss keeps reading the clean logits."""
        scores = logits.float()
        if self.procedure in SOFT_PROCEDURES:
            scores = alpha * scores  # α multiplies logits, never probabilities (METHOD.md pitfalls)
        if self.procedure == "soft_sample":
            scores = scores + alpha * gumbel_noise(scores.shape, scores.device)
        if self.excluded_ids:
            scores = scores.index_fill(-1, torch.tensor(self.excluded_ids, device=scores.device), float("-inf"))
        return scores

    def _hard_choice(self, scores: torch.Tensor) -> torch.Tensor:
        if self.procedure == "ss_greedy":
            return scores.argmax(dim=-1)
        return torch.multinomial(torch.softmax(scores, dim=-1), 1).squeeze(-1)

    def _choice_embedding(self, logits: torch.Tensor, embedding: torch.Tensor, alpha: float) -> torch.Tensor:
        scores = self._choice_scores(logits, alpha)
        if self.procedure in HARD_PROCEDURES:
            # An index lookup equals one-hot @ E without the (B, V) product; no gradient reaches the logits.
            return F.embedding(self._hard_choice(scores.detach()), embedding)
        if self.top_k is None:
            return torch.softmax(scores, dim=-1).to(embedding.dtype) @ embedding
        top_scores, top_ids = scores.topk(min(self.top_k, scores.size(-1)), dim=-1)  # (B, k)
        weights = torch.softmax(top_scores, dim=-1).to(embedding.dtype)
        # embedding_bag sums the k rows without keeping the gathered (B, k, E) block for backward.
        return F.embedding_bag(top_ids, embedding, per_sample_weights=weights, mode="sum")
