"""Token <-> id maps, built from training data only (never from dev or test)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"


class Vocabulary:
    """An ordered token list; specials come first. Stored in checkpoints as that list."""

    def __init__(self, tokens: list[str]):
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary tokens must be unique")
        self.tokens = list(tokens)
        self.index = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def build(
        cls,
        sequences: Iterable[list[str]],
        specials: tuple[str, ...],
        max_size: int | None = None,
        min_freq: int = 1,
    ) -> Vocabulary:
        """Most frequent first (ties broken by first appearance), at most max_size entries in all."""
        counts = Counter(token for sequence in sequences for token in sequence)
        ranked = [t for t, c in sorted(counts.items(), key=lambda tc: -tc[1]) if c >= min_freq and t not in specials]
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(specials))]
        return cls(list(specials) + ranked)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    @property
    def pad_id(self) -> int:
        return self.index[PAD]

    @property
    def unk_id(self) -> int:
        return self.index[UNK]

    @property
    def bos_id(self) -> int:
        return self.index[BOS]

    @property
    def eos_id(self) -> int:
        return self.index[EOS]

    def encode(self, tokens: list[str]) -> list[int]:
        """Unknown tokens map to <unk> when the vocabulary has one, else raise KeyError."""
        unk = self.index.get(UNK)
        if unk is None:
            return [self.index[t] for t in tokens]
        return [self.index.get(t, unk) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids]
