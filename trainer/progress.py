"""How the trainer talks to a person: flushed lines (visible at once in logs and Ray workers), and a progress
bar within each epoch on a terminal only."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO

from tqdm import tqdm


def log_line(message: str) -> None:
    print(message, file=sys.stdout, flush=True)


def progress_bar(items: Iterable, description: str, enabled: bool = True, stream: TextIO | None = None) -> tqdm:
    """A tqdm bar on `stream` (stderr), shown only when it is a terminal: written to a file or a pipe (a
    trial's train.log, CI logs) its thousands of carriage-return updates would flood the log (issue 7)."""
    stream = sys.stderr if stream is None else stream
    return tqdm(items, desc=description, file=stream, leave=False, disable=not (enabled and stream.isatty()))
