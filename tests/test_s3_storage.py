"""A sweep whose trials live in a bucket (--storage s3://BUCKET/PREFIX?endpoint_override=...) of a real S3-protocol
server on 127.0.0.1 (tests/s3_server.py), killed midway and rerun with the same command, test scoring included.

What only an object store shows: the pause file and the held trials' notes are objects; a checkpoint cut short in
the bucket (what a kill or a lost server leaves mid-upload) is skipped, never resumed from; Tune's saved experiment
is found again below a URI whose query names the endpoint; the chosen checkpoints are downloaded over HTTP to be
scored and logged to MLflow; and the bucket's credentials stay in the environment, out of every file and run.

The sweep (smoke space, one restart, two trials at once, on the driver's own local Ray) starts paused after epoch
1. The test releases one trial and waits until it has finished and the next two hold after their first epoch;
then it SIGKILLs the driver, cuts one held trial's newest last.pt in half in the bucket, lifts the pause and reruns
the same command. Every point is reached by construction (sweep_helpers), never by timing.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from s3_server import object_names, s3_in_environment
from sweep_helpers import (
    INTERRUPTED_TRAIN_SENTENCES,
    SMOKE,
    client,
    data_overrides,
    dev_history,
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
    sweep_state,
    trained_epochs,
    trial_runs,
    wait_for,
    write_slices,
)

from orchestrator.outdir import HELD_DIR, PAUSE_FILE, TEST_RECORD, SweepState, in_storage, storage_location
from orchestrator.space import config_id, load_space, trial_key
from orchestrator.studies import storage_url

EPOCHS = 3
PREFIX = "sweeps/smoke"
BOUND = 600  # seconds, for any one wait on a loaded machine


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3_in_environment(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="module")
def sessions(s3, conll2003_en, tmp_path_factory):
    root = tmp_path_factory.mktemp("s3_sweep")
    paths = write_slices(conll2003_en, root / "data", counts=(INTERRUPTED_TRAIN_SENTENCES, 40, 40))
    out, storage = root / "out", s3.uri(PREFIX)
    sets = ["--set", f"epochs={EPOCHS}", "--set", "restarts=1", "--set", "max_concurrent=2"]
    argv = [SMOKE, "--out", out, "--storage", storage, *sets, *data_overrides(paths)]
    first_log, second_log = root / "first.log", root / "second.log"

    first = launch([*argv, "--pause-after-epoch", "1"], first_log)
    try:
        (released, *_) = wait_for("a trial held", lambda: held(out), first, first_log, BOUND)
        release(out, released)

        def kill_point() -> dict[str, int]:
            """Two trials held after their first epoch, once the released one has finished."""
            done = set(finished_keys(first_log.read_text()))
            holding = {key: epochs for key, epochs in held(out).items() if key not in done}
            return holding if released in done and len(holding) == 2 else {}

        holding = wait_for("a finished trial and two held", kill_point, first, first_log, BOUND)
        objects = object_names(s3, PREFIX)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        end(first)
    newest = newest_checkpoints(out)
    cut, kept = sorted(holding)
    whole = read_stored(newest[cut][1])
    with s3.filesystem().open_output_stream(path_in_bucket(newest[cut][1])) as stream:
        stream.write(whole[: len(whole) // 2])
    lift_pause(out)
    second = launch(argv, second_log)
    try:
        second.wait(timeout=BOUND)
    finally:
        end(second)
    return SimpleNamespace(
        out=out,
        space=load_space(SMOKE, sets[1::2]),
        texts=[first_log.read_text(), second_log.read_text()],
        code=second.returncode,
        finished=released,
        finished_folder=trial_folder(newest[released][1]),
        holding=holding,
        cut=cut,
        kept=kept,
        objects_while_held=objects,
    )


def path_in_bucket(location: str) -> str:
    """BUCKET/KEY of an s3:// location."""
    return location.removeprefix("s3://").split("?", 1)[0]


def trial_folder(location: str) -> str:
    """The Tune trial folder (KEY_TRIALID) that a checkpoint, or a file of one, is in."""
    parts = path_in_bucket(location).split("/")
    return next(parts[i - 1] for i in range(len(parts) - 1, 0, -1) if parts[i].startswith("checkpoint_"))


def test_the_rerun_finishes_the_sweep_and_scores_its_choices_on_test(sessions):
    assert sessions.code == 0, sessions.texts[1][-3000:]
    assert "resuming the sweep in" in sessions.texts[1]
    result = summary(sessions.out)
    assert result["test_scored"] and all(row["chosen"] and row["test"] is not None for row in result["rows"])


def test_the_pause_and_the_held_trials_notes_are_objects_in_the_bucket(sessions):
    assert PAUSE_FILE in sessions.objects_while_held
    assert {f"{HELD_DIR}/{key}.json" for key in sessions.holding} <= sessions.objects_while_held
    assert set(sessions.holding.values()) == {1}  # what held(OUT) read back from those notes


def test_a_checkpoint_cut_short_in_the_bucket_is_never_resumed_from(sessions):
    trials = {t["key"]: t for t in summary(sessions.out)["trials"]}
    lines = final_train_log(trials[sessions.cut])
    assert resumed_after(lines) == [], lines  # it trained again from the start
    assert trained_epochs(lines) == list(range(1, EPOCHS + 1)), lines


def test_a_trial_held_beside_it_resumes_from_its_whole_checkpoint_in_the_bucket(sessions):
    trials = {t["key"]: t for t in summary(sessions.out)["trials"]}
    lines = final_train_log(trials[sessions.kept])
    assert resumed_after(lines) == [1], lines
    assert trained_epochs(lines) == list(range(1, EPOCHS + 1)), lines


def test_each_trial_has_one_mlflow_run_and_one_optuna_value_per_epoch(sessions):
    runs = trial_runs(sessions.out)
    assert sorted(r.data.tags["trial_key"] for r in runs) == sorted(t["key"] for t in summary(sessions.out)["trials"])
    logged = {r.data.tags["trial_key"]: {m.step: m.value for m in dev_history(sessions.out, r)} for r in runs}
    for key, steps in logged.items():
        assert sorted(steps) == list(range(1, EPOCHS + 1)), key
    for group in sessions.space.groups:
        for trial in optuna.load_study(study_name=group, storage=storage_url(sessions.out)).trials:
            scout = trial_key(group, trial.number, 0)
            assert trial.intermediate_values == logged[scout], config_id(group, trial.number)


def test_the_rerun_restores_tunes_experiment_from_the_bucket(sessions):
    # A new experiment would have run the finished trial again, as a new Tune trial in a folder of its own.
    trials = {t["key"]: t for t in summary(sessions.out)["trials"]}
    assert trial_folder(trials[sessions.finished]["checkpoint_dir"]) == sessions.finished_folder
    assert "running up to" not in sessions.texts[1]  # printed only when a new experiment starts


def test_the_chosen_checkpoints_are_downloaded_from_the_bucket_scored_and_logged(sessions, tmp_path):
    record = json.loads((sessions.out / TEST_RECORD).read_text())
    mlflow = client(sessions.out)
    state = sweep_state(sessions.out)
    for key in {row["chosen"] for row in summary(sessions.out)["rows"]}:  # the record also holds what the report scored
        entry = record[key]
        assert entry["result"]["checkpoint"].startswith("s3://"), entry
        (run,) = [r for r in trial_runs(sessions.out) if r.data.tags["trial_key"] == key]
        logged = Path(mlflow.download_artifacts(run.info.run_id, "best_checkpoint/best.pt", str(tmp_path / key)))
        assert logged.read_bytes() == read_stored(entry["result"]["checkpoint"]), key
    assert state.storage.startswith("s3://")


def test_no_credential_reaches_sweep_json_the_output_the_runs_or_the_bucket(sessions, s3):
    secrets_ = [s3.environment["AWS_ACCESS_KEY_ID"], s3.environment["AWS_SECRET_ACCESS_KEY"]]
    files = [path.read_bytes() for path in sessions.out.rglob("*") if path.is_file()]
    objects = [read_stored(storage_location(sweep_state(sessions.out).storage, f"{s3.bucket}/{PREFIX}/{name}"))
               for name in object_names(s3, PREFIX)]  # fmt: skip
    runs = trial_runs(sessions.out)
    values = [v for run in runs for v in (*run.data.params.values(), *run.data.tags.values())]
    for secret in secrets_:
        assert not [text for text in sessions.texts if secret in text]
        assert not [content for content in files + objects if secret.encode() in content]
        assert not [value for value in values if secret in value]


def test_a_storage_uri_keeps_its_query_after_the_names_joined_to_it():
    uri = "s3://bucket/prefix?endpoint_override=http://127.0.0.1:9000"
    assert in_storage(uri, "ray", "trial") == "s3://bucket/prefix/ray/trial?endpoint_override=http://127.0.0.1:9000"
    assert in_storage("s3://bucket", "ray") == "s3://bucket/ray"
    assert in_storage("/data/sweeps/", "ray") == "/data/sweeps/ray"
    assert storage_location(uri, "bucket/prefix/ray/t/checkpoint_000002") == (
        "s3://bucket/prefix/ray/t/checkpoint_000002?endpoint_override=http://127.0.0.1:9000"
    )
    assert storage_location("/data/sweeps", "/data/sweeps/ray/t") == "/data/sweeps/ray/t"
    state = SweepState("space.yaml", "{}", "sqlite:///m.db", uri, "sqlite:///o.db", tune_name="ray-0123abcd")
    assert state.tune_experiment == "s3://bucket/prefix/ray-0123abcd?endpoint_override=http://127.0.0.1:9000"
