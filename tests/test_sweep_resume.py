"""Interrupt a sweep midway (Ctrl-C, i.e. SIGINT, or SIGTERM, to the real command) and resume it with --resume.

The first session is interrupted once its driver has recorded one trial as finished and another as running
with one epoch logged in MLflow (the sweep starts paused after epoch 1 and the test releases the first trial, so
it gets there by construction); the second must finish the sweep without running a finished trial again,
duplicating an MLflow run, or training again an epoch whose checkpoint reached the sweep's storage. Every wait
is bounded for a machine under load, where a trial of seconds can take minutes.
"""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest
from sweep_helpers import (
    INTERRUPTED_TRAIN_SENTENCES,
    SMOKE,
    assert_one_finished_run_per_trial_with_each_epoch_once,
    client,
    configuration_runs,
    data_overrides,
    end,
    final_train_log,
    finished_keys,
    held,
    launch,
    lift_pause,
    newest_checkpoints,
    release,
    resumed_after,
    summary,
    trained_epochs,
    wait_for,
    write_slices,
)

EPOCHS = 3
BOUND = 900  # seconds, for any one wait


def interrupted(conll2003_en, root, stop: signal.Signals) -> SimpleNamespace:
    """A smoke sweep sent `stop` once one trial has finished and another holds after its first epoch, then
    rerun with --resume and the pause lifted."""
    paths = write_slices(conll2003_en, root / "data", counts=(INTERRUPTED_TRAIN_SENTENCES, 40, 40))
    out = root / "out"
    argv = [SMOKE, "--out", out, "--no-test", "--set", f"epochs={EPOCHS}", "--set", "max_concurrent=1"]
    argv += data_overrides(paths)
    first_log, second_log = root / "first.log", root / "second.log"

    def holding(after: str | None) -> dict[str, int]:
        done = set(finished_keys(first_log.read_text()))
        trials = {key: epochs for key, epochs in held(out).items() if key not in done}
        return trials if after is None or after in done else {}

    first = launch([*argv, "--pause-after-epoch", "1"], first_log)
    try:
        (first_trial,) = wait_for("a trial held after its first epoch", lambda: holding(None), first, first_log, BOUND)
        release(out, first_trial)
        what = "finished trial and a running one with an epoch logged"
        recorded = wait_for(what, lambda: holding(first_trial), first, first_log, BOUND)
        first.send_signal(stop)
        first.wait(timeout=BOUND)
    finally:
        end(first)
    first_text = first_log.read_text()
    in_flight = {key: n for key, n in recorded.items() if key not in finished_keys(first_text)}
    stored = {key: epoch for key, (epoch, _) in newest_checkpoints(out).items()}
    lift_pause(out)

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


@pytest.fixture(scope="module")
def sessions(conll2003_en, tmp_path_factory):
    return interrupted(conll2003_en, tmp_path_factory.mktemp("resume"), signal.SIGINT)


def test_interrupted_sweep_exits_130_and_says_how_to_resume(sessions):
    assert sessions.first.code == 130, sessions.first.text
    assert "rerun the same command to resume" in sessions.first.text


def test_resumed_sweep_finishes_from_the_experiment_tune_saved(sessions):
    assert sessions.second.code == 0, sessions.second.text
    assert "resuming the sweep in" in sessions.second.text
    assert "cannot be read back" not in sessions.second.text


def test_no_trial_runs_twice(sessions):
    assert sessions.first.keys, "the first session was interrupted before any trial finished"
    assert not set(sessions.first.keys) & set(sessions.second.keys)
    all_trials = sorted(t["key"] for t in summary(sessions.out)["trials"])
    assert sorted(sessions.first.keys + sessions.second.keys) == all_trials


def test_no_mlflow_run_is_duplicated(sessions):
    assert_one_finished_run_per_trial_with_each_epoch_once(sessions.out)


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


@pytest.fixture(scope="module")
def terminated(conll2003_en, tmp_path_factory):
    return interrupted(conll2003_en, tmp_path_factory.mktemp("sigterm"), signal.SIGTERM)


def test_sigterm_stops_the_sweep_as_ctrl_c_does_exit_143_with_the_resume_hint_and_no_stack_dump(terminated):
    assert terminated.first.code == 143, terminated.first.text
    assert "rerun the same command to resume" in terminated.first.text
    assert "SIGTERM received" not in terminated.first.text and "Traceback" not in terminated.first.text


def test_the_rerun_after_a_sigterm_finishes_and_trains_no_finished_trial_again(terminated):
    assert terminated.second.code == 0, terminated.second.text
    assert terminated.first.keys and not set(terminated.first.keys) & set(terminated.second.keys)
    trials = {t["key"]: t for t in summary(terminated.out)["trials"]}
    for key in terminated.in_flight:
        assert trained_epochs(final_train_log(trials[key])) == list(range(1, EPOCHS + 1))
