"""What the sweep prints while it runs: one line per finished, pruned or failed trial (a Tune callback)."""

from __future__ import annotations

import os
import sys
import time

from ray.tune import Callback

from orchestrator.studies import Studies


class TrialLines(Callback):
    def __init__(self, studies: Studies):
        self.studies = studies
        self.metric = studies.space.metric.name
        self.mode = studies.space.metric.mode
        self._started: dict[str, float] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self._started[trial.trial_id] = time.monotonic()

    def on_trial_complete(self, iteration, trials, trial, **info):
        meta = trial.config["sweep"]
        epoch = trial.last_result.get("epoch", 0)
        best = trial.metric_analysis.get(self.metric, {}).get(self.mode)
        score = f" (best {self.metric} {best:.2f})" if best is not None else ""
        pruned = self.studies.pruned(meta)
        self._line(trial, f"PRUNED at epoch {epoch}{score}" if pruned else f"done after epoch {epoch}{score}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trial, f"FAILED: see {os.path.join(trial.path, 'error.txt')}")

    def _line(self, trial, what: str) -> None:
        started = self._started.pop(trial.trial_id, None)
        took = f" [{time.monotonic() - started:.0f}s]" if started is not None else ""
        print(f"trial {trial.config['sweep']['key']:<36} {what}{took}", file=sys.stdout, flush=True)
