"""Self-describing checkpoints: state dicts plus the config, vocabularies and schedule state.

Only tensors and plain Python values are stored, so `torch.load(weights_only=True)`
reads them and the model is rebuilt from the checkpoint alone (no pickled modules).
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch

from trainer.config import ConfigError, config_differences

LAST = "last.pt"  # everything needed to resume: optimizer, schedule counters, RNG, history
BEST = "best.pt"  # the best-dev model, what selection and test scoring read
MODEL_KEYS = ("config", "vocabularies", "model")  # in every checkpoint: enough to rebuild and score the model
RESUME_KEYS = ("optimizer", "schedule", "history", "best", "rng")  # also in last.pt


class CheckpointError(ConfigError):
    """A checkpoint that cannot be used (missing, truncated, not ours, of another config); the message names it."""


def save(path: Path, payload: dict) -> None:
    """Writes to a temporary file then renames, so a crash never leaves a truncated checkpoint."""
    partial = path.with_suffix(".partial")
    torch.save(payload, partial)
    partial.replace(path)


def load(path: Path | str, device: torch.device | str = "cpu", required: tuple[str, ...] = MODEL_KEYS) -> dict:
    """Reads tensors and plain values only (`weights_only`): a file holding code is refused, never run.
    Anything that is not a checkpoint of this trainer is a CheckpointError naming the file."""
    not_ours = f"{path}: not a checkpoint written by python -m trainer"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols would only precede our error
            payload = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: a directory, not a checkpoint file") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read ({error.strerror})") from None
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise CheckpointError(f"{not_ours} (truncated, or another kind of file)") from None
        # torch's own message suggests weights_only=False, i.e. running whatever the file holds: not passed on.
        raise CheckpointError(
            f"{not_ours}: it holds pickled data that the safe loader (tensors and plain values only) refuses, "
            "such as code or whole modules, and it was not loaded, since loading that could run code"
        ) from None
    except Exception:  # torch.load fails on arbitrary bytes with RuntimeError, KeyError, EOFError and others
        raise CheckpointError(f"{not_ours} (truncated, or another kind of file)") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict):
        raise CheckpointError(f"{not_ours} (it holds no config)")
    missing = [key for key in required if key not in payload]
    if missing:
        raise CheckpointError(f"{not_ours} (it has no {', '.join(missing)})")
    return payload


def load_resume_state(out_dir: Path, config: dict) -> dict | None:
    """`out_dir/last.pt` if it holds a run of `config` (the dumped config); None when there is none.
    A corrupt last.pt or one of another config is a CheckpointError that says what differs and what to do."""
    path = out_dir / LAST
    if not path.exists():
        return None
    remedy = f"use a new --out directory, or delete {out_dir} to start this run over"
    try:
        resumed = load(path, required=MODEL_KEYS + RESUME_KEYS)
    except CheckpointError as error:
        raise CheckpointError(f"{error}; so {out_dir} cannot be resumed: {remedy}") from None
    differences = config_differences(resumed["config"], config)
    if differences:
        raise CheckpointError(f"{out_dir} holds a run of another config ({'; '.join(differences)}): {remedy}")
    return resumed
