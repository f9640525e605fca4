"""One driver owns a sweep's --out: a second driver started on it is refused while the first runs, the first
finishes untouched, and the lock of a driver that was killed does not block the rerun. And stopping a killed
sweep's process leaves none of its processes behind.

The first driver is started paused after epoch 1 (python -m orchestrator.pause), so the second arrives while a
trial is held mid-sweep, whatever an epoch costs.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from types import SimpleNamespace

import optuna
import pytest
from sweep_helpers import (
    INTERRUPTED_TRAIN_SENTENCES,
    REPO,
    SMOKE,
    data_overrides,
    end,
    held,
    launch,
    lift_pause,
    summary,
    sweep_state,
    trial_runs,
    wait_for,
    write_slices,
)

from orchestrator.loopback import session_processes
from orchestrator.outdir import LOCK_FILE

BOUND = 600  # seconds, for any one wait on a loaded machine


@pytest.fixture(scope="module")
def argv(conll2003_en, tmp_path_factory):
    paths = write_slices(conll2003_en, tmp_path_factory.mktemp("data"), counts=(INTERRUPTED_TRAIN_SENTENCES, 40, 40))
    sets = ["--set", "epochs=2", "--set", "restarts=1", "--set", "max_concurrent=1", *data_overrides(paths)]
    return lambda out: [SMOKE, "--out", out, "--no-test", *sets]


@pytest.fixture(scope="module")
def two_drivers(argv, tmp_path_factory):
    root = tmp_path_factory.mktemp("two_drivers")
    out, log = root / "out", root / "first.log"
    first = launch([*argv(out), "--pause-after-epoch", "1"], log)
    try:
        wait_for("a held trial", lambda: held(out), first, log, BOUND)
        command = [sys.executable, "-m", "orchestrator.sweep", *map(str, argv(out))]
        second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=BOUND)
        lift_pause(out)
        first.wait(timeout=BOUND)
    finally:
        end(first)
    return SimpleNamespace(out=out, first=first, text=log.read_text(), second=second)


def test_a_second_driver_on_a_running_sweeps_out_is_refused_naming_its_process_and_host(two_drivers):
    assert two_drivers.second.returncode == 2, two_drivers.second.stderr
    error = two_drivers.second.stderr
    assert f"is in use by the sweep of process {two_drivers.first.pid} on host {socket.gethostname()}" in error
    assert "Traceback" not in error and two_drivers.second.stdout == ""


def test_the_first_driver_finishes_untouched_by_the_second(two_drivers):
    assert two_drivers.first.returncode == 0, two_drivers.text[-3000:]
    keys = sorted(run.data.tags["trial_key"] for run in trial_runs(two_drivers.out))
    expected = ["ce-000-r0", "soft_greedy_annealed-000-r0", "soft_greedy_annealed-001-r0"]
    assert keys == sorted(t["key"] for t in summary(two_drivers.out)["trials"]) == expected
    storage = sweep_state(two_drivers.out).optuna_storage
    for group, configurations in (("ce", 1), ("soft_greedy_annealed", 2)):
        assert len(optuna.load_study(study_name=group, storage=storage).trials) == configurations


@pytest.fixture(scope="module")
def killed(argv, tmp_path_factory):
    root = tmp_path_factory.mktemp("killed")
    out, log = root / "out", root / "first.log"
    first = launch([*argv(out), "--pause-after-epoch", "1"], log)
    try:
        wait_for("a held trial", lambda: held(out), first, log, BOUND)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
        left_behind = session_processes(first.pid)
    finally:
        end(first)
    after_stop = session_processes(first.pid)
    lift_pause(out)
    rerun = subprocess.run([sys.executable, "-m", "orchestrator.sweep", *map(str, argv(out))], cwd=REPO,
                           capture_output=True, text=True, timeout=BOUND)  # fmt: skip
    return SimpleNamespace(out=out, left_behind=left_behind, after_stop=after_stop, rerun=rerun)


def test_the_lock_of_a_killed_driver_does_not_block_the_rerun(killed):
    assert (killed.out / LOCK_FILE).exists()
    assert killed.rerun.returncode == 0, killed.rerun.stderr[-3000:]
    assert "resuming the sweep in" in killed.rerun.stdout


def test_stopping_a_killed_sweep_leaves_none_of_its_processes_alive(killed):
    assert killed.left_behind, "a killed driver left no process behind: nothing to stop"
    assert killed.after_stop == []
