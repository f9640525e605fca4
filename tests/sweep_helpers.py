"""Shared by tests/test_sweep_*.py: a real local Ray, small real CoNLL files, the shipped smoke space, MLflow reads,
and the sweep command as a subprocess watched through what its driver has recorded."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator import sweep, tracking
from trainer import checkpoint

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "search_spaces" / "smoke.yaml"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # as CI sets it; the sweep's subprocesses inherit it


def start_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    return ray


def sentences(path: Path, count: int) -> str:
    """The first `count` sentences of a CoNLL file, blank-line separated (document markers dropped)."""
    blocks = [b for b in path.read_text().split("\n\n") if b.strip() and not b.startswith("-DOCSTART-")]
    return "\n\n".join(blocks[:count]) + "\n"


def write_slices(conll2003_en: dict, directory: Path, counts=(300, 100, 100), with_test: bool = True) -> dict:
    """Small real train/dev/test files; the test file is left out when `with_test` is False."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {split: directory / f"{split}.txt" for split in ("train", "dev", "test")}
    for split, count in zip(("train", "dev", "test"), counts, strict=True):
        if split != "test" or with_test:
            paths[split].write_text(sentences(conll2003_en[split], count))
    return paths


def data_overrides(paths: dict) -> list[str]:
    """--set options that point a space's base config at the files from write_slices."""
    values = {
        "base.data.dataset": "files",
        "base.data.train_path": paths["train"],
        "base.data.dev_path": paths["dev"],
        "base.data.test_path": paths["test"],
    }
    return [option for key, value in values.items() for option in ("--set", f"{key}={value}")]


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


def sweep_state(out_dir: Path) -> dict:
    return json.loads((out_dir / sweep.STATE_FILE).read_text())


def summary(out_dir: Path) -> dict:
    return json.loads((out_dir / "summary.json").read_text())


def trial_runs(out_dir: Path) -> list:
    """The MLflow runs of the sweep's trials (its restarts, nested in their configurations' runs)."""
    state = sweep_state(out_dir)
    return tracking.sweep_runs(MlflowClient(state["tracking_uri"]), state["experiment_id"], state["parent_run_id"])


def configuration_runs(out_dir: Path) -> list:
    state = sweep_state(out_dir)
    client = MlflowClient(state["tracking_uri"])
    return tracking.sweep_runs(client, state["experiment_id"], state["parent_run_id"], tracking.CONFIGURATION)


def client(out_dir: Path) -> MlflowClient:
    return MlflowClient(sweep_state(out_dir)["tracking_uri"])


def dev_history(out_dir: Path, run) -> list:
    return client(out_dir).get_metric_history(run.info.run_id, "dev_score")


def launch(argv: list, log: Path) -> subprocess.Popen:
    """`python -m orchestrator.sweep ARGV` in a session of its own (see `end`), stdout and stderr to `log`."""
    command = [sys.executable, "-m", "orchestrator.sweep", *map(str, argv)]
    return subprocess.Popen(command, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def end(process: subprocess.Popen) -> None:
    """Kills the sweep if it still runs, then whatever it leaves in its session: a driver that did not exit
    cleanly (killed, or a test that gave up on it) leaves Ray's processes behind."""
    if process.poll() is None:
        process.kill()
        process.wait()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp session
            if int(fields[3]) == process.pid:
                os.kill(int(stat.parent.name), signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile


def finished_keys(text: str) -> list[str]:
    """The trials a sweep's output says finished (done, pruned or failed), in order."""
    return [line.split()[1] for line in text.splitlines() if line.startswith("trial ")]


def epochs_in_flight(out_dir: Path) -> dict[str, int]:
    """Trials the driver has recorded as running in MLflow, with the number of epochs it has logged for each."""
    if not (out_dir / sweep.STATE_FILE).exists():
        return {}
    runs = [run for run in trial_runs(out_dir) if run.info.status == "RUNNING" and "dev_score" in run.data.metrics]
    return {run.data.tags["trial_key"]: len(dev_history(out_dir, run)) for run in runs}


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


def final_train_log(outcome: dict) -> list[str]:
    """The train.log kept in a trial's final checkpoint (summary.json's trial entry); it accumulates across resumes."""
    return (Path(outcome["checkpoint_dir"]) / "train.log").read_text().splitlines()


def newest_checkpoints(out_dir: Path) -> dict[str, tuple[int, Path]]:
    """Per trial key, the newest checkpoint of it in the sweep's storage: (epochs it holds, its last.pt).
    Tune's trial directories are KEY_TRIALID; one key may have several after a kill."""
    newest: dict[str, tuple[int, Path]] = {}
    for last in (out_dir / sweep.TUNE_DIR).glob("*_*/checkpoint_*/last.pt"):
        key = last.parent.parent.name.rsplit("_", 1)[0]
        epoch = int(checkpoint.load(last)["schedule"]["epoch"])
        if epoch > newest.get(key, (-1, None))[0]:
            newest[key] = (epoch, last)
    return newest


def trained_epochs(lines: list[str]) -> list[int]:
    """The epochs a train.log says were trained, in order."""
    return [int(line.split()[1]) for line in lines if line.startswith("epoch")]


def resumed_after(lines: list[str]) -> list[int]:
    """The epoch each resume of the run started after ("Resuming DIR after epoch N (step S)")."""
    return [int(m.group(1)) for line in lines if (m := re.match(r"Resuming .* after epoch (\d+) ", line))]
