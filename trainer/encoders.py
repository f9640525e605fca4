"""Bidirectional LSTM encoder shared by both tasks (paper §5)."""

from __future__ import annotations

import torch
from torch import nn


class BiLSTMEncoder(nn.Module):
    """Embeds source tokens and runs one bidirectional LSTM layer.

    Returns the per-token states (B, S, 2H), zero at padding, and the final states of both
    directions concatenated, (B, 2H), from which the decoder's initial state is built.

    The two directions are two LSTMs over the padded batch, each one fused (oneDNN, cuDNN) call: a
    bidirectional nn.LSTM over a packed batch gives the same states but runs cell by cell on CPU,
    and was most of a CoNLL-2003 training step (issue 10). The backward LSTM reads every sentence
    reversed within its own length, so padding never reaches a real token's state.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, dropout: float, pad_id: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.forward_lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.backward_lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.output_size = 2 * hidden_size

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedded = self.dropout(self.embedding(src))  # (B, S, E)
        lengths = src_lengths.to(src.device)
        reversal = within_length_reversal(lengths, src.size(1))  # (B, S)
        forward_states, _ = self.forward_lstm(embedded)  # (B, S, H)
        backward_reversed, _ = self.backward_lstm(take_positions(embedded, reversal))  # (B, S, H), reversed order
        states = torch.cat([forward_states, take_positions(backward_reversed, reversal)], dim=-1)  # (B, S, 2H)
        real = reversal.new_tensor(range(src.size(1)))[None, :] < lengths[:, None]  # (B, S)
        last = (lengths - 1)[:, None]  # both directions end at position length-1 of what they read
        final = torch.cat([take_positions(forward_states, last), take_positions(backward_reversed, last)], dim=-1)
        return states * real[..., None], final.squeeze(1)


def within_length_reversal(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """(B, size) source positions that reverse each row's first `length` positions and keep its padding in place."""
    positions = torch.arange(size, device=lengths.device)[None, :]  # (1, S)
    return torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)


def take_positions(sequence: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """sequence (B, S, D), positions (B, P) → (B, P, D): row b's vectors at positions[b]."""
    return sequence.gather(1, positions[..., None].expand(-1, -1, sequence.size(-1)))
