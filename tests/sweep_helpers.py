"""Shared by tests/test_sweep_*.py: a real local Ray, small real CoNLL files, the shipped smoke space, MLflow reads,
and the sweep command as a subprocess (orchestrator/loopback.py) watched through what its driver has recorded.

Tests that interrupt, kill or watch a sweep never race its trainer: they start it paused (--pause-after-epoch),
wait for the trials the pause holds (a trial holds only once its driver has recorded its epoch), act while they
cannot move, and release trials or lift the pause (python -m orchestrator.pause): they reach each point by
construction, however long an epoch takes. DSS_TEST_TRAIN_SENTENCES sets those tests' training slice (40 by
default), to try them with slow epochs too."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs
import pytest
from mlflow.tracking import MlflowClient

from orchestrator import pause, sweep, tracking
from orchestrator.loopback import REPO, conll_slices, data_overrides, launch_sweep, stop_sweep
from orchestrator.outdir import SUMMARY_STEM, SweepState, in_storage, storage_location
from trainer import checkpoint

SMOKE = REPO / "search_spaces" / "smoke.yaml"
INTERRUPTED_TRAIN_SENTENCES = int(os.environ.get("DSS_TEST_TRAIN_SENTENCES", "40"))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # as CI sets it; the sweep's subprocesses inherit it
launch = launch_sweep  # `python -m orchestrator.sweep ARGV` in a session of its own, output to a log
end = stop_sweep  # ... and its end, with whatever it left in its session
__all__ = ["data_overrides", "end", "launch"]


def start_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    return ray


def write_slices(conll2003_en: dict, directory: Path, counts=(300, 100, 100), with_test: bool = True) -> dict:
    """Small real train/dev/test files; the test file is left out when `with_test` is False."""
    train, dev, test = counts
    return conll_slices(directory, train, dev, test if with_test else 0, source=conll2003_en)


@dataclass
class Session:
    code: int
    stdout: str
    stderr: str

    def trial_lines(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.startswith("trial ")]

    def finished_keys(self) -> list[str]:
        return [line.split()[1] for line in self.trial_lines()]


def run_main(argv: list[str]) -> Session:
    """`python -m orchestrator.sweep ARGV` in this process (it joins the test module's Ray)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = sweep.main([str(a) for a in argv])
    return Session(code, out.getvalue(), err.getvalue())


def sweep_state(out_dir: Path) -> SweepState:
    return SweepState.read(out_dir)


def summary(out_dir: Path) -> dict:
    return json.loads((out_dir / f"{SUMMARY_STEM}.json").read_text())


def trial_runs(out_dir: Path) -> list:
    """The MLflow runs of the sweep's trials (its restarts, nested in their configurations' runs)."""
    state = sweep_state(out_dir)
    return tracking.sweep_runs(MlflowClient(state.tracking_uri), state.experiment_id, state.parent_run_id)


def configuration_runs(out_dir: Path) -> list:
    state = sweep_state(out_dir)
    client = MlflowClient(state.tracking_uri)
    return tracking.sweep_runs(client, state.experiment_id, state.parent_run_id, tracking.CONFIGURATION)


def client(out_dir: Path) -> MlflowClient:
    return MlflowClient(sweep_state(out_dir).tracking_uri)


def dev_history(out_dir: Path, run) -> list:
    return client(out_dir).get_metric_history(run.info.run_id, "dev_score")


def epochs_in_flight(out_dir: Path) -> dict[str, int]:
    """Trials the driver has recorded as running in MLflow, with the number of epochs it has logged for each."""
    if SweepState.load(out_dir) is None:
        return {}
    runs = [run for run in trial_runs(out_dir) if run.info.status == "RUNNING" and "dev_score" in run.data.metrics]
    return {run.data.tags["trial_key"]: len(dev_history(out_dir, run)) for run in runs}


def held(out_dir: Path) -> dict[str, int]:
    """Trials the sweep's pause holds now, with the epochs each has trained (and its driver recorded)."""
    if SweepState.load(out_dir) is None:
        return {}
    return pause.pause_file(out_dir).held()


def release(out_dir: Path, *keys: str) -> None:
    """python -m orchestrator.pause OUT --release KEYS: these trials go on, the others keep holding."""
    with contextlib.redirect_stdout(io.StringIO()):
        assert pause.main([str(out_dir), "--release", *keys]) == 0


def lift_pause(out_dir: Path) -> None:
    """python -m orchestrator.pause OUT --resume: every trial goes on."""
    with contextlib.redirect_stdout(io.StringIO()):
        assert pause.main([str(out_dir), "--resume"]) == 0


def finished_keys(text: str) -> list[str]:
    """The trials a sweep's output says finished (done, pruned or failed), in order."""
    return [line.split()[1] for line in text.splitlines() if line.startswith("trial ")]


def wait_for(what: str, check: Callable[[], object], process: subprocess.Popen, log: Path, seconds: float):
    """Polls `check` until it returns something true, and returns that. `seconds` is a bound for a machine
    under load (where a trial of seconds took minutes), not an estimate; the sweep exiting first fails."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if process.poll() is not None:
            pytest.fail(f"the sweep exited ({process.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"no {what} within {seconds:.0f} s:\n{log.read_text()[-3000:]}")


def read_stored(location: str) -> bytes:
    """A file of a sweep's storage by its location, a path or an s3:// URI (summary.json's checkpoint_dir and
    what newest_checkpoints returns), read through pyarrow as the sweep reads it: over HTTP for s3://."""
    filesystem, path = pyarrow.fs.FileSystem.from_uri(location)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def final_train_log(outcome: dict) -> list[str]:
    """The train.log kept in a trial's final checkpoint (summary.json's trial entry); it accumulates across resumes."""
    return read_stored(in_storage(outcome["checkpoint_dir"], "train.log")).decode().splitlines()


def tune_experiment(out_dir: Path) -> Path:
    """The folder of the sweep's Tune experiment (in its storage, a local directory in the tests that use this)."""
    return Path(sweep_state(out_dir).tune_experiment)


def newest_checkpoints(out_dir: Path) -> dict[str, tuple[int, str]]:
    """Per trial key, the newest complete checkpoint of it in the sweep's storage (a directory or an s3:// URI):
    (epochs it holds, the location of its last.pt, for read_stored). Tune's trial directories are KEY_TRIALID;
    one key may have several after a kill."""
    state = sweep_state(out_dir)
    filesystem, experiment = pyarrow.fs.FileSystem.from_uri(state.tune_experiment)

    def folders(path: str, prefix: str) -> list[pyarrow.fs.FileInfo]:
        infos = filesystem.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
        return [i for i in infos if i.type == pyarrow.fs.FileType.Directory and i.base_name.startswith(prefix)]

    newest: dict[str, tuple[int, str]] = {}
    for trial in folders(experiment, ""):
        for directory in folders(trial.path, "checkpoint_"):
            last = storage_location(state.storage, f"{directory.path}/{checkpoint.LAST}")
            try:
                epoch = int(checkpoint.load(io.BytesIO(read_stored(last)))["schedule"]["epoch"])
            except (FileNotFoundError, checkpoint.CheckpointError):
                continue  # cut short by the kill while Tune copied it into storage: no trial resumes from it either
            key = trial.base_name.rsplit("_", 1)[0]
            if epoch > newest.get(key, (-1, ""))[0]:
                newest[key] = (epoch, last)
    return newest


def trained_epochs(lines: list[str]) -> list[int]:
    """The epochs a train.log says were trained, in order."""
    return [int(line.split()[1]) for line in lines if line.startswith("epoch")]


def resumed_after(lines: list[str]) -> list[int]:
    """The epoch each resume of the run started after ("Resuming DIR after epoch N (step S)")."""
    return [int(m.group(1)) for line in lines if (m := re.match(r"Resuming .* after epoch (\d+) ", line))]


def assert_one_finished_run_per_trial_with_each_epoch_once(out_dir: Path) -> None:
    """Every trial of the summary has exactly one MLflow run, finished, with each epoch's dev score logged once,
    in order: what no interruption, kill or full disk may change."""
    runs = trial_runs(out_dir)
    assert sorted(run.data.tags["trial_key"] for run in runs) == sorted(t["key"] for t in summary(out_dir)["trials"])
    for run in runs:
        steps = [m.step for m in dev_history(out_dir, run)]
        assert steps == list(range(1, int(run.data.tags["epochs_run"]) + 1)), run.data.tags["trial_key"]
        assert run.info.status == "FINISHED", run.data.tags["trial_key"]
