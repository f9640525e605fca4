"""Optuna's side of the sweep: one study per group, in SQLite in the sweep's output directory or in a database
that a team shares (--optuna-storage), where optuna-dashboard can watch a running sweep.

An Optuna trial here is a *configuration*, not a restart. Its intermediate values
are the per-epoch means of the dev scores of the configuration's scouts (its first
restarts, which run together: SearchSpace.scouts), which is what the pruner compares
across the configurations of one group; its value is the best of those means. Each
scout's own scores and the configuration's ε per epoch are kept in the trial's user
attributes, until every scout has reported an epoch and for the pruning rules. Only the sweep's driver process opens
the storage (the searcher and the scheduler both run there), so SQLite is safe.

Everything here uses Optuna's public API (`ask`, `tell`, `Trial.report`,
`Trial.should_prune`, the storage's id look-ups), so no Optuna internals are pinned.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from optuna.trial import TrialState

from orchestrator.databases import DatabaseError, check_database
from orchestrator.outdir import OPTUNA_DB
from orchestrator.space import FloatRange, IntRange, SearchSpace
from orchestrator.trials import TrialMeta

SCOUT_VALUES, GOLD_PROBABILITY = "scout_values", "gold_probability"  # user attributes of a configuration's trial
optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from the sweep, not from Optuna


def storage_url(out_dir: Path) -> str:
    return f"sqlite:///{Path(out_dir).resolve() / OPTUNA_DB}"


class StorageError(ValueError):
    """An --optuna-storage the sweep refuses or cannot open; the message never holds a password."""


def resolve_storage(flag: str | None, out_dir: Path) -> str:
    """The storage's URL: --optuna-storage, else SQLite in the output directory. A URL with a password in it is
    refused rather than masked: the URL is written into sweep.json and printed, and a resumed sweep must be
    given the same one. The database's driver (libpq for PostgreSQL) reads the password from its usual places,
    PGPASSWORD or ~/.pgpass."""
    if flag is None:
        return storage_url(out_dir)
    try:
        url = sqlalchemy.engine.make_url(flag)
    except sqlalchemy.exc.ArgumentError:  # its message does not repeat the URL
        raise StorageError("--optuna-storage: not a database URL (e.g. postgresql://USER@HOST:5432/DATABASE)") from None
    if url.password is not None or "password" in url.query:
        raise StorageError(
            f"--optuna-storage {url.render_as_string(hide_password=True)}: the URL holds a password, which would be "
            "written into sweep.json and printed; give the URL without it and the password through PGPASSWORD or "
            "~/.pgpass (deploy/README.md)"
        )
    return flag


def check_storage(url: str) -> None:
    """Raises StorageError unless the database at `url` takes a connection within seconds, so that a wrong host,
    password or missing driver refuses the sweep before anything is written. The sweep's own SQLite file is
    created on first use."""
    try:
        check_database(url, "--optuna-storage")
    except DatabaseError as error:
        raise StorageError(str(error)) from None


def study_prefix(url: str, out_dir: Path, space_name: str, sweep_run_id: str) -> str:
    """What the groups' study names start with: nothing in the sweep's own SQLite file; SPACE/RUN-ID/ (the
    sweep's MLflow run) in a storage that sweeps share, so that theirs neither collide nor mix, and the
    dashboard lists each sweep's studies together."""
    return "" if url == storage_url(out_dir) else f"{space_name}/{sweep_run_id}/"


def build_pruner(space: SearchSpace) -> optuna.pruners.BasePruner:
    spec = space.pruner
    if spec.type == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec.startup, n_warmup_steps=spec.warmup_epochs, interval_steps=spec.interval
        )
    if spec.type == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=spec.min_resource,
            reduction_factor=spec.reduction_factor,
            min_early_stopping_rate=spec.min_early_stopping_rate,
        )
    if spec.type == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=spec.min_resource, max_resource=space.epochs, reduction_factor=spec.reduction_factor
        )
    return optuna.pruners.NopPruner()


def build_sampler(space: SearchSpace, group: str, number: int) -> optuna.samplers.BaseSampler:
    """A sampler seeded by (seed, group, configuration number): a resumed sweep, which builds a fresh
    sampler, proposes exactly what the interrupted one would have."""
    spec = space.sampler
    seed_parts = [getattr(spec, "seed", 0), list(space.groups).index(group), number]
    seed = int(np.random.SeedSequence(seed_parts).generate_state(1)[0])
    if spec.type == "tpe":
        return optuna.samplers.TPESampler(n_startup_trials=spec.startup, seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)  # grid configurations are enqueued, so never sampled


def open_storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's storage at `url`. Sweeps that open a fresh shared database at the same moment all create Optuna's
    tables, and all but one fail (a duplicate table or version row): they find the tables made when they try
    again. A database server may drop idle connections during a long epoch: each is tested before use."""
    options = {} if url.startswith("sqlite:") else {"pool_pre_ping": True}
    for attempt in range(1, attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=options)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            time.sleep(attempt)
    return optuna.storages.RDBStorage(url, engine_kwargs=options)  # the last attempt raises what it meets


class Studies:
    """Opens the groups' studies lazily; holds no state that is not in the storage, so it pickles to its URL."""

    def __init__(self, url: str, space: SearchSpace, prefix: str = ""):
        self.url = url
        self.space = space
        self.prefix = prefix  # see study_prefix
        self.direction = "maximize" if space.metric.mode == "max" else "minimize"
        self._storage: optuna.storages.BaseStorage | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_storage": None}

    @property
    def storage(self) -> optuna.storages.BaseStorage:
        if self._storage is None:
            self._storage = open_storage(self.url)
        return self._storage

    def name(self, group: str) -> str:
        return self.prefix + group

    def create_all(self) -> None:
        """Creates the storage and every study up front, in the driver (SQLite schema creation races otherwise)."""
        for group in self.space.groups:
            optuna.create_study(
                study_name=self.name(group), storage=self.storage, direction=self.direction, load_if_exists=True
            )

    def study(self, group: str, number: int = 0) -> optuna.Study:
        return optuna.load_study(
            study_name=self.name(group),
            storage=self.storage,
            sampler=build_sampler(self.space, group, number),
            pruner=build_pruner(self.space),
        )

    def ask(self, group: str) -> tuple[int, dict[str, Any]]:
        """A new configuration of `group`: (number, axis values). Grid points are enqueued in file order,
        skipping those an earlier (interrupted) session already asked for."""
        study = self.study(group, number=len(self.study(group).get_trials(deepcopy=False)))
        axes = self.space.group_axes(group)
        if self.space.sampler.type == "grid":
            taken = [trial.params for trial in study.trials]
            remaining = [point for point in self.space.grid(group) if point not in taken]
            waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if remaining and not waiting:
                study.enqueue_trial(remaining[0])
        trial = study.ask()
        params = {key: suggest(trial, key, axis) for key, axis in axes.items()}
        return trial.number, params

    def trial_id(self, group: str, number: int) -> int:
        study_id = self.storage.get_study_id_from_name(self.name(group))
        return self.storage.get_trial_id_from_study_id_trial_number(study_id, number)

    def frozen(self, group: str, number: int) -> optuna.trial.FrozenTrial:
        return self.storage.get_trial(self.trial_id(group, number))

    def state(self, group: str, number: int) -> TrialState:
        return self.frozen(group, number).state

    def report_and_check(self, group: str, number: int, epoch: int, value: float, check: bool = True) -> bool:
        """Feeds one epoch's dev score to the configuration's Optuna trial; True if `check` and its pruner
        says stop. A step reported twice (a trial resumed from an older checkpoint) keeps its first value."""
        if self.state(group, number) != TrialState.RUNNING:
            return False
        trial = optuna.trial.Trial(self.study(group), self.trial_id(group, number))
        if epoch not in self.frozen(group, number).intermediate_values:
            trial.report(value, step=epoch)
        return check and trial.should_prune()

    def pruned(self, meta: TrialMeta) -> bool:
        """Whether a Tune trial was stopped by the pruner (only scouts are: pruning.py)."""
        return meta.scout and self.state(meta.group, meta.number) == TrialState.PRUNED

    def record_scout(
        self, group: str, number: int, restart: int, epoch: int, value: float, gold_probability: float, scouts: int
    ) -> float | None:
        """Keeps one scout's dev score and ε of one epoch; returns the mean over the configuration's `scouts`
        scouts once all of them have reported that epoch (a scout that ran ahead waits for the others), else
        None. A repeated epoch (a resumed trial) keeps its first value."""
        frozen = self.frozen(group, number)
        values = dict(frozen.user_attrs.get(SCOUT_VALUES, {}))
        mine = dict(values.get(str(restart), {}))
        mine.setdefault(str(epoch), value)
        values[str(restart)] = mine
        gold = dict(frozen.user_attrs.get(GOLD_PROBABILITY, {}))
        gold.setdefault(str(epoch), gold_probability)
        trial_id = self.trial_id(group, number)
        self.storage.set_trial_user_attr(trial_id, SCOUT_VALUES, values)
        self.storage.set_trial_user_attr(trial_id, GOLD_PROBABILITY, gold)
        at_epoch = [values.get(str(r), {}).get(str(epoch)) for r in range(scouts)]
        return None if None in at_epoch else float(np.mean(at_epoch))

    def fed_own_choice(self, group: str, number: int, epoch: int, max_gold_probability: float) -> bool:
        """Whether, at `epoch`, this configuration or some completed configuration of its group was fed gold at
        most `max_gold_probability` of the time (PruningRules): only then can they differ by what they feed."""
        completed = self.study(group).get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        for frozen in [self.frozen(group, number), *completed]:
            gold = frozen.user_attrs.get(GOLD_PROBABILITY, {}).get(str(epoch))
            if gold is not None and gold <= max_gold_probability:
                return True
        return False

    def tell(self, group: str, number: int, state: TrialState, value: float | None = None) -> None:
        """Finishes a configuration's Optuna trial once; later calls for the same trial do nothing."""
        if self.state(group, number) != TrialState.RUNNING:
            return
        study = self.study(group)
        if state == TrialState.COMPLETE:
            study.tell(number, value)
        else:
            study.tell(number, state=state)

    def asked_configurations(self, group: str) -> list[tuple[int, dict[str, Any]]]:
        """Configurations asked for, finished or not (a killed session may have asked for some after it last
        saved its experiment); a grid point enqueued but not yet asked for is not one. A driver killed between
        Optuna's ask and its suggestions left a configuration without axis values: they are suggested now (an
        enqueued grid point gets its own values back), or it would run without them."""
        study = self.study(group)
        axes = self.space.group_axes(group)
        states = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        asked = []
        for frozen in study.get_trials(deepcopy=False, states=states):
            params = frozen.params
            if frozen.state == TrialState.RUNNING and not axes.keys() <= params.keys():
                owner = self.study(group, frozen.number)
                owner.get_trials(deepcopy=False)  # Optuna writes a suggestion through the study's cache of its trials
                trial = optuna.trial.Trial(owner, self.trial_id(group, frozen.number))
                params = {key: suggest(trial, key, axis) for key, axis in axes.items()}
            asked.append((frozen.number, params))
        return asked

    def best_intermediate(self, group: str, number: int) -> float | None:
        values = list(self.frozen(group, number).intermediate_values.values())
        if not values:
            return None
        return max(values) if self.direction == "maximize" else min(values)


def suggest(trial: optuna.Trial, key: str, axis: Any) -> Any:
    if isinstance(axis, list):
        return trial.suggest_categorical(key, axis)
    if isinstance(axis, IntRange):
        return trial.suggest_int(key, axis.low, axis.high, step=axis.step, log=axis.log)
    assert isinstance(axis, FloatRange)
    return trial.suggest_float(key, axis.low, axis.high, log=axis.distribution == "loguniform")
