"""The Optuna pruner as a Ray Tune scheduler: Optuna decides, Tune stops the trial.

Tune's own `OptunaSearch` never asks its pruner (STACK.md), so pruning lives
here: every epoch of a configuration's scouts is recorded in that configuration's
Optuna trial, and once all its scouts have reported an epoch their mean is
reported (`Trial.report`) and the group's pruner is asked `should_prune`; on yes
the Optuna trial is told PRUNED and Tune is told STOP, for each scout in turn.

The rules every decision keeps to, whichever of Optuna's pruners makes it
(space.PruningRules, issue 17):
- configurations are compared only inside their group (one study per group);
- a decision rests on the mean of the configuration's scouts, its first
  `seeds` restarts (seeds 1, 2, ...), each configuration seen through the same
  seeds: one seed alone would prune on seed noise, which restarts exist to
  measure. The other restarts start only once the scouts have finished
  unpruned (searcher.py), and always run their full budget;
- no verdict at an epoch where this configuration and every completed one it
  is compared with were still (almost) all fed gold: k and α act only through
  what is fed, so until then their differences are seed noise;
- the last epoch is reported but never pruned: a trial that ran its whole
  budget is complete.

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
        space = studies.space
        self.metric_name = space.metric.name
        self.epochs = space.epochs
        self.scouts = space.scouts
        self.max_gold_probability = getattr(space.pruner, "max_gold_probability", 1.0)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        meta = TrialMeta.of(trial.config)
        if not meta.scout:
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
            # Its sibling scout was pruned at the epoch this one is past, or it was pruned before its driver was
            # killed and now repeats the epochs it had reported: either way it stops at the epoch of the verdict.
            return TrialScheduler.STOP if epoch >= configuration.last_step else TrialScheduler.CONTINUE
        if configuration.state != TrialState.RUNNING:
            return TrialScheduler.CONTINUE  # a sibling scout failed the configuration; this one runs on
        gold = float(result.get("gold_probability", 1.0))
        mean = self.studies.record_scout(group, number, meta.restart, epoch, float(result[self.metric_name]), gold,
                                         self.scouts)  # fmt: skip
        if mean is None:
            return TrialScheduler.CONTINUE  # another scout has not reached this epoch yet
        check = epoch < self.epochs and self.studies.fed_own_choice(group, number, epoch, self.max_gold_probability)
        if self.studies.report_and_check(group, number, epoch, mean, check):
            self.studies.tell(group, number, TrialState.PRUNED)
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE
