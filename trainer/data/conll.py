"""CoNLL column files: one token per line, tag in the last column, blank line between sentences.

Accepts the CoNLL-2003 English layout (`token POS chunk NER`) and the German one
(`token lemma POS chunk NER`, released in ISO-8859-1: data.encoding), skips `-DOCSTART-`
lines, and converts IOB1 tags (as in the original CoNLL-2003 release) to IOB2 so that
every entity starts with B-.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path


class DataFormatError(ValueError):
    """A malformed data file; the message names the file and, where it applies, the line."""


@dataclass(frozen=True)
class TaggedSentence:
    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    start_line: int = 0  # line of the first token in its file, for error messages


def iob1_to_iob2(tags: list[str]) -> list[str]:
    """An I-X that does not continue an X chunk starts one: it becomes B-X. IOB2 input is unchanged."""
    converted = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        converted.append(tag)
        previous = tag
    return converted


def _check_tag(tag: str, path: Path, line_number: int) -> None:
    if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
        raise DataFormatError(f"{path}:{line_number}: tag {tag!r} is neither O nor B-/I- followed by a type")


ENCODING_HINT = "data.encoding names the files' encoding (CoNLL-2003 German as released: iso-8859-1)"


def read_text(path: Path, encoding: str = "utf-8", hint: str = "") -> str:
    """A file's text (data files and configs) without a leading byte-order mark, which would otherwise glue
    itself to the first token (e.g. turn `-DOCSTART-` into a word). A file that is missing, a directory,
    unreadable or not in `encoding` is a DataFormatError naming the file, and for undecodable bytes their line
    and `hint`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataFormatError(f"{path}: a directory, not a file") from None
    except OSError as error:
        raise DataFormatError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        return data.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        advice = f"; {hint}" if hint else ""
        raise DataFormatError(f"{path}:{line}: not valid {encoding} text ({error.reason}){advice}") from None


def read_conll(path: Path | str, encoding: str = "utf-8") -> list[TaggedSentence]:
    """Reads one split. Every token line must have the same number of columns (at least 2).

    A file is parsed once per process while it is unchanged (same modification time and size): a Ray worker
    that Tune reuses trial after trial, and a task that reads the training split for its vocabulary and
    again to train, do not parse it again (issue 10)."""
    path = Path(path)
    try:
        version = path.stat()
    except OSError:
        return _parse_conll(path, encoding)  # which reports what is wrong with the path
    return list(_parsed_once(path.resolve(), path, encoding, version.st_mtime_ns, version.st_size))


@functools.lru_cache(maxsize=8)
def _parsed_once(resolved: Path, path: Path, encoding: str, mtime_ns: int, size: int) -> tuple[TaggedSentence, ...]:
    return tuple(_parse_conll(path, encoding))


def _parse_conll(path: Path, encoding: str) -> list[TaggedSentence]:
    text = read_text(path, encoding, hint=ENCODING_HINT)

    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    columns: int | None = None
    start_line = 0

    def close_sentence() -> None:
        if tokens:
            sentences.append(TaggedSentence(tuple(tokens), tuple(iob1_to_iob2(tags)), start_line))
            tokens.clear()
            tags.clear()

    for line_number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            close_sentence()
            continue
        if fields[0] == "-DOCSTART-":
            close_sentence()
            continue
        if columns is None:
            if len(fields) < 2:
                raise DataFormatError(f"{path}:{line_number}: expected a token and a tag, found 1 column")
            columns = len(fields)
        elif len(fields) != columns:
            raise DataFormatError(
                f"{path}:{line_number}: expected {columns} columns as on the first token line, found {len(fields)}"
            )
        _check_tag(fields[-1], path, line_number)
        if not tokens:
            start_line = line_number
        tokens.append(fields[0])
        tags.append(fields[-1])
    close_sentence()
    if not sentences:
        raise DataFormatError(f"{path}: no sentences (empty file?)")
    return sentences


def check_known_tags(sentences: list[TaggedSentence], known: set[str], path: Path | str) -> None:
    """Tags come from the training split only; a tag unseen there is an error in the other splits."""
    for sentence in sentences:
        for offset, tag in enumerate(sentence.tags):
            if tag not in known:
                raise DataFormatError(
                    f"{path}:{sentence.start_line + offset}: tag {tag!r} does not occur in the training split"
                )
