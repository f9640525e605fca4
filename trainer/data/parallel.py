"""Parallel text: two files, one sentence per line, line n of one translating line n of the other.

This is the layout the usual IWSLT14 preparation scripts leave (`train|valid|test` ×
`.de|.en`, tokenized, lowercased; Ranzato et al. 2016, used by the paper §5) and the
layout `trainer.data.ding` writes. Tokens are separated by spaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainer.data.conll import ENCODING_HINT, DataFormatError, read_text

SPLIT_FILES = {"train": "train", "dev": "valid", "test": "test"}  # our split name -> file stem


@dataclass(frozen=True)
class SentencePair:
    source: tuple[str, ...]  # the units the model reads: words as read, or subword pieces (trainer/subwords.py)
    target: tuple[str, ...]  # the units the model writes
    line: int  # 1-based line number in both files, for error messages
    target_words: tuple[str, ...] | None = None  # the target as read, when `target` holds subword pieces

    @property
    def reference(self) -> tuple[str, ...]:
        """The target words as read, what BLEU and chrF compare translations with."""
        return self.target if self.target_words is None else self.target_words


def split_files(folder: Path, split: str, source_lang: str, target_lang: str) -> tuple[Path, Path]:
    stem = Path(folder) / SPLIT_FILES[split]
    return stem.with_name(f"{stem.name}.{source_lang}"), stem.with_name(f"{stem.name}.{target_lang}")


def _read_lines(path: Path, encoding: str) -> list[str]:
    text = read_text(path, encoding, hint=ENCODING_HINT)
    # Split on "\n" only: str.splitlines() also breaks at U+2028, U+0085 and others that occur inside
    # sentences, and would shift every later line against the other side.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def read_parallel(
    source_path: Path | str, target_path: Path | str, lowercase: bool = False, encoding: str = "utf-8"
) -> list[SentencePair]:
    """Reads aligned files. Raises DataFormatError, naming the file (and line), when the line counts
    differ or a line is empty on one side only. Lines empty on both sides are skipped."""
    source_path, target_path = Path(source_path), Path(target_path)
    source_lines, target_lines = _read_lines(source_path, encoding), _read_lines(target_path, encoding)
    if len(source_lines) != len(target_lines):
        raise DataFormatError(
            f"{source_path} has {len(source_lines)} lines but {target_path} has {len(target_lines)}: "
            "parallel files must be aligned line by line"
        )
    pairs = []
    for number, (source_line, target_line) in enumerate(zip(source_lines, target_lines, strict=True), start=1):
        if lowercase:
            source_line, target_line = source_line.lower(), target_line.lower()
        source, target = source_line.split(), target_line.split()
        if not source and not target:
            continue
        if not source or not target:
            empty, other = (source_path, target_path) if not source else (target_path, source_path)
            raise DataFormatError(f"{empty}:{number}: empty line, but line {number} of {other} is not")
        pairs.append(SentencePair(tuple(source), tuple(target), number))
    if not pairs:
        raise DataFormatError(f"{source_path}: no sentence pairs (empty file?)")
    return pairs


def drop_long(pairs: list[SentencePair], max_length: int | None) -> list[SentencePair]:
    """Training pairs with more than `max_length` tokens on either side (the paper's preprocessing: 50)."""
    if max_length is None:
        return pairs
    return [p for p in pairs if len(p.source) <= max_length and len(p.target) <= max_length]
