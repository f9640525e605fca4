"""Kill a sweep's driver with SIGKILL midway, then rerun the same command.

A killed driver saves nothing on its way out: Tune's saved experiment is whatever it last wrote, which may be
older than the checkpoints in storage, the MLflow runs and the Optuna studies. The test makes that certain
rather than a matter of timing: it copies the experiment Tune had saved when the driver had recorded one trial
as finished and a second as running (point A), lets the sweep go on until that second trial has finished and a
third is running (point B), kills the driver, and puts the copy back. The rerun then meets an experiment in
which the second trial is still running from a checkpoint that has been deleted since, and which knows neither
the third trial nor its configuration, which Optuna holds as running.

The sweep starts paused after epoch 1, so that each point is reached by construction: a trial holds once its
driver has recorded its first epoch, and goes on only when the test releases it.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from sweep_helpers import (
    INTERRUPTED_TRAIN_SENTENCES,
    SMOKE,
    assert_one_finished_run_per_trial_with_each_epoch_once,
    data_overrides,
    end,
    final_train_log,
    finished_keys,
    held,
    launch,
    lift_pause,
    newest_checkpoints,
    read_stored,
    release,
    resumed_after,
    summary,
    trained_epochs,
    tune_experiment,
    wait_for,
    write_slices,
)

from orchestrator.space import load_space, trial_key
from orchestrator.studies import storage_url

EPOCHS = 3
BOUND = 900  # seconds, for any one wait on a loaded machine


def saved_experiment(out: Path) -> dict[str, bytes]:
    """The files of the experiment Tune has saved (its state, the searcher's), read twice with no save between."""
    experiment = tune_experiment(out)

    def read() -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in experiment.iterdir() if path.is_file()}

    first = read()
    time.sleep(0.3)
    saved = any(name.startswith("experiment_state") for name in first)
    return first if saved and read() == first else {}


def put_back(out: Path, saved: dict[str, bytes]) -> None:
    experiment = tune_experiment(out)
    for path in experiment.iterdir():
        if path.is_file() and path.name not in saved:
            path.unlink()
    for name, content in saved.items():
        (experiment / name).write_bytes(content)


@pytest.fixture(scope="module")
def sessions(conll2003_en, tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    paths = write_slices(conll2003_en, root / "data", counts=(INTERRUPTED_TRAIN_SENTENCES, 40, 40))
    out = root / "out"
    overrides = ["--set", f"epochs={EPOCHS}", "--set", "max_concurrent=1", *data_overrides(paths)]
    argv = [SMOKE, "--out", out, "--no-test", *overrides]
    first_log, second_log = root / "first.log", root / "second.log"

    def held_after_finished(finished: str | None):
        """The trial held after its first epoch once `finished` (if any) has finished."""
        done = set(finished_keys(first_log.read_text()))
        holding = [key for key in held(out) if key not in done]
        return holding[0] if holding and (finished is None or finished in done) else None

    first = launch([*argv, "--pause-after-epoch", "1"], first_log)
    try:
        first_trial = wait_for("a trial held after its first epoch", lambda: held_after_finished(None), first,
                               first_log, BOUND)  # fmt: skip
        release(out, first_trial)

        def point_a() -> tuple[str, dict[str, bytes]] | None:
            second = held_after_finished(first_trial)
            saved = saved_experiment(out) if second else {}
            return (second, saved) if saved else None

        second_trial, saved = wait_for("point A", point_a, first, first_log, BOUND)
        release(out, second_trial)
        third_trial = wait_for("point B", lambda: held_after_finished(second_trial), first, first_log, BOUND)
        at_kill = held(out)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        end(first)
    first_text = first_log.read_text()
    put_back(out, saved)
    newest = newest_checkpoints(out)
    lift_pause(out)

    second = launch(argv, second_log)
    try:
        second.wait(timeout=BOUND)
    finally:
        end(second)
    return SimpleNamespace(
        out=out,
        space=load_space(SMOKE, overrides[1::2]),
        first=SimpleNamespace(code=first.returncode, text=first_text, keys=finished_keys(first_text)),
        second=SimpleNamespace(code=second.returncode, text=second_log.read_text()),
        second_trial=second_trial,
        at_kill={third_trial: at_kill[third_trial]},
        stored={key: epoch for key, (epoch, _) in newest.items()},
        last_pts={key: read_stored(last) for key, (_, last) in newest.items()},
    )


def test_rerun_after_a_kill_finishes_every_planned_trial(sessions):
    assert sessions.first.code == -signal.SIGKILL
    assert sessions.second.code == 0, sessions.second.text
    result = summary(sessions.out)
    assert all(row["chosen"] for row in result["rows"])
    expected = []
    for group in sessions.space.groups:
        study = optuna.load_study(study_name=group, storage=storage_url(sessions.out))
        for trial in study.trials:
            assert trial.state.name in ("COMPLETE", "PRUNED"), (group, trial.number, trial.state)
            restarts = sessions.space.restarts_of(trial.state.name)
            expected += [trial_key(group, trial.number, restart) for restart in range(restarts)]
    assert sorted(t["key"] for t in result["trials"]) == sorted(expected)
    assert {t["state"] for t in result["trials"]} <= {"COMPLETE", "PRUNED"}


def test_trials_finished_before_the_kill_train_nothing_again(sessions):
    assert sessions.second_trial in sessions.first.keys  # the one the restored experiment holds as running
    trials = {t["key"]: t for t in summary(sessions.out)["trials"]}
    for key in sessions.first.keys:
        final = Path(trials[key]["checkpoint_dir"]) / "last.pt"
        assert final.read_bytes() == sessions.last_pts[key], key


def test_trial_running_at_the_kill_resumes_from_its_newest_stored_checkpoint(sessions):
    assert sessions.at_kill, "no trial was running when the driver was killed"
    trials = {t["key"]: t for t in summary(sessions.out)["trials"]}
    for key, recorded in sessions.at_kill.items():
        lines = final_train_log(trials[key])
        assert sessions.stored[key] >= recorded
        assert resumed_after(lines) == [sessions.stored[key]], lines
        assert trained_epochs(lines) == list(range(1, trials[key]["epochs"] + 1)), lines  # each once, in order


def test_each_trial_has_one_mlflow_run_with_each_epoch_logged_once(sessions):
    assert_one_finished_run_per_trial_with_each_epoch_once(sessions.out)
