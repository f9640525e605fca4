"""Length-bucketed batches: sentences of similar length share a batch, so the step-by-step decoder
does not unroll over padding."""

from __future__ import annotations

import torch


def bucketed_batches(lengths: list[int], batch_size: int, shuffle: bool) -> list[list[int]]:
    """Index lists of about `batch_size` examples of similar length.

    With shuffle, examples are shuffled, sorted by length within windows of 50
    batches, and the batches shuffled, using torch's global generator (seeded by
    the trainer, restored on resume)."""
    order = torch.randperm(len(lengths)).tolist() if shuffle else list(range(len(lengths)))
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    if shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches)).tolist()]
    return batches


def pad(sequences: list[list[int]], pad_id: int) -> torch.Tensor:
    """(B, max length) long tensor."""
    longest = max(len(s) for s in sequences)
    return torch.tensor([s + [pad_id] * (longest - len(s)) for s in sequences], dtype=torch.long)
