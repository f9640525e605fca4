"""python -m orchestrator.pause: which trials a pause holds, the file every trial reads, the command that sets it,
and Tune's saved experiment set aside when it does not read back (the sweep's other recovery from a full disk)."""

from __future__ import annotations

import json
import pickle
import threading
import time

import pytest

from orchestrator import pause
from orchestrator.outdir import SweepState
from orchestrator.pause import Pause, PauseFile
from orchestrator.sweep import set_aside_if_damaged


def test_a_pause_holds_every_trial_at_its_next_boundary_by_default():
    assert Pause().holds("ce-000-r0", 0) and Pause().holds("ce-000-r0", 7)


def test_a_pause_after_n_epochs_holds_only_trials_that_have_trained_n():
    after_two = Pause(after_epoch=2)
    assert [after_two.holds("ce-000-r0", epochs) for epochs in (0, 1, 2, 3)] == [False, False, True, True]


def test_a_released_trial_goes_on_while_the_others_hold():
    released = Pause(after_epoch=1, released=frozenset({"ce-000-r0"}))
    assert not released.holds("ce-000-r0", 1) and released.holds("ce-000-r1", 1)


def test_a_pause_file_that_does_not_parse_holds_every_trial():
    assert Pause.from_json("{not json") == Pause()


@pytest.fixture
def file(tmp_path) -> PauseFile:
    return PauseFile.of_storage(str(tmp_path))


def test_a_pause_reads_back_as_written_and_clearing_it_lifts_it(file):
    written = Pause(after_epoch=3, released=frozenset({"a", "b"}))
    file.write(written)
    assert file.read() == written
    file.clear()
    assert file.read() is None


def test_a_trial_waits_while_held_says_so_and_goes_on_when_released(file):
    file.write(Pause(after_epoch=1))
    waited: list[float] = []
    trial = threading.Thread(target=lambda: waited.append(file.hold("ce-000-r0", 1)))
    trial.start()
    deadline = time.monotonic() + 30
    while "ce-000-r0" not in file.held() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert file.held() == {"ce-000-r0": 1} and trial.is_alive()
    file.write(Pause(after_epoch=1, released=frozenset({"ce-000-r0"})))
    trial.join(timeout=30)
    assert not trial.is_alive() and waited[0] > 0
    assert file.held() == {}


def test_a_trial_the_pause_does_not_hold_goes_on_at_once(file):
    file.write(Pause(after_epoch=5))
    assert file.hold("ce-000-r0", 1) == 0.0
    file.clear()
    assert file.hold("ce-000-r0", 1) == 0.0


def sweep_dir(tmp_path, storage):
    out = tmp_path / "out"
    out.mkdir()
    SweepState("space.yaml", "{}", "sqlite:///x.db", str(storage), "sqlite:///o.db", "1", "run").save(out)
    return out


def test_the_command_pauses_releases_and_resumes_the_sweep_in_its_storage(tmp_path, capsys):
    out = sweep_dir(tmp_path, tmp_path / "storage")
    file = PauseFile.of_storage(str(tmp_path / "storage"))
    assert pause.main([str(out), "--after-epoch", "2"]) == 0
    assert file.read() == Pause(after_epoch=2)
    assert pause.main([str(out), "--release", "ce-000-r0", "ce-000-r1"]) == 0
    assert file.read() == Pause(after_epoch=2, released=frozenset({"ce-000-r0", "ce-000-r1"}))
    assert pause.main([str(out), "--status"]) == 0
    assert "paused: trials hold once they have 2 epochs; released: ce-000-r0, ce-000-r1" in capsys.readouterr().out
    assert pause.main([str(out), "--resume"]) == 0
    assert file.read() is None


def test_the_command_on_a_folder_that_holds_no_sweep_exits_2_naming_it(tmp_path, capsys):
    assert pause.main([str(tmp_path)]) == 2
    assert f"{tmp_path}: no sweep.json" in capsys.readouterr().err


def test_the_command_refuses_a_negative_epoch_count(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_status:
        pause.main([str(sweep_dir(tmp_path, tmp_path)), "--after-epoch", "-1"])
    assert exit_status.value.code == 2 and "--after-epoch must be at least 0" in capsys.readouterr().err


# --- Tune's saved experiment ------------------------------------------------------------------------------------


def saved_experiment(directory, searcher_state: bytes):
    directory.mkdir()
    (directory / "experiment_state-2026-12-04_10-00-00.json").write_text(json.dumps({"trial_data": []}))
    (directory / "searcher-state-2026-12-04_10-00-00.pkl").write_bytes(searcher_state)
    (directory / "ce-000-r0_abc").mkdir()  # a trial's folder: its checkpoints stay where they are
    return directory


def test_a_saved_experiment_that_reads_back_is_kept(tmp_path):
    experiment = saved_experiment(tmp_path / "ray", pickle.dumps({"state": 1}))
    assert set_aside_if_damaged(str(experiment)) == ""
    assert sorted(p.name for p in experiment.iterdir())[0] == "ce-000-r0_abc"
    assert len(list(experiment.iterdir())) == 3


def test_a_saved_experiment_cut_short_is_moved_aside_and_the_trials_folders_stay(tmp_path):
    experiment = saved_experiment(tmp_path / "ray", pickle.dumps({"state": 1})[:5])
    damage = set_aside_if_damaged(str(experiment))
    assert damage.startswith("searcher-state-2026-12-04_10-00-00.pkl: ")
    (aside,) = [p for p in experiment.iterdir() if p.name.startswith("damaged-")]
    assert sorted(p.name for p in aside.iterdir()) == [
        "experiment_state-2026-12-04_10-00-00.json",
        "searcher-state-2026-12-04_10-00-00.pkl",
    ]
    assert (experiment / "ce-000-r0_abc").is_dir()
    assert not list(experiment.glob("experiment_state-*")) and not list(experiment.glob("searcher-state-*"))
