"""The sweep on a real multi-node Ray cluster on 127.0.0.1 that loses a worker node, loses its driver, or is not there.

The cluster is separate raylets (orchestrator.loopback.LoopbackCluster, Ray's own cluster_utils): a head without
CPUs, where the sweep's driver runs, and two 1-CPU workers, where the trials run. The sweep is the smoke space
with `--address` of that cluster, `--max-failures 2` and `--storage` apart from `--out`, once as a directory (as
NFS or EFS would be on a real cluster) and once as a bucket of an S3-protocol server on 127.0.0.1
(tests/s3_server.py), so that every checkpoint, pause file and scan of the storage is an HTTP call. A worker node
is killed as a reclaimed spot instance goes: SIGKILL to its raylet and every process under it at once; a
replacement node is added, as an autoscaler would. The sweeps start paused after epoch 1, so that every kill lands
while a trial holds between its first epoch and the rest, whatever an epoch costs; every wait is bounded and
watches what the driver has recorded, never the clock.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from s3_server import s3_in_environment
from sweep_helpers import (
    INTERRUPTED_TRAIN_SENTENCES,
    REPO,
    SMOKE,
    client,
    configuration_runs,
    data_overrides,
    dev_history,
    final_train_log,
    finished_keys,
    held,
    lift_pause,
    newest_checkpoints,
    read_stored,
    release,
    resumed_after,
    summary,
    sweep_state,
    trained_epochs,
    trial_runs,
    wait_for,
    write_slices,
)

from orchestrator import selection
from orchestrator.loopback import DRIVER_ENV, LoopbackCluster, launch_sweep, stop_sweep
from orchestrator.outdir import in_storage
from orchestrator.space import config_id, load_space, trial_key

EPOCHS = 4
BOUND = 600  # seconds, for any one wait on a loaded machine


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The S3-protocol server, its credentials in every node's and driver's environment."""
    with s3_in_environment(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(s3):
    with LoopbackCluster(workers=2) as loopback:
        yield loopback


@pytest.fixture(scope="module", params=["directory", "s3"])
def storage(request, s3):
    """Where a scenario's trials keep their checkpoints: `storage(root)` gives a directory below root, or a prefix
    named after root in the bucket."""
    if request.param == "directory":
        return lambda root: str(root / "storage")
    return lambda root: s3.uri(root.name)


@pytest.fixture(scope="module")
def data(conll2003_en, tmp_path_factory):
    counts = (INTERRUPTED_TRAIN_SENTENCES, 40, 40)
    return write_slices(conll2003_en, tmp_path_factory.mktemp("cluster_data"), counts=counts)


def sweep_argv(cluster, root: Path, storage: str, data: dict, restarts: int) -> tuple[list, list[str]]:
    sets = ["--set", f"epochs={EPOCHS}", "--set", f"restarts={restarts}", "--set", "max_concurrent=2"]
    argv = [SMOKE, "--out", root / "out", "--storage", storage, "--address", cluster.address]
    return [*argv, "--max-failures", "2", "--no-test", *sets, *data_overrides(data)], sets[1::2]


def holding(out: Path, log: Path) -> dict[str, int]:
    """Trials held after their first epoch (recorded by the driver, and checkpointed) that have not finished."""
    done = set(finished_keys(log.read_text()))
    return {key: epochs for key, epochs in held(out).items() if key not in done}


def expected_keys(out: Path, space) -> list[str]:
    """Every trial the sweep must have run, from its Optuna studies: all restarts of a configuration whose first
    restart completed, only that one of a pruned configuration."""
    keys = []
    storage = sweep_state(out).optuna_storage
    for group in space.groups:
        for trial in optuna.load_study(study_name=group, storage=storage).trials:
            restarts = space.restarts_of(trial.state.name)
            keys += [trial_key(group, trial.number, restart) for restart in range(restarts)]
    return sorted(keys)


# --- node loss -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_loss(cluster, storage, data, tmp_path_factory):
    root = tmp_path_factory.mktemp("node_loss")
    argv, sets = sweep_argv(cluster, root, storage(root), data, restarts=2)  # selection ranks configurations by mean
    out, log = root / "out", root / "sweep.log"

    def trial_on_a_worker() -> tuple[str, int, str] | None:
        running = holding(out, log)
        workers = cluster.workers()
        for run in trial_runs(out) if running else []:
            key, node = run.data.tags["trial_key"], run.data.tags.get("nodes", "").split(",")[-1]
            if key in running and node in workers:
                return key, running[key], node
        return None

    process = launch_sweep([*argv, "--pause-after-epoch", "1"], log)
    try:
        key, epochs_logged, node = wait_for("a trial held on a worker", trial_on_a_worker, process, log, BOUND)
        cluster.kill_worker(node)
        cluster.add_worker()
        lift_pause(out)
        process.wait(timeout=BOUND)
    finally:
        stop_sweep(process)
    return SimpleNamespace(
        out=out,
        code=process.returncode,
        text=log.read_text(),
        space=load_space(SMOKE, sets),
        killed_trial=key,
        epochs_logged=epochs_logged,
        killed_node=node,
    )


def test_sweep_finishes_after_a_worker_node_is_killed_mid_trial(node_loss):
    assert node_loss.code == 0, node_loss.text[-3000:]
    assert all(row["chosen"] for row in summary(node_loss.out)["rows"])
    assert f"Trial task failed for trial {node_loss.killed_trial}" in node_loss.text  # it died with its node


def test_killed_trial_ran_on_two_nodes_and_was_started_twice(node_loss):
    (run,) = [r for r in trial_runs(node_loss.out) if r.data.tags["trial_key"] == node_loss.killed_trial]
    nodes = run.data.tags["nodes"].split(",")
    assert len(nodes) == 2 and nodes[0] == node_loss.killed_node, nodes
    assert int(run.data.tags["attempts"]) >= 2
    assert run.data.tags["state"] in ("COMPLETE", "PRUNED")


def test_killed_trial_resumes_from_its_last_epoch_checkpoint(node_loss):
    trials = {t["key"]: t for t in summary(node_loss.out)["trials"]}
    lines = final_train_log(trials[node_loss.killed_trial])
    (after,) = resumed_after(lines)
    assert after >= node_loss.epochs_logged  # what the driver had logged had reached the storage
    assert trained_epochs(lines) == list(range(1, trials[node_loss.killed_trial]["epochs"] + 1)), lines


def test_every_trial_has_one_mlflow_run_with_each_epoch_logged_once_in_order(node_loss):
    runs = trial_runs(node_loss.out)
    keys = sorted(run.data.tags["trial_key"] for run in runs)
    assert (
        keys
        == sorted(t["key"] for t in summary(node_loss.out)["trials"])
        == expected_keys(node_loss.out, node_loss.space)
    )
    mlflow = client(node_loss.out)
    for run in runs:
        epochs = list(range(1, int(run.data.tags["epochs_run"]) + 1))
        for name in ("dev_score", "train_loss", "seconds"):
            assert [m.step for m in mlflow.get_metric_history(run.info.run_id, name)] == epochs, (run, name)
        assert run.info.status == "FINISHED"


def test_optuna_holds_each_epoch_of_each_configuration_once_as_the_mean_of_its_scouts_mlflow_logged(node_loss):
    runs = {r.data.tags["trial_key"]: r for r in trial_runs(node_loss.out)}
    storage = sweep_state(node_loss.out).optuna_storage
    scouts = node_loss.space.scouts
    for group in node_loss.space.groups:
        for trial in optuna.load_study(study_name=group, storage=storage).trials:
            logged = [
                {m.step: m.value for m in dev_history(node_loss.out, runs[trial_key(group, trial.number, restart)])}
                for restart in range(scouts)
            ]
            both = sorted(set.intersection(*(set(epochs) for epochs in logged)))
            assert sorted(trial.intermediate_values) == both, config_id(group, trial.number)
            for epoch in both:
                mean = statistics.fmean(values[epoch] for values in logged)
                assert trial.intermediate_values[epoch] == pytest.approx(mean), (config_id(group, trial.number), epoch)
            for restart, values in enumerate(logged):
                run = runs[trial_key(group, trial.number, restart)]
                assert sorted(values) == list(range(1, int(run.data.tags["epochs_run"]) + 1))


def recorded_outcomes(out: Path, space) -> list[selection.Outcome]:
    """The trials as MLflow recorded them: state, rows and dev scores per epoch; nothing Tune returned."""
    outcomes = []
    for run in trial_runs(out):
        tags = run.data.tags
        history = dev_history(out, run)
        best = max(history, key=lambda m: (m.value, -m.step))
        outcomes.append(
            selection.Outcome(
                key=tags["trial_key"],
                group=tags["group"],
                config_id=tags["config_id"],
                restart=int(tags["restart"]),
                seed=int(tags["seed"]),
                params={},
                rows=tags["rows"].split(","),
                state=tags["state"],
                epochs=len(history),
                best_dev=best.value,
                best_epoch=best.step,
            )  # fmt: skip
        )
    return outcomes


def test_summary_is_what_selection_chooses_from_the_dev_scores_mlflow_recorded(node_loss):
    choices = selection.choose(node_loss.space, recorded_outcomes(node_loss.out, node_loss.space))
    rows = {row["row"]: row for row in summary(node_loss.out)["rows"]}
    assert set(rows) == set(choices)
    for row, choice in choices.items():
        assert rows[row]["chosen"] == choice.outcome.key, row
        assert rows[row]["dev"] == pytest.approx(choice.outcome.best_dev), row
        assert rows[row]["config_mean_dev"] == pytest.approx(choice.config_mean_dev), row


def test_each_configuration_has_one_run_whose_mean_per_epoch_is_over_its_restarts_logged_epochs(node_loss):
    restarts = trial_runs(node_loss.out)
    runs = configuration_runs(node_loss.out)
    assert sorted(r.data.tags["config_id"] for r in runs) == sorted({r.data.tags["config_id"] for r in restarts})
    mlflow = client(node_loss.out)
    for run in runs:
        by_epoch: dict[int, list[float]] = {}
        for restart in (r for r in restarts if r.data.tags["config_id"] == run.data.tags["config_id"]):
            for point in dev_history(node_loss.out, restart):
                by_epoch.setdefault(point.step, []).append(point.value)
        mean = mlflow.get_metric_history(run.info.run_id, "dev_score_mean")
        assert [m.step for m in mean] == sorted(by_epoch), run.data.tags["config_id"]
        for point in mean:
            assert point.value == pytest.approx(statistics.fmean(by_epoch[point.step]))


# --- driver loss -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def driver_loss(cluster, storage, data, tmp_path_factory, node_loss):  # after node_loss: one sweep at a time
    root = tmp_path_factory.mktemp("driver_loss")
    argv, _ = sweep_argv(cluster, root, storage(root), data, restarts=1)  # three trials: two, then a third
    out = root / "out"
    first_log, second_log = root / "first.log", root / "second.log"

    first = launch_sweep([*argv, "--pause-after-epoch", "1"], first_log)
    try:
        (released, *_) = wait_for("a trial held", lambda: holding(out, first_log), first, first_log, BOUND)
        release(out, released)

        def kill_point() -> dict[str, int]:
            done = finished_keys(first_log.read_text())
            return holding(out, first_log) if released in done else {}

        in_flight = wait_for("a finished trial and one held", kill_point, first, first_log, BOUND)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        stop_sweep(first)
    first_text = first_log.read_text()
    newest = newest_checkpoints(out)
    last_pts = {key: read_stored(last) for key, (_, last) in newest.items()}  # a resumed trial replaces its own
    lift_pause(out)
    second = launch_sweep(argv, second_log)
    try:
        second.wait(timeout=BOUND)
    finally:
        stop_sweep(second)
    finished = finished_keys(first_text)
    return SimpleNamespace(
        out=out,
        first=SimpleNamespace(code=first.returncode, keys=finished),
        second=SimpleNamespace(code=second.returncode, text=second_log.read_text()),
        in_flight={key: n for key, n in in_flight.items() if key not in finished},
        stored={key: epoch for key, (epoch, _) in newest.items()},
        last_pts=last_pts,
    )


def test_rerun_after_the_driver_is_killed_finishes_the_sweep(driver_loss):
    assert driver_loss.first.code == -signal.SIGKILL
    assert driver_loss.second.code == 0, driver_loss.second.text[-3000:]
    assert "resuming the sweep in" in driver_loss.second.text
    assert all(row["chosen"] for row in summary(driver_loss.out)["rows"])


def test_trials_finished_before_the_driver_was_killed_train_nothing_again(driver_loss):
    assert driver_loss.first.keys, "no trial had finished when the driver was killed"
    trials = {t["key"]: t for t in summary(driver_loss.out)["trials"]}
    for key in driver_loss.first.keys:
        final = read_stored(in_storage(trials[key]["checkpoint_dir"], "last.pt"))
        assert final == driver_loss.last_pts[key], key
        lines = final_train_log(trials[key])
        assert resumed_after(lines) == [] and trained_epochs(lines) == list(range(1, trials[key]["epochs"] + 1))


def test_trials_in_flight_when_the_driver_was_killed_resume_from_their_checkpoints(driver_loss):
    assert driver_loss.in_flight, "no trial was running when the driver was killed"
    trials = {t["key"]: t for t in summary(driver_loss.out)["trials"]}
    for key, recorded in driver_loss.in_flight.items():
        lines = final_train_log(trials[key])
        assert driver_loss.stored[key] >= recorded  # what the driver had logged had reached the storage
        assert resumed_after(lines) == [driver_loss.stored[key]], lines
        assert trained_epochs(lines) == list(range(1, trials[key]["epochs"] + 1)), lines  # each once, in order


def test_mlflow_holds_no_duplicate_after_the_driver_is_killed(driver_loss):
    runs = trial_runs(driver_loss.out)
    keys = sorted(run.data.tags["trial_key"] for run in runs)
    assert keys == sorted(t["key"] for t in summary(driver_loss.out)["trials"])
    configurations = sorted(run.data.tags["config_id"] for run in configuration_runs(driver_loss.out))
    assert configurations == sorted({run.data.tags["config_id"] for run in runs})
    for run in runs:
        steps = [m.step for m in dev_history(driver_loss.out, run)]
        assert steps == list(range(1, int(run.data.tags["epochs_run"]) + 1)), run.data.tags["trial_key"]
        assert run.info.status == "FINISHED"


# --- cluster gone ----------------------------------------------------------------------------------------------


def test_an_address_where_no_cluster_answers_fails_in_seconds_before_anything_is_written(tmp_path):
    with socket.socket() as taken:  # bound but not listening: nobody else gets the port, connections are refused
        taken.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        out = tmp_path / "out"
        command = [sys.executable, "-m", "orchestrator.sweep", SMOKE, "--out", out, "--address", address]
        started = time.monotonic()
        done = subprocess.run(
            command, cwd=REPO, env={**os.environ, **DRIVER_ENV}, capture_output=True, text=True, timeout=BOUND
        )
        seconds = time.monotonic() - started
    assert done.returncode == 2, done.stderr[-3000:]
    assert address in done.stderr and "no Ray cluster answers" in done.stderr
    assert not out.exists()
    # Imports take most of it on a loaded machine; ray.init itself retried such an address for over 5 minutes.
    assert seconds < 90, seconds
