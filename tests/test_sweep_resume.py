"""Interrupt a sweep midway (Ctrl-C, i.e. SIGINT, to the real command) and resume it with --resume.

The first session is stopped once one trial has finished and another has written a checkpoint;
the second must finish the sweep without running a finished trial again or duplicating an MLflow run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from sweep_helpers import REPO, SMOKE, data_overrides, dev_history, summary, trial_runs, write_slices

EPOCHS = 8  # long enough (a few seconds per trial) for the interrupt to land inside a trial


def launch(argv: list, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "orchestrator.sweep", *map(str, argv)]
    return subprocess.Popen(command, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, env=dict(os.environ))


def finished_keys(text: str) -> list[str]:
    return [line.split()[1] for line in text.splitlines() if line.startswith("trial ")]


def checkpointed_keys(out: Path) -> set[str]:
    return {d.name.rsplit("_", 1)[0] for d in (out / "ray").glob("*_*") if any(d.glob("checkpoint_*"))}


@pytest.fixture(scope="module")
def sessions(conll2003_en, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    paths = write_slices(conll2003_en, root / "data")
    out = root / "out"
    argv = [SMOKE, "--out", out, "--no-test", "--set", f"epochs={EPOCHS}", "--set", "max_concurrent=1"]
    argv += data_overrides(paths)

    first_log = root / "first.log"
    first = launch(argv, first_log)
    deadline = time.monotonic() + 240
    in_flight: set[str] = set()
    while time.monotonic() < deadline and first.poll() is None:
        done = finished_keys(first_log.read_text())
        in_flight = checkpointed_keys(out) - set(done) if (out / "ray").exists() else set()
        if done and in_flight:
            first.send_signal(signal.SIGINT)
            break
        time.sleep(0.2)
    first.wait(timeout=180)

    second_log = root / "second.log"
    second = launch([*argv, "--resume"], second_log)
    second.wait(timeout=400)
    first_text, second_text = first_log.read_text(), second_log.read_text()
    return SimpleNamespace(
        out=out,
        first=SimpleNamespace(code=first.returncode, text=first_text, keys=finished_keys(first_text)),
        second=SimpleNamespace(code=second.returncode, text=second_text, keys=finished_keys(second_text)),
        in_flight=in_flight - set(finished_keys(first_text)),
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


def test_interrupted_trial_continues_from_its_checkpoint(sessions):
    assert sessions.in_flight, "no trial was in flight when the first session was interrupted"
    for key in sessions.in_flight:
        (log,) = (sessions.out / "ray").glob(f"{key}_*/checkpoint_*/train.log")
        lines = log.read_text().splitlines()
        assert any(line.startswith("Resuming") for line in lines), lines
        epochs = [int(line.split()[1]) for line in lines if line.startswith("epoch")]
        assert epochs == list(range(1, len(epochs) + 1))  # each epoch trained once, in order
