"""Interrupt a sweep midway (Ctrl-C, i.e. SIGINT, to the real command) and resume it with --resume.

The first session is interrupted once its driver has recorded one trial as finished and another as running
with at least one epoch logged in MLflow; the second must finish the sweep without running a finished trial
again, duplicating an MLflow run, or training again an epoch whose checkpoint reached the sweep's storage.
Every wait is bounded for a machine under load, where a trial of seconds can take minutes.
"""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest
from sweep_helpers import (
    SMOKE,
    client,
    configuration_runs,
    data_overrides,
    dev_history,
    end,
    epochs_in_flight,
    final_train_log,
    finished_keys,
    launch,
    newest_checkpoints,
    resumed_after,
    summary,
    trained_epochs,
    trial_runs,
    wait_for,
    write_slices,
)

EPOCHS = 6
BOUND = 900  # seconds, for any one wait


@pytest.fixture(scope="module")
def sessions(conll2003_en, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    paths = write_slices(conll2003_en, root / "data", counts=(200, 60, 60))
    out = root / "out"
    argv = [SMOKE, "--out", out, "--no-test", "--set", f"epochs={EPOCHS}", "--set", "max_concurrent=1"]
    argv += data_overrides(paths)

    def interrupt_point() -> dict[str, int]:
        # Another epoch or more to go, so that the interrupt lands inside the trial.
        done = set(finished_keys(first_log.read_text())) if first_log.exists() else set()
        running = {key: n for key, n in epochs_in_flight(out).items() if key not in done and n <= EPOCHS - 2}
        return running if done else {}

    first_log, second_log = root / "first.log", root / "second.log"
    first = launch(argv, first_log)
    try:
        what = "finished trial and a running one with an epoch logged"
        recorded = wait_for(what, interrupt_point, first, first_log, BOUND)
        first.send_signal(signal.SIGINT)
        first.wait(timeout=BOUND)
    finally:
        end(first)
    first_text = first_log.read_text()
    in_flight = {key: n for key, n in recorded.items() if key not in finished_keys(first_text)}
    stored = {key: epoch for key, (epoch, _) in newest_checkpoints(out).items()}

    second = launch([*argv, "--resume"], second_log)
    try:
        second.wait(timeout=BOUND)
    finally:
        end(second)
    second_text = second_log.read_text()
    return SimpleNamespace(
        out=out,
        first=SimpleNamespace(code=first.returncode, text=first_text, keys=finished_keys(first_text)),
        second=SimpleNamespace(code=second.returncode, text=second_text, keys=finished_keys(second_text)),
        in_flight=in_flight,
        stored={key: stored.get(key, 0) for key in in_flight},
    )


def test_interrupted_sweep_exits_130_and_says_how_to_resume(sessions):
    assert sessions.first.code == 130, sessions.first.text
    assert "rerun the same command to resume" in sessions.first.text


def test_resumed_sweep_finishes(sessions):
    assert sessions.second.code == 0, sessions.second.text
    assert "resuming the sweep in" in sessions.second.text


def test_no_trial_runs_twice(sessions):
    assert sessions.first.keys, "the first session was interrupted before any trial finished"
    assert not set(sessions.first.keys) & set(sessions.second.keys)
    all_trials = sorted(t["key"] for t in summary(sessions.out)["trials"])
    assert sorted(sessions.first.keys + sessions.second.keys) == all_trials


def test_no_mlflow_run_is_duplicated(sessions):
    runs = trial_runs(sessions.out)
    keys = sorted(run.data.tags["trial_key"] for run in runs)
    assert keys == sorted(t["key"] for t in summary(sessions.out)["trials"])
    for run in runs:
        steps = [m.step for m in dev_history(sessions.out, run)]
        assert steps == list(range(1, int(run.data.tags["epochs_run"]) + 1)), run.data.tags["trial_key"]
        assert run.info.status == "FINISHED"


def test_no_configuration_run_is_duplicated_and_each_epoch_mean_is_logged_once(sessions):
    configurations = configuration_runs(sessions.out)
    ids = sorted(run.data.tags["config_id"] for run in configurations)
    assert ids == sorted({t["key"].rsplit("-r", 1)[0] for t in summary(sessions.out)["trials"]})
    for run in configurations:
        steps = [m.step for m in client(sessions.out).get_metric_history(run.info.run_id, "dev_score_mean")]
        assert steps == list(range(1, EPOCHS + 1)) or run.data.tags["state"] == "PRUNED", run.data.tags["config_id"]
        assert len(steps) == len(set(steps))
        assert run.info.status == "FINISHED"


def test_interrupted_trial_resumes_from_its_newest_stored_checkpoint(sessions):
    assert sessions.in_flight, "no trial was in flight when the first session was interrupted"
    trials = {t["key"]: t for t in summary(sessions.out)["trials"]}
    for key, recorded in sessions.in_flight.items():
        lines = final_train_log(trials[key])
        assert sessions.stored[key] >= recorded  # what the driver logged had reached the storage
        assert resumed_after(lines) == [sessions.stored[key]], lines
        assert trained_epochs(lines) == list(range(1, trials[key]["epochs"] + 1)), lines  # each once, in order
