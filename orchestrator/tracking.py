"""MLflow: one experiment per search space; runs nested sweep → configuration → restart (one per trial).

All MLflow calls happen in the sweep's driver: a Tune callback turns each
trial's reported epochs into that trial's run (as Ray's own MLflowLoggerCallback
does), so workers need no tracking URI and SQLite has one writer. A
configuration's run carries its parameters (those of its restarts, seed aside)
and, once its restarts have ended, their per-epoch dev metrics as mean ± std:
the UI then compares configurations directly, which is what a sweep is for.
Runs are found again by their `config_id` / `trial_key` tags under the sweep's
run id, so a resumed sweep reopens them instead of duplicating them, and epochs
already logged are not logged twice.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from orchestrator.databases import DatabaseError, check_database
from orchestrator.outdir import ARTIFACTS_DIR, MLFLOW_DB, SweepState
from orchestrator.space import SearchSpace, validated_flat_config
from orchestrator.studies import Studies
from orchestrator.trainable import NODE_KEY
from orchestrator.trials import Fate, TrialMeta, fate, trainer_tree

EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
SWEEP_TAG, KIND_TAG = "sweep_run_id", "run_kind"  # on every run under a sweep: its sweep, and which level it is
CONFIGURATION, RESTART = "configuration", "restart"
ENDED = (Fate.COMPLETE, Fate.PRUNED, Fate.FAILED)  # a run's `state` tag once it will log nothing more


def default_tracking_uri(out_dir: Path) -> str:
    """A SQLite store in the output directory, absolute (MLflow's default is relative to the working directory)."""
    return f"sqlite:///{Path(out_dir).resolve() / MLFLOW_DB}"


def resolve_tracking_uri(flag: str | None, out_dir: Path) -> str:
    return flag or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(out_dir)


def is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/"))


class TrackingStoreError(ConnectionError):
    """A tracking store that does not answer or refuses us; the message names its URI (never a password)."""


DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")  # MLflow's SQLAlchemy stores, with or without +driver


def check_store(uri: str, timeout: float = 30.0) -> None:
    """Raises TrackingStoreError unless the tracking store at `uri` can be used, checked in seconds before the
    sweep starts, since MLflow's client retries for minutes before it fails (issues 7 and 16):
    - an HTTP server must answer its /health endpoint and accept the credentials in the environment
      (MLFLOW_TRACKING_USERNAME/PASSWORD, read by MLflow's client) within `timeout` seconds each (a basic-auth
      server just started took 13 s to answer its first authenticated call on a busy machine);
    - a database must take a connection within 5 s (a SQLite file's folder must exist);
    - a file store must be allowed (MLFLOW_ALLOW_FILE_STORE) and its folder's parent must exist."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0] if "://" in uri or uri.startswith("sqlite:") else ""
    if scheme in ("http", "https"):
        check_server(uri, timeout)
    elif scheme in DATABASE_SCHEMES:
        try:
            check_database(uri, "--tracking-uri")
        except DatabaseError as error:
            raise TrackingStoreError(str(error)) from None
    elif scheme in ("", "file"):
        path = Path(urllib.parse.urlparse(uri).path if scheme else uri).expanduser().absolute()
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
            raise TrackingStoreError(
                f"--tracking-uri {uri}: a file store, which MLflow 3 refuses unless MLFLOW_ALLOW_FILE_STORE=true; "
                f"give a database instead, e.g. sqlite:///{path.parent / MLFLOW_DB}"
            )
        if not path.parent.is_dir():
            raise TrackingStoreError(f"--tracking-uri {uri}: the folder {path.parent} does not exist")


def check_server(uri: str, timeout: float) -> None:
    """An HTTP tracking server: see check_store."""
    base = uri.rstrip("/")
    problem = _http_problem(f"{base}/health", None, timeout)  # unprotected, also under MLflow's basic-auth app
    if problem is None:
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        credentials = (user, os.environ.get("MLFLOW_TRACKING_PASSWORD", "")) if user else None
        problem = _http_problem(f"{base}/api/2.0/mlflow/experiments/search?max_results=1", credentials, timeout)
    if problem is not None:
        raise TrackingStoreError(f"MLflow tracking server {uri}: {problem}")


def _http_problem(url: str, credentials: tuple[str, str] | None, timeout: float) -> str | None:
    request = urllib.request.Request(url)
    if credentials is not None:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError as error:
        if error.code == 401 and credentials is None:
            return "it asks for credentials; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        if error.code == 401:
            return f"it rejected the credentials of user {credentials[0]!r} (MLFLOW_TRACKING_USERNAME/PASSWORD)"
        if error.code == 403:
            return f"user {credentials[0] if credentials else '(none)'!r} may not read its experiments (HTTP 403)"
        return f"{url} answered HTTP {error.code}: is it an MLflow tracking server?"
    except (urllib.error.URLError, OSError) as error:  # refused, unknown host, timed out
        return (
            f"not reachable (no answer from {url}: {getattr(error, 'reason', error)}); start it, or give "
            "another --tracking-uri (or $MLFLOW_TRACKING_URI)"
        )


def prepare_experiment(uri: str, name: str, out_dir: Path) -> str:
    """The experiment's id, created in the driver once (concurrent creation races); artifacts of a local store
    go to OUT/mlartifacts instead of ./mlruns of whatever directory the command ran in."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    try:
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            location = (Path(out_dir).resolve() / ARTIFACTS_DIR).as_uri() if is_local_store(uri) else None
            experiment_id = client.create_experiment(name, artifact_location=location)
        # MLflow 3 opens an experiment of unknown kind on its GenAI overview; this one is model training: the runs.
        # Set by every sweep, which is also how a user who may not write to the experiment is refused here.
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    except MlflowException as error:
        if error.error_code == "RESOURCE_ALREADY_EXISTS":  # a teammate's sweep created it a moment ago
            return prepare_experiment(uri, name, out_dir)
        if error.error_code != "PERMISSION_DENIED" and tagged(client, name):
            return client.get_experiment_by_name(name).experiment_id  # a teammate's sweep set the tag at once
        if error.error_code == "PERMISSION_DENIED":
            user = os.environ.get("MLFLOW_TRACKING_USERNAME", "(none)")
            raise TrackingStoreError(
                f"MLflow tracking server {uri}: user {user!r} may not write to experiment {name!r}; an admin can "
                "grant EDIT on it (deploy/README.md: the sweepers role)"
            ) from None
        raise
    return experiment_id


def tagged(client: MlflowClient, name: str) -> bool:
    """Whether experiment `name` carries the model-training kind (two sweeps setting it at once: one of them gets
    a duplicate-key error from a database store)."""
    experiment = client.get_experiment_by_name(name)
    return experiment is not None and experiment.tags.get(EXPERIMENT_KIND_TAG) == MODEL_TRAINING_KIND


def start_parent_run(uri: str, experiment_id: str, space: SearchSpace, space_file: Path, out_dir: Path) -> str:
    client = MlflowClient(uri)
    run = client.create_run(
        experiment_id,
        run_name=f"sweep {out_dir.name}",
        tags={
            "sweep.space_file": str(space_file),
            "sweep.out_dir": str(out_dir),
            "sweep.sampler": space.sampler.type,
            "sweep.pruner": space.pruner.type,
            "mlflow.note.content": space.description or f"Sweep of {space_file}",
        },
    )
    settings = {
        "task": space.task,
        "epochs": space.epochs,
        "restarts": space.restarts,
        "first_seed": space.seed,
        "metric": space.metric.name,
        "mode": space.metric.mode,
        "sampler": space.sampler.model_dump_json(),
        "pruner": space.pruner.model_dump_json(),
        "groups": ",".join(space.groups),
        "rows": ",".join(space.rows),
    }
    client.log_batch(run.info.run_id, params=[mlflow.entities.Param(k, str(v)) for k, v in settings.items()])
    return run.info.run_id


@dataclass
class KnownRun:
    """What the driver knows of one of the sweep's runs: it reads the store once per session, then keeps this up
    to date as it writes, so that no event searches the store (a search scans every run of the experiment)."""

    run_id: str
    tags: dict[str, str]
    params: set[str]  # names logged
    metrics: dict[str, float]  # latest values
    status: str = "RUNNING"
    last_step: int | None = None  # last epoch logged; None: not read yet (a run from an earlier session)
    nodes: list[str] = field(default_factory=list)  # Ray node ids it ran on, in order

    @classmethod
    def of(cls, run) -> KnownRun:
        nodes = [node for node in run.data.tags.get("nodes", "").split(",") if node]
        return cls(run.info.run_id, dict(run.data.tags), set(run.data.params), dict(run.data.metrics),
                   run.info.status, nodes=nodes)  # fmt: skip


class MlflowTrials(Callback):
    """Tune callback (driver side): a run per configuration and, nested in it, a run per trial (restart) with
    params, row tags, per-epoch metrics, the nodes it ran on, its attempts and its fate."""

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, space: SearchSpace, studies: Studies):
        self.uri = uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.space = space
        self.studies = studies
        self._restarts: dict[str, KnownRun] | None = None  # by trial key; None until read from the store
        self._configurations: dict[str, KnownRun] = {}  # by config id
        self._client: MlflowClient | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client": None, "_restarts": None, "_configurations": {}}

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.uri)
        return self._client

    def _known(self) -> dict[str, KnownRun]:
        """The sweep's runs by trial key (configurations by config id aside), read once per session."""
        if self._restarts is None:
            read = {kind: sweep_runs(self.client, self.experiment_id, self.parent_run_id, kind)
                    for kind in (RESTART, CONFIGURATION)}  # fmt: skip
            self._restarts = {run.data.tags["trial_key"]: KnownRun.of(run) for run in read[RESTART]}
            self._configurations = {run.data.tags["config_id"]: KnownRun.of(run) for run in read[CONFIGURATION]}
        return self._restarts

    def restart_run(self, trial) -> KnownRun:
        meta = TrialMeta.of(trial.config)
        key = meta.key
        known = self._known()
        if key not in known:
            configuration = self.configuration_run(trial)
            tags = {
                **self._row_tags(trial),
                "mlflow.parentRunId": configuration.run_id,
                KIND_TAG: RESTART,
                "trial_key": key,
                "restart": str(meta.restart),
                "seed": str(trainer_tree(trial.config)["seed"]),
                "pruned": "false",
                "attempts": "0",
            }
            known[key] = self._create(key, tags, trial_flat_config(trial.config))
            known[key].last_step = 0
        elif not known[key].params:
            self._log_params(known[key], trial_flat_config(trial.config))
        return known[key]

    def configuration_run(self, trial) -> KnownRun:
        cid = TrialMeta.of(trial.config).config_id
        self._known()
        if cid not in self._configurations:
            tags = {**self._row_tags(trial), "mlflow.parentRunId": self.parent_run_id, KIND_TAG: CONFIGURATION}
            self._configurations[cid] = self._create(cid, tags, shared_params(trial))
        elif not self._configurations[cid].params:
            self._log_params(self._configurations[cid], shared_params(trial))
        return self._configurations[cid]

    def _create(self, name: str, tags: dict, params: dict) -> KnownRun:
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        run = KnownRun(run_id, tags, params=set(), metrics={})
        self._log_params(run, params)
        return run

    def _log_params(self, run: KnownRun, params: dict) -> None:
        """Hyper-parameters not logged yet (all for a new run; some for one whose driver was killed after
        creating it)."""
        entities = [mlflow.entities.Param(k, str(v)) for k, v in sorted(params.items()) if k not in run.params]
        for start in range(0, len(entities), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run.run_id, params=entities[start : start + 100])
        run.params |= set(params)

    def _row_tags(self, trial) -> dict:
        meta = TrialMeta.of(trial.config)
        rows = self.space.rows_of(trial_flat_config(trial.config))
        return {
            SWEEP_TAG: self.parent_run_id,
            "config_id": meta.config_id,
            "group": meta.group,
            "rows": ",".join(rows),
            **{f"row.{row}": "true" for row in rows},
            **{f"table{self.space.rows[row].table}_row": row for row in rows},
            "state": "RUNNING",
        }

    def _write(self, run: KnownRun, tags: dict[str, str] | None = None, metrics: list | None = None) -> None:
        """Tags and metrics in one call to the store."""
        tags = {name: value for name, value in (tags or {}).items() if run.tags.get(name) != value}
        if tags or metrics:
            entities = [mlflow.entities.RunTag(name, value) for name, value in tags.items()]
            self.client.log_batch(run.run_id, metrics=metrics or [], tags=entities)
        run.tags.update(tags)
        run.metrics.update({metric.key: metric.value for metric in metrics or []})

    def _end(self, run: KnownRun, status: str) -> None:
        self.client.set_terminated(run.run_id, status)
        run.status = status

    def on_trial_start(self, iteration, trials, trial, **info):
        """Tune starts a trial once, and again after each failure it retries and each driver resume."""
        run = self.restart_run(trial)
        if run.status != "RUNNING":
            self.client.update_run(run.run_id, status="RUNNING")
            run.status = "RUNNING"
        self._write(run, tags={"state": "RUNNING", "attempts": str(int(run.tags.get("attempts", "0")) + 1)})

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run = self.restart_run(trial)
        if run.last_step is None:  # reopened from an earlier session: what it logged then
            history = self.client.get_metric_history(run.run_id, self.space.metric.name)
            run.last_step = max((m.step for m in history), default=0)
        node = result.get(NODE_KEY)
        tags = {}
        if node and (not run.nodes or run.nodes[-1] != node):
            run.nodes.append(node)
            tags["nodes"] = ",".join(run.nodes)
        epoch = int(result.get("epoch", 0))
        metrics = []
        if epoch > run.last_step:  # else logged before an interruption, repeated from an older checkpoint
            timestamp = int(result.get("timestamp", 0)) * 1000
            metrics = [mlflow.entities.Metric(name, float(result[name]), timestamp, epoch)
                       for name in trial_metric_names(result)]  # fmt: skip
            run.last_step = epoch
        self._write(run, tags=tags, metrics=metrics)

    def on_trial_complete(self, iteration, trials, trial, **info):
        run = self.restart_run(trial)
        epoch = int(trial.last_result.get("epoch", 0))
        ended = fate(TrialMeta.of(trial.config), False, epoch, self.space.epochs, self.studies)
        pruned = ended == Fate.PRUNED
        tags = {"state": ended, "pruned": str(pruned).lower(), "epochs_run": str(epoch)}
        if pruned:
            tags["pruned_at_epoch"] = str(epoch)
        if trial.checkpoint is not None:
            tags["best_checkpoint"] = os.path.join(trial.checkpoint.path, "best.pt")
        metric = self.space.metric
        best = trial.metric_analysis.get(metric.name, {}).get(metric.mode)
        name = f"best_{metric.name}"  # what selection ranks restarts by: one column to sort on in the UI
        # A trial that finished just before its driver was killed completes again when resumed: log it once.
        metrics = []
        if best is not None and run.metrics.get(name) != float(best):
            metrics = [mlflow.entities.Metric(name, float(best), int(time.time() * 1000), 0)]
        self._write(run, tags=tags, metrics=metrics)
        self._end(run, "FINISHED")
        self.settle(self.configuration_run(trial))

    def on_trial_error(self, iteration, trials, trial, **info):
        run = self.restart_run(trial)
        self._write(run, tags={"state": Fate.FAILED, "error_file": os.path.join(trial.path, "error.txt")})
        self._end(run, "FAILED")
        self.settle(self.configuration_run(trial))

    def on_experiment_end(self, trials, **info):
        """Configurations whose last restart ended in an earlier session (killed before it settled them)."""
        self._known()
        for configuration in list(self._configurations.values()):
            if configuration.status != "FINISHED":
                self.settle(configuration)

    def settle(self, configuration: KnownRun) -> None:
        """Once every restart the configuration will have has ended (only its scouts, if they were pruned or one
        failed), logs their per-epoch dev metrics as mean ± std and closes the configuration's run. Logged once:
        a resumed sweep that settles it again finds the metrics there."""
        cid = configuration.tags["config_id"]
        restarts = [run for run in self._known().values() if run.tags.get("config_id") == cid]
        states = {run.tags.get("restart"): run.tags.get("state") for run in restarts}
        scouts = [states.get(str(restart)) for restart in range(self.space.scouts)]
        if any(state not in ENDED for state in scouts):
            return
        fate = next((f for f in (Fate.PRUNED, Fate.FAILED) if f in scouts), Fate.COMPLETE)
        if sum(state in ENDED for state in states.values()) < self.space.restarts_of(fate):
            return
        trained = [run for run in restarts if run.tags.get("state") in (Fate.COMPLETE, Fate.PRUNED)]
        metrics = []
        if f"{self.space.metric.name}_mean" not in configuration.metrics:
            metrics = self._restart_statistics(trained)
        self._write(configuration, tags={"state": fate, "restarts": str(len(trained))}, metrics=metrics)
        self._end(configuration, "FAILED" if fate == Fate.FAILED else "FINISHED")

    def _restart_statistics(self, restarts: list[KnownRun]) -> list:
        timestamp = int(time.time() * 1000)
        names = sorted({name for run in restarts for name in run.metrics if name.startswith("dev_")})
        metrics = []
        for name in names:
            by_epoch: dict[int, list[float]] = {}
            for run in restarts:
                for point in self.client.get_metric_history(run.run_id, name):
                    by_epoch.setdefault(point.step, []).append(point.value)
            for epoch, values in sorted(by_epoch.items()):
                metrics += [mlflow.entities.Metric(f"{name}_mean", statistics.fmean(values), timestamp, epoch)]
                if len(values) > 1:
                    metrics += [mlflow.entities.Metric(f"{name}_std", statistics.stdev(values), timestamp, epoch)]
                if name == self.space.metric.name:
                    metrics += [mlflow.entities.Metric("restarts_at_epoch", len(values), timestamp, epoch)]
        best_name = f"best_{self.space.metric.name}"
        best = [run.metrics[best_name] for run in restarts if best_name in run.metrics]
        if best:  # what selection ranks configurations by
            metrics += [mlflow.entities.Metric(f"{best_name}_mean", statistics.fmean(best), timestamp, 0)]
            if len(best) > 1:
                metrics += [mlflow.entities.Metric(f"{best_name}_std", statistics.stdev(best), timestamp, 0)]
        return metrics


def trial_metric_names(result: dict) -> list[str]:
    """The trainer's epoch record (loss, dev scores, ε as gold_probability, α, seconds, steps, and the opt-in
    diagnostics), not Tune's extras."""
    trainer = ("train_loss", "gold_probability", "alpha", "seconds", "steps", "credit_norm", "gradient_variance")
    fixed = [name for name in trainer if name in result]
    return fixed + [name for name in result if name.startswith("dev_")]


def shared_params(trial) -> dict:
    """A configuration's parameters: those of its restarts, which differ only in the seed."""
    return {name: value for name, value in trial_flat_config(trial.config).items() if name != "seed"}


def trial_flat_config(config: dict) -> dict:
    """The trial's validated trainer config, flattened (every default included)."""
    return validated_flat_config(trainer_tree(config), source=f"trial {TrialMeta.of(config).key}")


def find_run(client: MlflowClient, experiment_id: str, sweep_run_id: str, tag: str, value: str, kind=RESTART):
    """The sweep's run whose `tag` is `value` (a trial key, a config id), or None."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{tag} = '{value}' and tags.{SWEEP_TAG} = '{sweep_run_id}' and tags.{KIND_TAG} = '{kind}'",
        max_results=2,
    )
    return runs[0] if runs else None


def sweep_runs(client: MlflowClient, experiment_id: str, sweep_run_id: str, kind: str = RESTART) -> list:
    """Every restart (trial) run of a sweep, or every configuration run with kind=CONFIGURATION."""
    return client.search_runs(
        [experiment_id],
        filter_string=f"tags.{SWEEP_TAG} = '{sweep_run_id}' and tags.{KIND_TAG} = '{kind}'",
        max_results=50000,
    )


def set_run_status(uri: str, run_id: str, status: str) -> None:
    client = MlflowClient(uri)
    if status == "RUNNING":
        client.update_run(run_id, status="RUNNING")
    else:
        client.set_terminated(run_id, status)


def log_efficiency(uri: str, parent_run_id: str, efficiency) -> None:
    """One value per sweep session (a resumed sweep adds one): the parent run's history shows every session."""
    values = {
        "sweep_efficiency": efficiency.ratio,
        "sweep_trainer_seconds": efficiency.trainer_seconds,
        "sweep_wall_seconds": efficiency.wall_seconds,
    }
    timestamp = int(time.time() * 1000)
    metrics = [mlflow.entities.Metric(name, float(value), timestamp, 0) for name, value in values.items()]
    MlflowClient(uri).log_batch(parent_run_id, metrics=metrics)


def log_selection(state: SweepState, choices: dict, scores: dict | None, rows: list[dict], files: list[Path]) -> None:
    """Test scores on the chosen runs and the parent run, the summary files on the parent run."""
    client = MlflowClient(state.tracking_uri)
    parent = state.parent_run_id
    chosen = {choice.outcome.key: choice.outcome for choice in choices.values() if choice.outcome is not None}
    for key, result in (scores or {}).items():
        run = find_run(client, state.experiment_id, parent, "trial_key", key)
        if run is None:
            continue
        run_id = run.info.run_id
        chosen_for = [row for row, choice in choices.items() if choice.outcome and choice.outcome.key == key]
        client.set_tag(run_id, "chosen_for", ",".join(chosen_for))
        name = f"test_{result['metric']}"
        if name not in client.get_run(run_id).data.metrics:
            client.log_metric(run_id, name, float(result[result["metric"]]))
            # From a local copy: on s3:// storage the checkpoint is not a file of this machine.
            with chosen[key].checkpoint.as_directory() as directory:
                client.log_artifact(run_id, str(Path(directory) / "best.pt"), artifact_path="best_checkpoint")
    logged = client.get_run(parent).data.metrics
    metrics = []
    for row in rows:
        for column in ("dev", "test"):
            name = f"{row['row']}.{column}"
            if row[column] is not None and name not in logged:
                metrics.append(mlflow.entities.Metric(name, float(row[column]), int(time.time() * 1000), 0))
    if metrics:
        client.log_batch(parent, metrics=metrics)
    for path in files:
        client.log_artifact(parent, str(path))
    client.set_terminated(parent, "FINISHED")


def ui_links(base: str, experiment_id: str, configuration_run_ids: list[str], metric: str) -> dict[str, str]:
    """MLflow UI addresses (MLflow 3.17's routes) of the sweep's runs table, the comparison of its configuration
    runs and their mean dev curves."""
    runs, experiments = json.dumps(configuration_run_ids), json.dumps([experiment_id])
    plotted = urllib.parse.quote(json.dumps([f"{metric}_mean"]))
    return {
        "runs": f"{base}/#/experiments/{experiment_id}/runs",
        "configurations": f"{base}/#/compare-runs?runs={runs}&experiments={experiments}",
        "curves": f"{base}/#/metric?runs={runs}&metric={urllib.parse.quote(json.dumps(f'{metric}_mean'))}"
        f"&experiments={experiments}&plot_metric_keys={plotted}&x_axis=step",
    }


def ui_hint(uri: str, experiment_id: str, parent_run_id: str, metric: str) -> str:
    configurations = sweep_runs(MlflowClient(uri), experiment_id, parent_run_id, CONFIGURATION)
    local = uri.startswith(("sqlite:", "file:"))
    base = "http://127.0.0.1:5000" if local else uri.rstrip("/")
    links = ui_links(base, experiment_id, [run.info.run_id for run in configurations], metric)
    lines = [f"MLflow UI: mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000, then open"] if local else []
    lines += [
        f"  the runs:                      {links['runs']}",
        f"  the configurations side by side: {links['configurations']}",
        f"  their mean dev curves:         {links['curves']}",
    ]
    return "\n".join(lines if local else ["MLflow UI:", *lines])
