"""The cluster path as deploy/README.md has a team run it, end to end on 127.0.0.1: the sweep submitted as a Ray job
(`ray job submit ... -- bash -c '... python -m orchestrator.sweep ... --address auto'`) to a head started with
`ray start --head`, Ray token authentication and worker nodes (tests/ray_cluster.py), its logs followed with
`ray job logs --follow`, its trials' checkpoints in a bucket of an S3-protocol server (tests/s3_server.py).

Two jobs run on one cluster. The first tracks to SQLite in its --out. The second is the whole team setup: it logs
to the team's MLflow server (basic auth, PostgreSQL; tests/team_server.py) with the credentials its command exports
from a settings file, as the README's command does, keeps its Optuna studies in the same PostgreSQL, and loses a
worker node mid-sweep: it starts paused after epoch 1, the test kills the node a held trial runs on, adds a
replacement as an autoscaler would and lifts the pause (sweep_helpers: no test races the trainer).

What differs from a cloud cluster is listed in tests/ray_cluster.py; the jobs' commands are the README's, plus
`--set` options that point the smoke space at small real data and, for the second, `--pause-after-epoch 1`.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import statistics
import subprocess
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from ray_cluster import RAY, TokenCluster
from s3_server import object_names, s3_in_environment
from sweep_helpers import (
    SMOKE,
    client,
    configuration_runs,
    data_overrides,
    dev_history,
    final_train_log,
    finished_keys,
    held,
    lift_pause,
    read_stored,
    resumed_after,
    summary,
    sweep_state,
    trained_epochs,
    trial_runs,
    wait_for,
    write_slices,
)
from team_server import mlflow_server, postgres_server

from orchestrator.outdir import TEST_RECORD
from orchestrator.space import config_id, load_space, trial_key
from orchestrator.studies import study_prefix

BOUND = 600  # seconds, for any one wait on a loaded machine, not an estimate
EPOCHS = 3
# The credentials a job's command exports from the settings file it is given (deploy/README.md, section 4).
EXPORTED = "^(MLFLOW_TRACKING_(USERNAME|PASSWORD)|PGPASSWORD)="
ARTIFACTS = "mlflow-artifacts"  # where in the bucket the team's MLflow server keeps the artifacts it serves


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3_in_environment(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(s3):  # after s3: every node has the bucket's credentials in its environment, as from an instance role
    with TokenCluster(workers=2) as token_cluster:
        yield token_cluster


@pytest.fixture(scope="module")
def data(conll2003_en, tmp_path_factory):
    return data_overrides(write_slices(conll2003_en, tmp_path_factory.mktemp("data"), counts=(40, 40, 40)))


def sweep_command(*options) -> str:
    """The driver's command inside a job, as deploy/README.md writes it."""
    return shlex.join(["RAY_AUTH_MODE=token", "python", "-m", "orchestrator.sweep", *map(str, options)])


def team_sweep(space, out, storage, tracking_uri, optuna_storage, concurrency) -> list:
    """The sweep of a team's Ray job, as deploy/README.md (section 4) and deploy/kuberay-rayjob.yaml give it
    (tests/test_deploy_files.py holds both to it): on a cloud cluster only the values that name places differ."""
    return [space, "--address", "auto", "--out", out, "--storage", storage, "--tracking-uri", tracking_uri,
            "--optuna-storage", optuna_storage, "--max-failures", "2", "--max-concurrent", concurrency]  # fmt: skip


def submit(cluster: TokenCluster, entrypoint: str) -> str:
    """`ray job submit --address DASHBOARD --no-wait -- bash -c ENTRYPOINT`; returns the job's id."""
    done = cluster.ray("job", "submit", "--address", cluster.dashboard, "--no-wait", "--", "bash", "-c", entrypoint)
    assert done.returncode == 0, done.stdout + done.stderr
    return re.search(r"Job '(raysubmit_\w+)' submitted successfully", done.stdout + done.stderr)[1]


def follow(cluster: TokenCluster, job: str, log: Path) -> subprocess.Popen:
    """`ray job logs --follow JOB`, into `log`: it ends when the job does."""
    with log.open("w") as output:
        return subprocess.Popen([RAY, "job", "logs", "--address", cluster.dashboard, "--follow", job],
                                env=cluster.client_env, stdout=output, stderr=subprocess.STDOUT)  # fmt: skip


def status(cluster: TokenCluster, job: str) -> str:
    """The job's state as the head records it (SUCCEEDED, FAILED, ...)."""
    return next(entry["status"] for entry in job_entries(cluster) if entry["submission_id"] == job)


# --- a Ray job with token auth --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def job(cluster, s3, data, tmp_path_factory):
    root = tmp_path_factory.mktemp("job")
    out = root / "out"
    sets = ["--set", "epochs=2", "--set", "restarts=1"]
    entrypoint = sweep_command(SMOKE, "--address", "auto", "--out", out, "--storage", s3.uri("job"),
                               "--max-failures", "2", "--max-concurrent", "2", *sets, *data)  # fmt: skip
    job_id = submit(cluster, entrypoint)
    follower = follow(cluster, job_id, root / "logs.txt")
    try:
        follower.wait(timeout=BOUND)
    finally:
        follower.kill()
    return SimpleNamespace(id=job_id, out=out, logs=(root / "logs.txt").read_text(), status=status(cluster, job_id))


def test_the_sweep_submitted_as_a_ray_job_succeeds_with_a_choice_for_every_row(job):
    assert job.status == "SUCCEEDED", job.logs[-3000:]
    assert all(row["chosen"] and row["test"] is not None for row in summary(job.out)["rows"])


def test_ray_job_logs_follows_the_sweep_from_its_trials_to_its_summary(job):
    assert sorted(finished_keys(job.logs)) == sorted(t["key"] for t in summary(job.out)["trials"])
    assert f"wrote {job.out / 'summary.md'}" in job.logs


def test_each_restart_has_one_mlflow_run_and_ran_on_a_worker_node(job, cluster):
    runs = trial_runs(job.out)
    assert sorted(r.data.tags["trial_key"] for r in runs) == sorted(t["key"] for t in summary(job.out)["trials"])
    for run in runs:
        assert set(run.data.tags["nodes"].split(",")) <= set(cluster.nodes), run.data.tags  # not on the head


def test_a_client_without_the_cluster_token_is_refused(job, cluster):
    shell = {k: v for k, v in cluster.client_env.items() if not k.startswith("RAY_AUTH")}
    refused = cluster.ray("job", "submit", "--address", cluster.dashboard, "--", "true", env=shell)
    assert refused.returncode != 0 and "Authentication required" in refused.stderr  # the head's HTTP 401
    assert jobs(cluster) == [job.id]  # nothing was submitted


def test_a_client_with_another_token_is_refused(job, cluster):
    shell = {k: v for k, v in cluster.client_env.items() if not k.startswith("RAY_AUTH")}
    env = {**shell, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    refused = cluster.ray("job", "submit", "--address", cluster.dashboard, "--", "true", env=env)
    assert refused.returncode != 0 and "Authentication failed" in refused.stderr  # the head's HTTP 403
    assert jobs(cluster) == [job.id]


def jobs(cluster: TokenCluster) -> list[str]:
    return [entry["submission_id"] for entry in job_entries(cluster)]


def job_entries(cluster: TokenCluster) -> list[dict]:
    """The jobs the head knows, as `ray list jobs` gives them (the command each ran, its state)."""
    return json.loads(cluster.ray("list", "jobs", "--address", cluster.dashboard, "--format", "json").stdout)


# --- the whole team setup, and a worker node lost mid-sweep -----------------------------------------------------


@pytest.fixture(scope="module")
def team(cluster, s3, data, tmp_path_factory, job):  # after `job`: one sweep at a time on the cluster
    """The team's MLflow server on PostgreSQL with its artifacts in the bucket, its user `sweeper`, and the job of a
    sweep that loses a worker node."""
    root = tmp_path_factory.mktemp("team")
    artifacts = {"artifacts": f"s3://{s3.bucket}/{ARTIFACTS}", "environment": {"MLFLOW_S3_ENDPOINT_URL": s3.endpoint}}
    with (
        postgres_server() as database,
        mlflow_server(database, root, **artifacts) as server,
        pytest.MonkeyPatch.context() as env,
    ):
        password = server.create_user("sweeper")
        settings = root / "server.env"  # what the README's command reads on the head: ~/mlflow/server.env
        settings.write_text(f"MLFLOW_TRACKING_USERNAME=sweeper\nMLFLOW_TRACKING_PASSWORD={password}\n"
                            f"PGPASSWORD={database.password}\n")  # fmt: skip
        settings.chmod(0o600)
        for name, value in (("MLFLOW_TRACKING_USERNAME", "sweeper"), ("MLFLOW_TRACKING_PASSWORD", password),
                            ("PGPASSWORD", database.password)):  # fmt: skip
            env.setenv(name, value)  # this process reads the runs and studies the job writes; the nodes never do
        out = root / "out"
        sets = ["--set", f"epochs={EPOCHS}", "--set", "restarts=2"]  # selection ranks configurations by their mean
        sweep = team_sweep(SMOKE, out, s3.uri("team"), server.uri, database.url("optuna"), 2)
        sweep = sweep_command(*sweep, "--pause-after-epoch", "1", *sets, *data)
        entrypoint = f'export $(grep -E "{EXPORTED}" {shlex.quote(str(settings))} | xargs) && {sweep}'
        job_id = submit(cluster, entrypoint)
        log = root / "logs.txt"
        follower = follow(cluster, job_id, log)
        try:
            key, epochs, node = wait_for("a trial held on a worker", lambda: held_on_a_worker(out, cluster),
                                         follower, log, BOUND)  # fmt: skip
            cluster.kill_worker(node)
            cluster.add_worker()
            lift_pause(out)
            follower.wait(timeout=BOUND)
        finally:
            follower.kill()
        yield SimpleNamespace(
            id=job_id,
            out=out,
            logs=log.read_text(),
            status=status(cluster, job_id),
            entrypoint=next(e["entrypoint"] for e in job_entries(cluster) if e["submission_id"] == job_id),
            space=load_space(SMOKE, sets[1::2]),
            killed=SimpleNamespace(trial=key, epochs=epochs, node=node),
            secrets=[
                password,
                database.password,
                server.admin_password,
                Path(cluster.token).read_text(),
                s3.environment["AWS_SECRET_ACCESS_KEY"],
            ],  # fmt: skip
            optuna_storage=database.url("optuna"),
        )


def held_on_a_worker(out: Path, cluster: TokenCluster) -> tuple[str, int, str] | None:
    """A trial held after its first epoch (recorded by the driver, checkpointed in the bucket) and the worker node
    its MLflow run says it reported from."""
    holding = held(out)
    for run in trial_runs(out) if holding else []:
        key, node = run.data.tags["trial_key"], run.data.tags.get("nodes", "").split(",")[-1]
        if key in holding and node in cluster.nodes:
            return key, holding[key], node
    return None


def test_the_team_sweep_finishes_as_a_ray_job_after_losing_a_worker_node(team):
    assert team.status == "SUCCEEDED", team.logs[-3000:]
    assert f"Trial task failed for trial {team.killed.trial}" in team.logs  # it died with its node
    assert all(row["chosen"] for row in summary(team.out)["rows"])
    state = sweep_state(team.out)
    assert state.tracking_uri.startswith("http://") and state.optuna_storage.startswith("postgresql://")
    assert state.storage.startswith("s3://")


def test_the_killed_trial_resumes_on_another_node_from_its_checkpoint_in_the_bucket(team):
    (run,) = [r for r in trial_runs(team.out) if r.data.tags["trial_key"] == team.killed.trial]
    nodes = run.data.tags["nodes"].split(",")
    assert len(nodes) == 2 and nodes[0] == team.killed.node, nodes
    trials = {t["key"]: t for t in summary(team.out)["trials"]}
    lines = final_train_log(trials[team.killed.trial])
    (after,) = resumed_after(lines)
    assert after >= team.killed.epochs
    assert trained_epochs(lines) == list(range(1, trials[team.killed.trial]["epochs"] + 1)), lines


def test_the_team_server_holds_one_run_per_trial_with_each_epoch_once(team):
    runs = trial_runs(team.out)
    assert sorted(r.data.tags["trial_key"] for r in runs) == sorted(t["key"] for t in summary(team.out)["trials"])
    mlflow = client(team.out)
    for run in runs:
        for name in ("dev_score", "train_loss", "seconds"):
            steps = [m.step for m in mlflow.get_metric_history(run.info.run_id, name)]
            assert steps == list(range(1, int(run.data.tags["epochs_run"]) + 1)), (run.data.tags["trial_key"], name)
        assert run.info.status == "FINISHED"


def test_each_configuration_has_one_run_whose_mean_is_over_its_restarts_logged_epochs(team):
    restarts = trial_runs(team.out)
    runs = configuration_runs(team.out)
    assert sorted(r.data.tags["config_id"] for r in runs) == sorted({r.data.tags["config_id"] for r in restarts})
    mlflow = client(team.out)
    for run in runs:
        by_epoch: dict[int, list[float]] = {}
        for restart in (r for r in restarts if r.data.tags["config_id"] == run.data.tags["config_id"]):
            for point in dev_history(team.out, restart):
                by_epoch.setdefault(point.step, []).append(point.value)
        mean = {m.step: m.value for m in mlflow.get_metric_history(run.info.run_id, "dev_score_mean")}
        assert sorted(mean) == sorted(by_epoch), run.data.tags["config_id"]
        assert all(mean[step] == pytest.approx(statistics.fmean(values)) for step, values in by_epoch.items())


def test_the_studies_in_postgresql_hold_each_epoch_of_each_configuration_once_as_mlflow_logged_it(team):
    state = sweep_state(team.out)
    prefix = study_prefix(state.optuna_storage, team.out, team.space.name, state.parent_run_id)
    scouts = {r.data.tags["trial_key"]: r for r in trial_runs(team.out) if r.data.tags["restart"] == "0"}
    for group in team.space.groups:
        study = optuna.load_study(study_name=f"{prefix}{group}", storage=team.optuna_storage)
        for trial in study.trials:
            logged = {m.step: m.value for m in dev_history(team.out, scouts[trial_key(group, trial.number, 0)])}
            assert trial.intermediate_values == logged, config_id(group, trial.number)


def test_the_chosen_checkpoints_reach_the_bucket_through_the_team_server(team, s3, tmp_path):
    record = json.loads((team.out / TEST_RECORD).read_text())
    state = sweep_state(team.out)
    assert client(team.out).get_experiment(state.experiment_id).artifact_location.startswith("mlflow-artifacts:")
    stored = object_names(s3, ARTIFACTS)
    for key in {row["chosen"] for row in summary(team.out)["rows"]}:  # the record also holds restarts the report scored
        (run,) = [r for r in trial_runs(team.out) if r.data.tags["trial_key"] == key]
        logged = client(team.out).download_artifacts(run.info.run_id, "best_checkpoint/best.pt", str(tmp_path / key))
        assert Path(logged).read_bytes() == read_stored(record[key]["result"]["checkpoint"]), key
        assert f"{state.experiment_id}/{run.info.run_id}/artifacts/best_checkpoint/best.pt" in stored, key


def test_no_secret_reaches_the_output_the_runs_the_job_logs_or_its_recorded_command(team):
    files = [path.read_bytes() for path in team.out.rglob("*") if path.is_file()]
    runs = trial_runs(team.out) + configuration_runs(team.out)
    values = [v for run in runs for v in (*run.data.params.values(), *run.data.tags.values())]
    for secret in team.secrets:
        assert secret not in team.logs and secret not in team.entrypoint
        assert not [content for content in files if secret.encode() in content]
        assert not [value for value in values if secret in value]
