"""What the sweep prints while it runs, and how busy it kept the machine.

One line per finished, pruned or failed trial (a Tune callback), each ending with
where the sweep stands: trials finished of those planned, pruned, elapsed, and an
estimate of the time left. At the end, the sweep efficiency: trainer seconds
summed over trials ÷ (wall × trials at once).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ray.tune import Callback

from orchestrator.studies import Studies
from orchestrator.trainable import REPLAYED
from orchestrator.trials import Fate, TrialMeta, fate


class TrialLines(Callback):
    def __init__(self, studies: Studies):
        self.studies = studies
        space = studies.space
        self.metric, self.mode = space.metric.name, space.metric.mode
        self.epochs, self.restarts, self.scouts = space.epochs, space.restarts, space.scouts
        self.configurations = sum(space.planned_configurations(group) for group in space.groups)
        self.setup()

    def setup(self, **info):
        """Per session: a resumed sweep restores this callback from its experiment, with the old session's clocks."""
        self._session_started = time.monotonic()
        self._started: dict[str, float] = {}
        self._pruned: dict[str, bool] = {}  # trial id → pruned, for every trial seen finished
        self._epochs_trained = 0  # epoch results trained in this session

    def on_trial_start(self, iteration, trials, trial, **info):
        self._started[trial.trial_id] = time.monotonic()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not result.get(REPLAYED):
            self._epochs_trained += 1

    def on_trial_complete(self, iteration, trials, trial, **info):
        epoch = int(trial.last_result.get("epoch", 0))
        best = trial.metric_analysis.get(self.metric, {}).get(self.mode)
        score = f" (best {self.metric} {best:.2f})" if best is not None else ""
        ended = fate(TrialMeta.of(trial.config), False, epoch, self.epochs, self.studies)
        self._pruned[trial.trial_id] = ended == Fate.PRUNED
        what = {Fate.PRUNED: f"PRUNED at epoch {epoch}", Fate.COMPLETE: f"done after epoch {epoch}"}
        self._line(trial, trials, what.get(ended, f"stopped after epoch {epoch}") + score)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._pruned[trial.trial_id] = False
        self._line(trial, trials, f"FAILED: see {os.path.join(trial.path, 'error.txt')}")

    def _line(self, trial, trials, what: str) -> None:
        started = self._started.pop(trial.trial_id, None)
        took = f" [{time.monotonic() - started:.0f}s]" if started is not None else ""
        print(f"trial {TrialMeta.of(trial.config).key:<36} {what}{took}  {self.standing(trials)}", flush=True)

    def standing(self, trials) -> str:
        """'[finished/planned trials, pruned, elapsed, left]'. A pruned configuration's scouts cancel its other
        restarts, so `planned` shrinks as the pruner acts; the time left assumes no further pruning."""
        finished = {t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR") or t.trial_id in self._pruned}
        for t in trials:
            if t.trial_id in finished and t.trial_id not in self._pruned:  # finished in an earlier session
                self._pruned[t.trial_id] = self.studies.pruned(TrialMeta.of(t.config))
        pruned = sum(self._pruned[trial_id] for trial_id in finished)
        pruned_configurations = len({TrialMeta.of(t.config).config_id for t in trials if self._pruned.get(t.trial_id)})
        planned = self.configurations * self.restarts - pruned_configurations * (self.restarts - self.scouts)
        running_epochs = sum(int(t.last_result.get("epoch", 0)) for t in trials if t.trial_id not in finished)
        epochs_left = (planned - len(finished)) * self.epochs - running_epochs
        elapsed = time.monotonic() - self._session_started
        parts = [f"{len(finished)}/{planned} trials", f"{pruned} pruned", f"{elapsed / 60:.1f} min"]
        if self._epochs_trained:
            parts.append(f"~{epochs_left * elapsed / self._epochs_trained / 60:.0f} min left")
        return f"[{', '.join(parts)}]"


@dataclass
class Efficiency:
    """How busy a sweep session kept the trial slots: trainer seconds ÷ (wall × trials at once)."""

    trainer_seconds: float  # the epoch records' own seconds (training and dev scoring), summed over trials
    wall_seconds: float  # of Tune's run, start-up and shutdown included
    concurrency: int

    @property
    def ratio(self) -> float:
        return self.trainer_seconds / (self.wall_seconds * self.concurrency) if self.wall_seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"sweep efficiency {self.ratio:.2f}: {self.trainer_seconds:.0f} trainer seconds in "
            f"{self.wall_seconds:.0f} s of wall time with up to {self.concurrency} trial(s) at once"
        )


def sweep_efficiency(results, started: float, wall: float, concurrency: int) -> Efficiency:
    """The efficiency of the epochs trained from `started` (a Unix time) on; epochs trained in an earlier session
    and reported again on resume are not this session's work."""
    trainer_seconds = 0.0
    for result in results:
        frame = result.metrics_dataframe
        if frame is None or "seconds" not in frame:
            continue
        # Tune's timestamps are whole seconds: a record of the session before may carry the second this one began in.
        trained = frame["timestamp"] > started
        if REPLAYED in frame:
            trained &= ~frame[REPLAYED].astype(bool)
        trainer_seconds += float(frame.loc[trained, "seconds"].sum())
    return Efficiency(trainer_seconds, wall, concurrency)
