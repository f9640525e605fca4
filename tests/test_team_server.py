"""The smoke sweep against a team's tracking stack: a real `mlflow server` with basic auth on a real PostgreSQL, its
artifacts served through the server, and the groups' Optuna studies in the same PostgreSQL (issue 9).

One server, one PostgreSQL and one local Ray serve the module. Three sweeps of the same space log to the server at
once as user alice, the password in MLFLOW_TRACKING_PASSWORD: one in this process, scored on test, and two as
subprocesses that keep their studies in PostgreSQL, one of which is interrupted (Ctrl-C) after its first trial and
resumed while the others go on (it starts paused, so that the interruption lands after its first trial and before
its last by construction). Slices are tiny and every trial trains one epoch.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import signal
import subprocess
import threading
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from mlflow.tracking import MlflowClient
from sweep_helpers import (
    SMOKE,
    data_overrides,
    end,
    finished_keys,
    held,
    launch,
    lift_pause,
    release,
    run_main,
    summary,
    sweep_state,
    write_slices,
)
from team_server import mlflow_server, postgres_server

from orchestrator import tracking
from orchestrator.space import load_space
from orchestrator.studies import Studies
from trainer import checkpoint

TINY = ["--set", "epochs=1", "--set", "restarts=1"]  # three trials of one epoch: every part, in seconds
BOUND = 600  # seconds, for any one wait on a sweep (a machine under load), not an estimate


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """PostgreSQL, the MLflow server on it, its user alice, and a local Ray."""
    import ray

    with postgres_server() as database, mlflow_server(database, tmp_path_factory.mktemp("mlflow")) as server:
        users = {"alice": server.create_user("alice")}
        # Four trial slots on two cores: the trials here are a second of training in several of MLflow calls
        # and Tune's bookkeeping, and three sweeps share them.
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
        try:
            yield SimpleNamespace(database=database, server=server, users=users, ray=ray)
        finally:
            ray.shutdown()


def credentials(stack, user: str, password: str | None = None) -> dict[str, str]:
    """What a teammate exports before a sweep: the MLflow user and password, and PostgreSQL's password."""
    return {
        "MLFLOW_TRACKING_USERNAME": user,
        "MLFLOW_TRACKING_PASSWORD": password or stack.users[user],
        "PGPASSWORD": stack.database.password,
    }


def run_as(environment: dict[str, str], argv: list):
    """run_main with `environment` exported for its duration."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        return run_main(argv)


def launch_as(environment: dict[str, str], argv: list, log: Path) -> subprocess.Popen:
    """sweep_helpers.launch with `environment` added to the sweep's (not to this process's: a thread launches
    one while another sweep runs here)."""
    return launch(argv, log, env=environment)


@pytest.fixture(scope="module")
def data(conll2003_en, tmp_path_factory):
    return data_overrides(write_slices(conll2003_en, tmp_path_factory.mktemp("data"), counts=(100, 40, 40)))


@pytest.fixture(scope="module")
def sweeps(stack, data, tmp_path_factory):
    """Three sweeps of the smoke space at once, all as alice (they are seconds of training in a minute of start-up
    and MLflow calls, which overlap). `scored` runs in this process, test scoring included, its studies in its
    --out. `first` and `second` are subprocesses that join this module's Ray, keep their studies in PostgreSQL
    and score nothing; `first` is interrupted (Ctrl-C) after its first trial and resumed with the same command
    while the others go on."""
    root = tmp_path_factory.mktemp("sweeps")
    as_alice = credentials(stack, "alice")
    storage = stack.database.url("optuna")
    common = [SMOKE, "--tracking-uri", stack.server.uri, *TINY, *data]
    pair = [*common, "--optuna-storage", storage, "--address", stack.ray.get_runtime_context().gcs_address]
    pair += ["--no-test", "--max-concurrent", "1"]
    first = Resumption(as_alice, [*pair, "--out", root / "first"], root, storage, stack.database.password)
    second = launch_as(as_alice, [*pair, "--out", root / "second"], root / "second.log")
    watcher = threading.Thread(target=first.run, daemon=True)
    try:
        watcher.start()
        scored = run_as(as_alice, [*common, "--out", root / "scored", "--max-concurrent", "2"])
        watcher.join(timeout=3 * BOUND)
        second.wait(timeout=BOUND)
    finally:
        first.end()
        end(second)
    if first.error is not None:
        raise first.error
    texts = {name: (root / f"{name}.log").read_text() for name in ("first", "second", "resumed")}
    return SimpleNamespace(
        scored=SimpleNamespace(out=root / "scored", session=scored),
        pair=SimpleNamespace(
            root=root,
            storage=storage,
            texts=texts,
            codes={"first": first.codes[0], "second": second.returncode, "resumed": first.codes[1]},
            interrupted=first.interrupted,
        ),
    )


class Resumption:
    """A sweep launched paused (every trial holds before its first epoch), its first trial released, interrupted
    (Ctrl-C) once that trial has finished and the next one holds, and relaunched with the same command less the
    pause; `run` does it all, in a thread beside the sweep that runs in this process. Keeps both exit codes and
    the sweep's Optuna studies as the interruption left them."""

    def __init__(self, environment: dict[str, str], argv: list, root: Path, storage: str, database_password: str):
        self.environment, self.argv, self.root = environment, argv, root
        self.storage, self.database_password = storage, database_password
        self.processes: list[subprocess.Popen] = []
        self.codes: list[int | None] = [None, None]
        self.interrupted: dict = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        out, log = self.root / "first", self.root / "first.log"
        try:
            first = self._launch("first", "--pause-after-epoch", "0")
            (trial, *_) = self._wait(first, "a held trial", lambda: held(out))
            release(out, trial)
            self._wait(first, f"{trial} finished and another held",
                       lambda: trial in finished_keys(log.read_text()) and set(held(out)) - {trial})  # fmt: skip
            first.send_signal(signal.SIGINT)
            self.codes[0] = first.wait(timeout=BOUND)
            run_id = sweep_state(out).parent_run_id
            self.interrupted = study_trials(self.storage, run_id, self.database_password)
            lift_pause(out)
            self.codes[1] = self._launch("resumed").wait(timeout=BOUND)
        except BaseException as error:  # raised again in the fixture, in pytest's thread
            self.error = error

    def _wait(self, process: subprocess.Popen, what: str, check):
        deadline = time.monotonic() + BOUND
        while not (found := check()):
            assert process.poll() is None, f"the sweep exited ({process.returncode}) before {what}"
            assert time.monotonic() < deadline, f"no {what} within {BOUND} s"
            time.sleep(0.5)
        return found

    def _launch(self, name: str, *extra: str) -> subprocess.Popen:
        self.processes.append(launch_as(self.environment, [*self.argv, *extra], self.root / f"{name}.log"))
        return self.processes[-1]

    def end(self) -> None:
        for process in self.processes:
            end(process)


@pytest.fixture(scope="module")
def scored(sweeps):
    return sweeps.scored


@pytest.fixture(scope="module")
def pair(sweeps):
    return sweeps.pair


def study_trials(url: str, sweep_run_id: str, password: str) -> dict[str, tuple[int, list[int]]]:
    """The sweep's studies in the storage at `url`: per study name, its id and its trials' numbers."""
    login = {"connect_args": {"password": password}}  # not PGPASSWORD: a thread calls this beside a sweep
    storage = optuna.storages.RDBStorage(url, engine_kwargs=login)
    found = {}
    for name in optuna.get_all_study_names(storage):
        if f"/{sweep_run_id}/" in name:
            study = optuna.load_study(study_name=name, storage=storage)
            found[name] = (storage.get_study_id_from_name(name), [t.number for t in study.trials])
    return found


@pytest.fixture
def alice(stack, monkeypatch) -> MlflowClient:
    """A client of the server as alice: MLflow's client reads the credentials from the environment."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", stack.users["alice"])
    return MlflowClient(stack.server.uri)


@pytest.fixture
def database_password(stack, monkeypatch) -> None:
    monkeypatch.setenv("PGPASSWORD", stack.database.password)


def test_the_smoke_sweep_logs_to_the_team_server_over_http(stack, scored, alice):
    assert scored.session.code == 0, scored.session.stderr[-3000:]
    state = sweep_state(scored.out)
    assert state.tracking_uri == stack.server.uri
    trials = tracking.sweep_runs(alice, state.experiment_id, state.parent_run_id)
    assert sorted(run.data.tags["trial_key"] for run in trials) == sorted(
        t["key"] for t in summary(scored.out)["trials"]
    )
    assert alice.get_run(state.parent_run_id).info.status == "FINISHED"


def test_the_chosen_checkpoints_and_summaries_arrive_as_artifacts_served_by_the_server(stack, scored, alice, tmp_path):
    state = sweep_state(scored.out)
    assert alice.get_experiment(state.experiment_id).artifact_location.startswith("mlflow-artifacts:")
    parent = Path(alice.download_artifacts(state.parent_run_id, "", str(tmp_path / "parent")))
    for name in ("summary.md", "summary.csv", "summary.json"):
        assert filecmp.cmp(parent / name, scored.out / name, shallow=False), name
    record = json.loads((scored.out / "test_scores.json").read_text())
    for key, entry in record.items():
        run = tracking.find_run(alice, state.experiment_id, state.parent_run_id, "trial_key", key)
        folder = Path(alice.download_artifacts(run.info.run_id, "best_checkpoint", str(tmp_path / key)))
        local = Path(entry["result"]["checkpoint"])
        assert digest(folder / local.name) == digest(local)
        assert checkpoint.load(folder / local.name)["config"]  # a checkpoint the trainer loads
    stored = {path.name for path in (stack.server.log.parent / "artifacts").rglob("*") if path.is_file()}
    assert {"summary.json", "best.pt"} <= stored  # written by the server, not by the sweep's process


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_no_password_reaches_the_output_directory_the_runs_or_the_printed_output(stack, scored, alice):
    secrets_ = [stack.users["alice"], stack.database.password]
    printed = scored.session.stdout + scored.session.stderr
    files = [path for path in scored.out.rglob("*") if path.is_file()]
    assert (scored.out / "sweep.json") in files
    state = sweep_state(scored.out)
    runs = alice.search_runs([state.experiment_id], max_results=1000)
    values = [v for run in runs for v in (*run.data.params.values(), *run.data.tags.values())]
    for secret in secrets_:
        assert secret not in printed
        assert not [path for path in files if secret.encode() in path.read_bytes()]
        assert not [value for value in values if secret in value]


def test_a_wrong_password_fails_within_seconds_naming_server_and_user_not_the_password(stack, data, tmp_path):
    out = tmp_path / "out"
    wrong = "not-alices-password-" + stack.users["alice"][::-1]
    started = time.monotonic()
    session = run_as(
        credentials(stack, "alice", wrong), [SMOKE, "--out", out, "--tracking-uri", stack.server.uri, *data]
    )
    assert session.code == 2, session.stderr
    assert time.monotonic() - started < 30
    assert stack.server.uri in session.stderr and "alice" in session.stderr
    assert wrong not in session.stdout + session.stderr
    assert not out.exists()


def test_a_sweep_without_credentials_is_refused_naming_the_variables(stack, data, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    session = run_main([SMOKE, "--out", out, "--tracking-uri", stack.server.uri, *data])
    assert session.code == 2, session.stderr
    assert "MLFLOW_TRACKING_USERNAME" in session.stderr
    assert not out.exists()


def test_two_sweeps_at_once_each_log_their_own_parent_run_and_each_trial_once(pair, alice):
    assert pair.codes == {"first": 130, "second": 0, "resumed": 0}, pair.texts
    states = [sweep_state(pair.root / name) for name in ("first", "second")]
    assert states[0].experiment_id == states[1].experiment_id  # one space: one experiment
    assert states[0].parent_run_id != states[1].parent_run_id
    for name, state in zip(("first", "second"), states, strict=True):
        keys = [
            run.data.tags["trial_key"] for run in tracking.sweep_runs(alice, state.experiment_id, state.parent_run_id)
        ]
        assert sorted(keys) == sorted(t["key"] for t in summary(pair.root / name)["trials"]), name
        assert len(set(keys)) == len(keys) == 3, name
        assert alice.get_run(state.parent_run_id).info.status == "FINISHED"


def test_each_sweep_keeps_its_own_studies_in_the_shared_storage(pair, database_password):
    names = {s.study_name for s in optuna.get_all_study_summaries(pair.storage, include_best_trial=False)}
    for name in ("first", "second"):
        run_id = sweep_state(pair.root / name).parent_run_id
        assert {f"smoke/{run_id}/ce", f"smoke/{run_id}/soft_greedy_annealed"} <= names
        assert json.loads((pair.root / name / "sweep.json").read_text())["optuna_storage"] == pair.storage
        assert not (pair.root / name / "optuna.db").exists()


def test_an_interrupted_sweep_resumed_with_the_same_command_continues_its_studies(stack, pair):
    assert "resuming the sweep in" in pair.texts["resumed"]
    after = study_trials(pair.storage, sweep_state(pair.root / "first").parent_run_id, stack.database.password)
    assert set(after) == set(pair.interrupted)
    for name, (study_id, numbers) in after.items():
        assert study_id == pair.interrupted[name][0]  # the same study, not a new one of the same name
        assert numbers[: len(pair.interrupted[name][1])] == pair.interrupted[name][1]
    assert sorted(len(numbers) for _, numbers in after.values()) == [1, 2]  # ce; soft_greedy_annealed k=10, always
    first_keys, resumed_keys = finished_keys(pair.texts["first"]), finished_keys(pair.texts["resumed"])
    assert first_keys and not set(first_keys) & set(resumed_keys)


def test_the_sweep_prints_how_to_watch_its_studies_with_optuna_dashboard(pair):
    assert f"optuna-dashboard {pair.storage}" in pair.texts["second"]


def test_no_password_reaches_the_pair_s_output(stack, pair):
    for secret in (stack.users["alice"], stack.database.password):
        assert not [name for name, text in pair.texts.items() if secret in text]
        assert secret not in (pair.root / "first" / "sweep.json").read_text()


def test_a_storage_url_with_a_password_is_refused_without_printing_it(stack, data, tmp_path):
    out = tmp_path / "out"
    url = stack.database.url("optuna").replace("team@", f"team:{stack.database.password}@")
    session = run_as(credentials(stack, "alice"), [SMOKE, "--out", out, "--optuna-storage", url, *data])
    assert session.code == 2
    assert "PGPASSWORD" in session.stderr and "team:***@" in session.stderr
    assert stack.database.password not in session.stdout + session.stderr
    assert not out.exists()


def test_a_wrong_database_password_fails_before_anything_is_written(stack, data, tmp_path):
    out = tmp_path / "out"
    environment = {**credentials(stack, "alice"), "PGPASSWORD": "wrong-" + stack.database.password}
    argv = [SMOKE, "--out", out, "--tracking-uri", stack.server.uri, "--optuna-storage", stack.database.url("optuna")]
    session = run_as(environment, [*argv, *data])
    assert session.code == 2
    assert stack.database.url("optuna") in session.stderr and "password authentication failed" in session.stderr
    assert environment["PGPASSWORD"] not in session.stderr
    assert not out.exists()


def test_a_resumed_sweep_refuses_another_optuna_storage(stack, scored, data):
    argv = [SMOKE, "--out", scored.out, "--tracking-uri", stack.server.uri, *TINY, *data]
    session = run_as(credentials(stack, "alice"), [*argv, "--optuna-storage", stack.database.url("optuna")])
    assert session.code == 2
    assert "keeps its Optuna studies in sqlite:///" in session.stderr and "no --optuna-storage" in session.stderr


def test_a_teammate_given_the_sweepers_role_logs_to_a_space_another_started(stack, scored, tmp_path, monkeypatch):
    """MLflow's default permission here is READ: bob may log to alice's experiment only through a role that
    grants EDIT on experiments, as deploy/README.md has the admin set up."""
    import mlflow.server

    bob = stack.server.create_user("bob")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", stack.server.admin_password)
    admin = mlflow.server.get_app_client("basic-auth", tracking_uri=stack.server.uri)
    role = admin.create_role("default", "sweepers")
    admin.add_role_permission(role.id, "experiment", "*", "EDIT")
    admin.assign_role("bob", role.id)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", bob)
    experiment_id = tracking.prepare_experiment(stack.server.uri, "smoke", tmp_path)
    assert experiment_id == sweep_state(scored.out).experiment_id
    run = MlflowClient(stack.server.uri).create_run(experiment_id, run_name="bob's sweep")
    assert run.info.experiment_id == experiment_id


def test_a_teammate_who_may_not_write_to_the_space_is_refused_naming_user_and_experiment(stack, scored, data, tmp_path):
    out = tmp_path / "out"
    carol = stack.server.create_user("carol")  # no role: MLflow's default permission here is READ
    session = run_as({"MLFLOW_TRACKING_USERNAME": "carol", "MLFLOW_TRACKING_PASSWORD": carol},
                     [SMOKE, "--out", out, "--tracking-uri", stack.server.uri, *data])  # fmt: skip
    assert session.code == 2, session.stderr
    assert "'carol' may not write to experiment 'smoke'" in session.stderr
    assert not out.exists()


def test_sweeps_that_create_an_experiment_at_once_share_it(stack, alice, tmp_path):
    """Teammates starting the first sweeps of a new space at the same moment: both get its one experiment (three
    sweeps started at once here once failed with RESOURCE_ALREADY_EXISTS in prepare_experiment)."""
    for name in ("new-space-a", "new-space-b", "new-space-c"):
        results = at_once(*[partial(tracking.prepare_experiment, stack.server.uri, name, tmp_path)] * 2)
        assert results[0] == results[1] and isinstance(results[0], str), results


def test_sweeps_that_open_a_fresh_shared_optuna_storage_at_once_all_get_it(stack, data, database_password):
    """Both sweeps create Optuna's tables in the new database; the one that loses the race must not fail (seen:
    DuplicateTable in one of two sweeps started at once)."""
    space = load_space(SMOKE, data[1::2])
    for name in ("fresh_a", "fresh_b", "fresh_c"):
        stack.database.psql(f"CREATE DATABASE {name} OWNER team")
        url = stack.database.url(name)
        results = at_once(Studies(url, space, "one/").create_all, Studies(url, space, "two/").create_all)
        assert results == [None, None], results
        assert len(optuna.get_all_study_names(url)) == 2 * len(space.groups)


def at_once(*calls) -> list:
    """What each call returned (or raised), the calls run in threads released together."""
    barrier, results = threading.Barrier(len(calls)), [None] * len(calls)

    def one(index: int) -> None:
        barrier.wait(timeout=60)
        try:
            results[index] = calls[index]()
        except Exception as error:  # what a sweep would die of
            results[index] = error

    threads = [threading.Thread(target=one, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results
