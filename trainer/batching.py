"""Length-bucketed batches: sentences of similar length share a batch, so the step-by-step decoder
does not unroll over padding. And word dropout, which trains the <unk> embedding."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import torch

from trainer.vocabulary import Vocabulary


def bucketed_batches(
    lengths: list[int], batch_size: int, shuffle: bool, max_tokens: int | None = None
) -> list[list[int]]:
    """Index lists of about `batch_size` examples of similar length, or, with `max_tokens`, of as many
    examples of similar length as fit that many tokens (the batch's longest example × its examples, padding
    included; an example longer than that has a batch of its own): short examples then share a step.

    With shuffle, examples are shuffled, sorted by length within windows of about 50 batches, and the batches
    shuffled, using torch's global generator (seeded by the trainer, restored on resume)."""
    order = torch.randperm(len(lengths)).tolist() if shuffle else list(range(len(lengths)))
    if max_tokens is None:
        window = batch_size * 50
    else:
        typical = sorted(lengths)[len(lengths) // 2] if lengths else 1
        window = 50 * max(1, max_tokens // max(1, typical))
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        if max_tokens is None:
            batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
            continue
        batch: list[int] = []
        for index in chunk:  # ascending length: the newest example is the batch's longest
            if batch and lengths[index] * (len(batch) + 1) > max_tokens:
                batches.append(batch)
                batch = []
            batch.append(index)
        if batch:
            batches.append(batch)
    if shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches)).tolist()]
    return batches


def pad(sequences: list[list[int]], pad_id: int) -> torch.Tensor:
    """(B, max length) long tensor."""
    longest = max(len(s) for s in sequences)
    return torch.tensor([s + [pad_id] * (longest - len(s)) for s in sequences], dtype=torch.long)


class SingletonDropout:
    """Replaces words seen once in the training sentences by <unk>, each occurrence with `probability`.

    Where every training word is in the vocabulary (NER; MT at min_freq 1), <unk>'s embedding would otherwise
    never receive a gradient, while 8-12% of CoNLL-2003 English dev/test words are unknown (issue 7); BiLSTM
    taggers train it so (Lample et al. 2016). Applied to training batches only, drawn afresh each epoch from
    torch's global generator (seeded by the trainer, restored on resume).
    """

    def __init__(self, vocabulary: Vocabulary, sentences: Iterable[Sequence[str]], probability: float):
        counts = Counter(token for sentence in sentences for token in sentence)
        singletons = [vocabulary.index[t] for t, n in counts.items() if n == 1 and t in vocabulary]
        self.singleton = torch.zeros(len(vocabulary), dtype=torch.bool)  # (V,) True at the words seen once
        self.singleton[torch.tensor(singletons, dtype=torch.long)] = True
        self.unk_id = vocabulary.unk_id
        self.probability = probability

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, S) token ids; returns them with the replaced occurrences set to <unk>."""
        if self.probability == 0 or not self.singleton.any():  # draws nothing, so runs without it stay as they were
            return ids
        replace = self.singleton[ids] & (torch.rand(ids.shape) < self.probability)
        return ids.masked_fill(replace, self.unk_id)
