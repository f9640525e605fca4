"""Attention: which encoder states the decoder reads at step i.

Both kinds share one call signature, so the decoder (and with it the feedback
policy) is the same for NER and MT.
"""

from __future__ import annotations

import torch
from torch import nn


class FixedAttention(nn.Module):
    """NER (§5, footnote 4): step i reads the encoder state of source token i; no parameters."""

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor, step: int) -> torch.Tensor:
        """keys: (B, S, D) encoder states; returns (B, D). Source and target have equal length."""
        return keys[:, step]
