"""A Ray Tune searcher that asks the groups' Optuna studies for configurations and runs each restart as a trial.

One Tune trial = one configuration × one restart (seed). A configuration's first
restarts (its scouts, SearchSpace.scouts: one without a pruner) are queued together
ahead of everything else, and are the only ones the pruner watches (pruning.py says
why); once they have all finished unpruned, the configuration's other restarts are
queued ahead of new configurations. New configurations are taken from the groups
in turn, so that every row of the table makes progress.

State that must survive an interrupted sweep lives in two places: the Optuna
storage (configurations and their fate) and this searcher's checkpoint, which
Tune saves with the experiment (which Tune trial is which restart). A
configuration that Optuna holds but that no trial of the restored experiment
runs (asked after the last saved experiment, before a hard kill) is run again
rather than lost.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

from optuna.trial import TrialState
from ray.tune.search import Searcher

from orchestrator.space import SearchSpace, config_id
from orchestrator.studies import Studies
from orchestrator.trials import TrialMeta, trial_config


@dataclass
class Configuration:
    group: str
    number: int  # the Optuna trial number within the group's study
    params: dict  # axis values
    launched: int = 0  # restarts handed to Tune so far
    scout: str = "RUNNING"  # Optuna state of the configuration: RUNNING, COMPLETE, PRUNED, FAIL
    scouts_ended: set[int] = field(default_factory=set)  # scouts (restart indices) that Tune saw end

    @property
    def config_id(self) -> str:
        return config_id(self.group, self.number)


@dataclass
class SearchState:
    configurations: dict[str, Configuration] = field(default_factory=dict)  # by config id, in ask order
    trials: dict[str, tuple[str, int]] = field(default_factory=dict)  # Tune trial id -> (config id, restart)
    live: set[str] = field(default_factory=set)  # Tune trial ids suggested and not yet complete


class RestartSearcher(Searcher):
    def __init__(self, space: SearchSpace, studies: Studies, max_concurrent: int):
        super().__init__(metric=space.metric.name, mode=space.metric.mode)
        self.space = space
        self.studies = studies
        self.max_concurrent = max_concurrent
        self.state = SearchState()
        self._reconciled = False

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True

    def suggest(self, trial_id: str) -> dict | str | None:
        if not self._reconciled:
            self._reconcile()
        if len(self.state.live) >= self.max_concurrent:
            return None
        picked = self._next_restart() or self._next_configuration()
        if picked is None:
            return None if self.state.live else Searcher.FINISHED
        configuration, restart = picked
        configuration.launched += 1
        self.state.trials[trial_id] = (configuration.config_id, restart)
        self.state.live.add(trial_id)
        return self.trial_config(configuration, restart)

    def trial_config(self, configuration: Configuration, restart: int) -> dict:
        group, number, params = configuration.group, configuration.number, dict(configuration.params)
        meta = TrialMeta(group, number, restart, params, self.space.resources.cpus, restart < self.space.scouts)
        return trial_config(self.space.trainer_tree(group, params, restart), meta)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.state.trials:
            return
        self.state.live.discard(trial_id)
        cid, restart = self.state.trials[trial_id]
        configuration = self.state.configurations[cid]
        if restart >= self.space.scouts:
            return
        group, number = configuration.group, configuration.number
        configuration.scouts_ended.add(restart)
        if error:
            self.studies.tell(group, number, TrialState.FAIL)  # the other scouts run on; no further restarts
        elif len(configuration.scouts_ended) == self.space.scouts:
            best = self.studies.best_intermediate(group, number)  # of the scouts' means
            if best is None:
                self.studies.tell(group, number, TrialState.FAIL)
            else:
                self.studies.tell(group, number, TrialState.COMPLETE, best)  # no-op if the pruner told PRUNED
        configuration.scout = self.studies.state(group, number).name

    def _next_restart(self) -> tuple[Configuration, int] | None:
        """A scout of a configuration already asked for (its scouts start together), else a further restart of a
        configuration whose scouts all finished unpruned."""
        for configuration in self.state.configurations.values():
            if 0 < configuration.launched < self.space.scouts:
                return configuration, configuration.launched
        for configuration in self.state.configurations.values():
            if configuration.scout == "COMPLETE" and configuration.launched < self.space.restarts:
                return configuration, configuration.launched
        return None

    def _next_configuration(self) -> tuple[Configuration, int] | None:
        for configuration in self.state.configurations.values():  # adopted from an interrupted session
            if configuration.launched == 0:
                return configuration, 0
        asked = {group: 0 for group in self.space.groups}
        for configuration in self.state.configurations.values():
            asked[configuration.group] += 1
        open_groups = [g for g in self.space.groups if asked[g] < self.space.planned_configurations(g)]
        if not open_groups:
            return None
        group = min(open_groups, key=lambda g: asked[g])  # stable: file order breaks ties
        number, params = self.studies.ask(group)
        configuration = Configuration(group, number, params)
        self.state.configurations[configuration.config_id] = configuration
        return configuration, 0

    def _reconcile(self) -> None:
        """Brings the saved state up to date with the Optuna storage, which may be ahead of it.

        A configuration asked for after the last saved experiment (the driver was killed) has no trial in it,
        even if its scout finished or was pruned: it is adopted and its scout runs again as a new Tune trial,
        which resumes from the checkpoints the lost one left in storage (trainable.py) and so trains nothing
        twice; the sweep then has a trial for each of its restarts.
        """
        for group in self.space.groups:
            for number, params in self.studies.asked_configurations(group):
                cid = config_id(group, number)
                if cid not in self.state.configurations:
                    self.state.configurations[cid] = Configuration(group, number, params)
        for configuration in self.state.configurations.values():
            configuration.scout = self.studies.state(configuration.group, configuration.number).name
        self._reconciled = True

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.state, file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.state = pickle.load(file)
        self._reconciled = False
