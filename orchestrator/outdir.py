"""A sweep's output directory (--out): the name of every file in it, its record (sweep.json) and its owner.

Every module that reads or writes a file of --out takes the name from here, and reads sweep.json through
`SweepState.load`, so that the folder's layout is written down once:

    OUT/sweep.json          SweepState: which space, tracking store, trial storage and Optuna storage
    OUT/driver.lock         held by the running driver (DriverLock); says which process and host
    OUT/summary.{md,csv,json}, OUT/test_scores.json, OUT/report.{md,json}, OUT/report/
    OUT/mlflow.db, OUT/mlartifacts/, OUT/optuna.db   (unless the sweep tracks or studies elsewhere)
    STORAGE/ray-RUN/        the Tune experiment (RUN: the start of the sweep's MLflow run id; `ray` for sweeps
                            before issue 16): one folder per trial with its last checkpoint
    STORAGE/pause.json      a pause (orchestrator/pause.py); STORAGE is --storage, OUT by default
    STORAGE/held/KEY.json   a note from each trial the pause holds
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
import urllib.parse
from dataclasses import asdict, dataclass, fields
from pathlib import Path

STATE_FILE = "sweep.json"
LOCK_FILE = "driver.lock"
SUMMARY_STEM = "summary"
TEST_RECORD = "test_scores.json"  # every test evaluation ever made (selection.score_on_test)
REPORT_STEM = "report"  # report.md, report.json
REPORT_DIR = "report"  # figures, and the chosen checkpoints' per-sentence test statistics
MLFLOW_DB = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
OPTUNA_DB = "optuna.db"
TUNE_DIR = "ray"  # the Tune experiment's name, and its folder in the storage path, of sweeps before issue 16
PAUSE_FILE = "pause.json"  # in the storage path, where every trial reads it
HELD_DIR = "held"  # in the storage path: a note per trial that a pause holds


def in_storage(storage: str, *names: str) -> str:
    """The location `names` below `storage`, a directory or a URI such as
    s3://bucket/prefix?endpoint_override=http://HOST:PORT: a URI's query stays at its end, where pyarrow and Ray
    read it (appended to the string, the names would become part of the endpoint)."""
    if "://" not in storage:
        return "/".join([storage.rstrip("/"), *names])
    parts = urllib.parse.urlsplit(storage)
    return urllib.parse.urlunsplit(parts._replace(path="/".join([parts.path.rstrip("/"), *names])))


def storage_location(storage: str, fs_path: str) -> str:
    """A path on the storage's filesystem (what Ray gives as a checkpoint's path: 'bucket/prefix/...' on S3) as a
    location that opens on its own (`ray.tune.Checkpoint(location)`, pyarrow's `FileSystem.from_uri`): on a URI
    storage, the URI with the storage's scheme and query (the endpoint, never credentials); else the path."""
    if "://" not in storage:
        return fs_path
    parts = urllib.parse.urlsplit(storage)
    bucket, _, key = fs_path.partition("/")
    return urllib.parse.urlunsplit(parts._replace(netloc=bucket, path=f"/{key}" if key else ""))


class StateError(ValueError):
    """A sweep.json that cannot be used; the message names the file and what to do."""


@dataclass
class SweepState:
    """What a resumed sweep must agree with, and where its records are. The MLflow ids are None until the sweep's
    experiment and parent run exist (a new sweep, before anything is written)."""

    space_file: str
    fingerprint: str  # the validated space as JSON (SearchSpace.fingerprint)
    tracking_uri: str
    storage: str  # Tune's storage path: a directory or a URI (s3://...)
    optuna_storage: str
    experiment_id: str | None = None
    parent_run_id: str | None = None
    # Tune's experiment name, its folder in the storage. Unique per sweep: Tune stages a driver's experiment
    # state in the Ray session's artifacts/<start second>/<name>, which two sweeps started in the same second
    # on one node would share, each then saving the other's trials as its own.
    tune_name: str = TUNE_DIR

    @property
    def tune_experiment(self) -> str:
        """The Tune experiment's folder in the storage (a path or a URI)."""
        return in_storage(self.storage, self.tune_name)

    @classmethod
    def load(cls, out_dir: Path) -> SweepState | None:
        """The sweep recorded in `out_dir`, None if there is none. A damaged record is a StateError: only it says
        which search space, MLflow runs and trial storage the folder's trials belong to."""
        path = Path(out_dir) / STATE_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:  # unreadable, not UTF-8, not JSON
            damage = f"not readable as JSON: {error}"
        else:
            damage = _damage(data)
        if damage:
            raise StateError(
                f"{path}: damaged ({damage}); it records which search space, MLflow runs and trial storage the sweep "
                f"in {out_dir} belongs to, so the sweep cannot continue without it. Restore the file, or start over "
                "with a new --out."
            )
        # Written before --optuna-storage existed: the studies were in the folder's own SQLite file.
        data.setdefault("optuna_storage", f"sqlite:///{Path(out_dir).resolve() / OPTUNA_DB}")
        data.setdefault("tune_name", TUNE_DIR)
        return cls(**{field.name: data.get(field.name) for field in fields(cls)})

    @classmethod
    def read(cls, out_dir: Path) -> SweepState:
        """The record of a sweep that must exist (tools that read a sweep's results)."""
        state = cls.load(out_dir)
        if state is None:
            raise StateError(f"{out_dir}: no {STATE_FILE}; not the output directory of a sweep")
        return state

    def save(self, out_dir: Path) -> None:
        partial = Path(out_dir) / (STATE_FILE + ".partial")
        partial.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        partial.replace(Path(out_dir) / STATE_FILE)


STATE_KEYS = ("space_file", "fingerprint", "tracking_uri", "experiment_id", "parent_run_id", "storage")


def _damage(data) -> str:
    """What is wrong with a parsed sweep.json, '' if nothing."""
    if not isinstance(data, dict):
        return "not a JSON object"
    missing = [key for key in STATE_KEYS if not isinstance(data.get(key), str)]
    if missing:
        return f"no {', '.join(missing)}"
    try:
        json.loads(data["fingerprint"])  # compared setting by setting with the space's
    except ValueError:
        return "its fingerprint is not JSON"
    return ""


class OutDirBusy(RuntimeError):
    """Another driver holds the output directory; the message names its process and host."""


class DriverLock:
    """The running driver's claim on its output directory: an exclusive flock(2) on OUT/driver.lock, held for the
    driver's life. The kernel drops it when the process ends, however it ends (SIGKILL, a crash), so a lock left
    by a killed driver never blocks the rerun and nothing is timed out or guessed from a pid. The file says who
    holds it, for the message a second driver prints. (On NFS, flock is emulated with POSIX locks, which Linux
    clients support.)"""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Raises OutDirBusy if another process holds the lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by the processes Ray starts
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutDirBusy(f"{self.path.parent} is in use by {self.holder()}") from None
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "command": " ".join(sys.argv)}  # fmt: skip
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(owner) + "\n").encode())
        self._fd = fd

    def holder(self) -> str:
        """Who holds the lock, as the file says."""
        try:
            owner = json.loads(self.path.read_text())
            return (f"the sweep of process {owner['pid']} on host {owner['host']} (running since {owner['since']}: "
                    f"{owner['command']})")  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError):  # between its lock and its first write
            return "another sweep's driver, which is starting"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> DriverLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
