"""The Optuna pruner as a Ray Tune scheduler: Optuna decides, Tune stops the trial.

Tune's own `OptunaSearch` never asks its pruner (STACK.md), so pruning lives
here: every epoch of a configuration's first restart is reported to that
configuration's Optuna trial, the group's pruner is asked `should_prune`, and
on yes the Optuna trial is told PRUNED and Tune is told STOP.

Why only the first restart: restarts of one configuration differ only by seed,
and pruning one seed because its sibling is ahead would select on seed noise —
what restarts exist to measure — and would leave fewer restarts to the
configurations that happen to vary most. So the pruner compares configurations,
each seen through the same restart index (same seed) as every other
configuration of its group; the other restarts of a configuration start only
once its first restart has finished unpruned (see searcher.py), and they always
run their full budget.

The scheduler keeps no state of its own (Tune restores it from a pickle taken
at the start, STACK.md): everything it needs is in the Optuna storage.
"""

from __future__ import annotations

from optuna.trial import TrialState
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.studies import Studies
from orchestrator.trials import TrialMeta


class OptunaPruningScheduler(FIFOScheduler):
    def __init__(self, studies: Studies):
        super().__init__()
        self.studies = studies
        self.metric_name = studies.space.metric.name
        self.epochs = studies.space.epochs

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        meta = TrialMeta.of(trial.config)
        if not meta.is_scout:
            return TrialScheduler.CONTINUE
        if self.metric_name not in result:
            raise KeyError(
                f"trial {meta.key} reported no {self.metric_name!r} (it reported {sorted(result)}); "
                "fix metric.name in the search space"
            )
        epoch = int(result["epoch"])
        group, number = meta.group, meta.number
        configuration = self.studies.frozen(group, number)
        if configuration.state == TrialState.PRUNED:
            # Pruned before its driver was killed, and resumed from an experiment saved earlier: it repeats
            # the epochs it had reported, and stops again at the one it was pruned at.
            return TrialScheduler.STOP if epoch >= configuration.last_step else TrialScheduler.CONTINUE
        # The last epoch is reported (other configurations are compared against it) but never pruned:
        # a trial that ran its whole budget is complete.
        check = epoch < self.epochs
        if self.studies.report_and_check(group, number, epoch, float(result[self.metric_name]), check):
            self.studies.tell(group, number, TrialState.PRUNED)
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE
