"""Bidirectional LSTM encoder shared by both tasks (paper §5)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class BiLSTMEncoder(nn.Module):
    """Embeds source tokens and runs one bidirectional LSTM layer.

    Returns the per-token states (B, S, 2H) and the final states of both
    directions concatenated, (B, 2H), from which the decoder's initial state is built.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, dropout: float, pad_id: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True, bidirectional=True)
        self.output_size = 2 * hidden_size

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedded = self.dropout(self.embedding(src))  # (B, S, E)
        packed = pack_padded_sequence(embedded, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_states, (final_h, _) = self.lstm(packed)
        states, _ = pad_packed_sequence(packed_states, batch_first=True, total_length=src.size(1))  # (B, S, 2H)
        final = torch.cat([final_h[0], final_h[1]], dim=-1)  # (B, 2H)
        return states, final
