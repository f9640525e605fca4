"""Self-describing checkpoints: state dicts plus the config, vocabularies and schedule state.

Only tensors and plain Python values are stored, so `torch.load(weights_only=True)`
reads them and the model is rebuilt from the checkpoint alone (no pickled modules).
"""

from __future__ import annotations

from pathlib import Path

import torch

LAST = "last.pt"  # everything needed to resume: optimizer, schedule counters, RNG, history
BEST = "best.pt"  # the best-dev model, what selection and test scoring read


def save(path: Path, payload: dict) -> None:
    """Writes to a temporary file then renames, so a crash never leaves a truncated checkpoint."""
    partial = path.with_suffix(".partial")
    torch.save(payload, partial)
    partial.replace(path)


def load(path: Path | str, device: torch.device | str = "cpu") -> dict:
    return torch.load(path, map_location=device, weights_only=True)
