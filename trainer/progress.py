"""How the trainer talks to a person: flushed lines (visible at once in logs and Ray workers)."""

from __future__ import annotations

import sys


def log_line(message: str) -> None:
    print(message, file=sys.stdout, flush=True)
