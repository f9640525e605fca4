"""Attention: which encoder states the decoder reads at step i.

Both kinds share one call signature, so the decoder (and with it the feedback
policy) is the same for NER and MT.
"""

from __future__ import annotations

import torch
from torch import nn


class FixedAttention(nn.Module):
    """NER (§5, footnote 4): step i reads the encoder state of source token i; no parameters."""

    reads_decoder_state = False  # every step's context is known before decoding: teacher forcing can be fused

    def all_steps(self, keys: torch.Tensor, length: int) -> torch.Tensor:
        """The contexts of steps 0..length-1 at once, (B, length, D)."""
        return keys[:, :length]

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor, step: int) -> torch.Tensor:
        """keys: (B, S, D) encoder states; returns (B, D). Source and target have equal length."""
        return keys[:, step]


class BahdanauAttention(nn.Module):
    """MT (§5): additive attention (Bahdanau et al. 2015), score(q, k_j) = vᵀ tanh(W_q q + W_k k_j).

    The query is the decoder's previous hidden state; padding (mask False) gets
    exactly zero weight. W_k k is the same at every step of one sequence, so it is
    computed once per `keys` tensor (the decoder passes the same tensor at every step).
    """

    reads_decoder_state = True  # the query is the decoder's previous hidden state

    def __init__(self, query_size: int, key_size: int, hidden_size: int):
        super().__init__()
        self.query_layer = nn.Linear(query_size, hidden_size, bias=False)
        self.key_layer = nn.Linear(key_size, hidden_size, bias=False)
        self.energy_layer = nn.Linear(hidden_size, 1, bias=False)
        self._projected: tuple[torch.Tensor, torch.Tensor] | None = None  # (keys, W_k keys) of the current sequence

    def weights(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """query: (B, H), keys: (B, S, C), mask: (B, S) True at real tokens; returns (B, S) summing to 1 per row."""
        if self._projected is None or self._projected[0] is not keys:
            self._projected = (keys, self.key_layer(keys))  # (B, S, A)
        energy = self.energy_layer(torch.tanh(self.query_layer(query)[:, None] + self._projected[1]))  # (B, S, 1)
        scores = energy.squeeze(-1).float().masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=-1)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor, step: int) -> torch.Tensor:
        """Returns the context (B, C): the attention-weighted sum of the encoder states."""
        weights = self.weights(query, keys, mask)
        return torch.bmm(weights.to(keys.dtype)[:, None], keys).squeeze(1)
