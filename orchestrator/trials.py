"""What the sweep knows of one Tune trial besides its trainer config: its place in the sweep, and its fate.

A Tune trial's config is `{"trainer": <trainer config tree>, "sweep": <TrialMeta as a dict>}`: Tune stores,
copies and logs configs as plain dicts, so the metadata crosses that boundary as one, built by `trial_config`
and read back by `TrialMeta.of`, here and nowhere else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol

from orchestrator.space import config_id, trial_key

TRAINER, SWEEP = "trainer", "sweep"  # the two parts of a Tune trial's config


@dataclass(frozen=True)
class TrialMeta:
    """One trial = one configuration (an Optuna trial of its group's study) × one restart (seed)."""

    group: str
    number: int  # the configuration's Optuna trial number in the group's study
    restart: int
    params: dict[str, Any]  # the configuration's axis values
    cpus: float  # torch threads the trial may use
    scout: bool  # one of the restarts that run first, together, and that the pruner watches (SearchSpace.scouts)

    @property
    def config_id(self) -> str:
        return config_id(self.group, self.number)

    @property
    def key(self) -> str:
        return trial_key(self.group, self.number, self.restart)

    @classmethod
    def of(cls, config: dict) -> TrialMeta:
        """The metadata in a Tune trial's config (`trial.config`, or the dict a trainable receives)."""
        return cls(**config[SWEEP])


def trial_config(trainer_tree: dict, meta: TrialMeta) -> dict:
    """The config Tune runs a trial with."""
    return {TRAINER: trainer_tree, SWEEP: asdict(meta)}


def trainer_tree(config: dict) -> dict:
    """The trainer config tree in a Tune trial's config."""
    return config[TRAINER]


class Fate(StrEnum):
    """How a trial ended, as the summary, the MLflow runs and the progress lines say it."""

    COMPLETE = "COMPLETE"  # trained its whole epoch budget
    PRUNED = "PRUNED"  # its configuration was stopped by the pruner (scouts only)
    FAILED = "FAILED"  # raised, or its node was lost more often than --max-failures allows
    UNFINISHED = "UNFINISHED"  # the sweep was interrupted before it ended


class PrunedConfigurations(Protocol):
    def pruned(self, meta: TrialMeta) -> bool: ...


def fate(meta: TrialMeta, failed: bool, epochs: int, budget: int, studies: PrunedConfigurations) -> Fate:
    """A trial's fate from what Tune holds (an error, the epochs it reported) and the Optuna storage (pruned or
    not: Tune's own 'done' flag does not survive a restored experiment, and a stopped trial looks the same to it
    whether the pruner or an interruption stopped it)."""
    if failed:
        return Fate.FAILED
    if studies.pruned(meta):
        return Fate.PRUNED
    return Fate.COMPLETE if epochs >= budget else Fate.UNFINISHED
