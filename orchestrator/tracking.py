"""MLflow: one experiment per search space, one parent run per sweep, one nested run per trial.

All MLflow calls happen in the sweep's driver: a Tune callback turns each
trial's reported epochs into that trial's run (as Ray's own MLflowLoggerCallback
does), so workers need no tracking URI and SQLite has one writer. Runs are found
again by their `trial_key` tag under the sweep's parent run, so a resumed sweep
reopens them instead of duplicating them, and epochs already logged are not
logged twice.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from orchestrator.space import SearchSpace, validated_flat_config
from orchestrator.studies import Studies

DEFAULT_STORE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"


def default_tracking_uri(out_dir: Path) -> str:
    """A SQLite store in the output directory, absolute (MLflow's default is relative to the working directory)."""
    return f"sqlite:///{Path(out_dir).resolve() / DEFAULT_STORE}"


def resolve_tracking_uri(flag: str | None, out_dir: Path) -> str:
    return flag or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(out_dir)


def is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/"))


class TrackingServerDown(ConnectionError):
    """An HTTP tracking server that does not answer; the message names its URI."""


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Raises TrackingServerDown unless an HTTP tracking server answers its /health endpoint within `timeout`
    seconds: MLflow's client retries a server that is down for minutes before it fails (issue 7), and by then
    the sweep would have started. A database or file store has no server to ask."""
    if not uri.startswith(("http://", "https://")):
        return
    health = f"{uri.rstrip('/')}/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout):
            return
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            return  # it is up and wants credentials, which MLflow's client sends (MLFLOW_TRACKING_USERNAME, ...)
        problem = f"{health} answered HTTP {error.code}: is it an MLflow tracking server?"
    except (urllib.error.URLError, OSError) as error:  # refused, unknown host, timed out
        problem = f"no answer from {health}: {getattr(error, 'reason', error)}"
    raise TrackingServerDown(
        f"MLflow tracking server {uri} is not reachable ({problem}); start it, or give another "
        "--tracking-uri (or $MLFLOW_TRACKING_URI)"
    )


def prepare_experiment(uri: str, name: str, out_dir: Path) -> str:
    """The experiment's id, created in the driver once (concurrent creation races); artifacts of a local store
    go to OUT/mlartifacts instead of ./mlruns of whatever directory the command ran in."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        location = (Path(out_dir).resolve() / ARTIFACTS_DIR).as_uri() if is_local_store(uri) else None
        experiment_id = client.create_experiment(name, artifact_location=location)
    # MLflow 3 opens an experiment of unknown kind on its GenAI overview; this one is model training: the runs.
    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    return experiment_id


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


class MlflowTrials(Callback):
    """Tune callback (driver side): one MLflow run per trial with params, row tags, per-epoch metrics and fate."""

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, space: SearchSpace, studies: Studies):
        self.uri = uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.space = space
        self.studies = studies
        self._runs: dict[str, str] = {}  # trial key -> run id
        self._last_step: dict[str, int] = {}  # run id -> last epoch logged
        self._client: MlflowClient | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client": None, "_runs": {}, "_last_step": {}}

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.uri)
        return self._client

    def run_id(self, trial) -> str:
        meta = trial.config["sweep"]
        key = meta["key"]
        if key not in self._runs:
            found = find_trial_run(self.client, self.experiment_id, self.parent_run_id, key)
            if found is not None:
                history = self.client.get_metric_history(found, self.space.metric.name)
                self._last_step[found] = max((m.step for m in history), default=0)
            else:
                found = self._create_run(trial)
                self._last_step[found] = 0
            self._log_params(found, trial)
            self._runs[key] = found
        return self._runs[key]

    def _create_run(self, trial) -> str:
        meta = trial.config["sweep"]
        rows = self.space.rows_of(trial_flat_config(trial.config))
        tags = {
            "mlflow.parentRunId": self.parent_run_id,
            "trial_key": meta["key"],
            "config_id": meta["config_id"],
            "group": meta["group"],
            "restart": str(meta["restart"]),
            "seed": str(trial.config["trainer"]["seed"]),
            "rows": ",".join(rows),
            **{f"row.{row}": "true" for row in rows},
            **{f"table{self.space.rows[row].table}_row": row for row in rows},
            "state": "RUNNING",
            "pruned": "false",
        }
        return self.client.create_run(self.experiment_id, run_name=meta["key"], tags=tags).info.run_id

    def _log_params(self, run_id: str, trial) -> None:
        """The trial's hyper-parameters, those not logged yet (a driver killed right after creating the run)."""
        logged = self.client.get_run(run_id).data.params
        flat = trial_flat_config(trial.config)
        entities = [mlflow.entities.Param(k, str(v)) for k, v in sorted(flat.items()) if k not in logged]
        for start in range(0, len(entities), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run_id, params=entities[start : start + 100])

    def on_trial_start(self, iteration, trials, trial, **info):
        run_id = self.run_id(trial)
        self.client.update_run(run_id, status="RUNNING")
        self.client.set_tag(run_id, "state", "RUNNING")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self.run_id(trial)
        epoch = int(result.get("epoch", 0))
        if epoch <= self._last_step.get(run_id, 0):
            return  # logged before an interruption; the resumed trial repeats it from an older checkpoint
        timestamp = int(result.get("timestamp", 0)) * 1000
        metrics = [
            mlflow.entities.Metric(name, float(result[name]), timestamp, epoch) for name in trial_metric_names(result)
        ]
        self.client.log_batch(run_id, metrics=metrics)
        self._last_step[run_id] = epoch

    def on_trial_complete(self, iteration, trials, trial, **info):
        run_id = self.run_id(trial)
        meta = trial.config["sweep"]
        epoch = int(trial.last_result.get("epoch", 0))
        pruned = self.studies.pruned(meta)
        tags = {"state": "PRUNED" if pruned else "COMPLETE", "pruned": str(pruned).lower(), "epochs_run": str(epoch)}
        if pruned:
            tags["pruned_at_epoch"] = str(epoch)
        if trial.checkpoint is not None:
            tags["best_checkpoint"] = os.path.join(trial.checkpoint.path, "best.pt")
        for name, value in tags.items():
            self.client.set_tag(run_id, name, value)
        metric = self.space.metric
        best = trial.metric_analysis.get(metric.name, {}).get(metric.mode)
        name = f"best_{metric.name}"  # what selection ranks restarts by: one column to sort on in the UI
        # A trial that finished just before its driver was killed completes again when resumed: log it once.
        if best is not None and self.client.get_run(run_id).data.metrics.get(name) != float(best):
            self.client.log_metric(run_id, name, float(best))
        self.client.set_terminated(run_id, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        run_id = self.run_id(trial)
        self.client.set_tag(run_id, "state", "FAILED")
        self.client.set_tag(run_id, "error_file", os.path.join(trial.path, "error.txt"))
        self.client.set_terminated(run_id, "FAILED")


def trial_metric_names(result: dict) -> list[str]:
    """The trainer's epoch record (loss, dev scores, ε as gold_probability, α, seconds, steps, and the opt-in
    diagnostics), not Tune's extras."""
    trainer = ("train_loss", "gold_probability", "alpha", "seconds", "steps", "credit_norm", "gradient_variance")
    fixed = [name for name in trainer if name in result]
    return fixed + [name for name in result if name.startswith("dev_")]


def trial_flat_config(config: dict) -> dict:
    """The trial's validated trainer config, flattened (every default included)."""
    return validated_flat_config(config["trainer"], source=f"trial {config['sweep']['key']}")


def find_trial_run(client: MlflowClient, experiment_id: str, parent_run_id: str, key: str) -> str | None:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.trial_key = '{key}' and tags.`mlflow.parentRunId` = '{parent_run_id}'",
        max_results=2,
    )
    return runs[0].info.run_id if runs else None


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


def log_selection(state: dict, choices: dict, scores: dict | None, rows: list[dict], files: list[Path]) -> None:
    """Test scores on the chosen runs and the parent run, the summary files on the parent run."""
    client = MlflowClient(state["tracking_uri"])
    parent = state["parent_run_id"]
    for key, result in (scores or {}).items():
        run_id = find_trial_run(client, state["experiment_id"], parent, key)
        if run_id is None:
            continue
        chosen_for = [row for row, choice in choices.items() if choice.outcome and choice.outcome.key == key]
        client.set_tag(run_id, "chosen_for", ",".join(chosen_for))
        name = f"test_{result['metric']}"
        if name not in client.get_run(run_id).data.metrics:
            client.log_metric(run_id, name, float(result[result["metric"]]))
            client.log_artifact(run_id, result["checkpoint"], artifact_path="best_checkpoint")
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


def ui_hint(uri: str, experiment_id: str) -> str:
    if uri.startswith("sqlite:") or uri.startswith("file:"):
        return (
            f"MLflow UI: mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000\n"
            f"           then open http://127.0.0.1:5000/#/experiments/{experiment_id}/runs"
        )
    return f"MLflow UI: {uri.rstrip('/')}/#/experiments/{experiment_id}/runs"
