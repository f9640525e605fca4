"""A sweep whose --out fills up stops with one clear message, and the rerun after space is freed finishes it.

--out is a small tmpfs mounted for the test (skipped where this process may not mount one), grown once the first
session has stopped, as a user would free space.
"""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
from sweep_helpers import (
    REPO,
    SMOKE,
    assert_one_finished_run_per_trial_with_each_epoch_once,
    data_overrides,
    write_slices,
)

BOUND = 600  # seconds, for any one sweep on a loaded machine


def mount(directory, size: str, remount: bool = False) -> bool:
    options = f"remount,size={size}" if remount else f"size={size}"
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)]
    return subprocess.run(command, capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def sessions(conll2003_en, tmp_path_factory):
    root = tmp_path_factory.mktemp("disk_full")
    disk = root / "disk"
    disk.mkdir()
    if not mount(disk, "8m"):
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    try:
        paths = write_slices(conll2003_en, root / "data", counts=(300, 100, 100))
        command = [sys.executable, "-m", "orchestrator.sweep", SMOKE, "--out", disk / "out", "--no-test"]
        command = [*map(str, command), *map(str, data_overrides(paths))]
        first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=BOUND)
        assert mount(disk, "256m", remount=True)
        rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=BOUND)
        yield SimpleNamespace(disk=disk, out=disk / "out", first=first, rerun=rerun)
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], capture_output=True)


def test_a_full_disk_stops_the_sweep_with_one_message_naming_the_path_and_the_space_left(sessions):
    first = sessions.first
    assert first.returncode == 1, first.stderr[-3000:]
    errors = [line for line in first.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, first.stderr[-3000:]
    assert errors[0].startswith(f"error: the disk is full: could not write {sessions.disk}")
    assert "free of" in errors[0] and "rerun the same command to resume" in errors[0]
    assert "Traceback" not in first.stderr + first.stdout


def test_the_rerun_after_space_is_freed_finishes_with_each_trial_and_epoch_once(sessions):
    assert sessions.rerun.returncode == 0, sessions.rerun.stderr[-3000:]
    assert_one_finished_run_per_trial_with_each_epoch_once(sessions.out)
