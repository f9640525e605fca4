"""The Ray Tune trainable: one trial = `trainer.train` on one configuration and seed, a checkpoint per epoch.

A thin adapter. The trainer resumes by itself from `last.pt` in its run
directory, so resuming a trial is copying a checkpoint (the whole run
directory: last.pt, best.pt, metrics.json, train.log) back into place.
Workers never talk to MLflow or Optuna: they report to Tune, and the driver
tracks (tracking.py) and prunes (pruning.py), so a cluster needs no tracking
server reachable from its GPU machines.

Which checkpoint: the newest one in the sweep's storage, not the one Tune's
restored experiment names. An interrupted driver (Ctrl-C, a kill) saves its
experiment snapshot after the worker has already stored the next epoch's
checkpoint, or not at all, and a trial it suggested after its last snapshot
comes back under a new Tune trial id; the epochs stored all the same are
never trained again (issue 7).
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow.fs
import ray
import torch
from ray import tune
from ray.tune.trainable import wrap_function

from orchestrator.disk import DiskFull, disk_full
from orchestrator.pause import PauseFile
from orchestrator.trials import TrialMeta, trainer_tree
from trainer import checkpoint, parse_config, train

RUN_DIR = "run_{trial_id}"  # in the worker's working directory; per trial, since workers are reused
REPLAYED = "replayed"  # in every reported record: True where it was trained before this session (resume)
NODE_KEY = "node_id"  # in every reported record: the Ray node that reported it (loopback nodes share an IP)
LOG_FILE = "train.log"  # the trainer's lines, kept with the checkpoint instead of flooding the sweep's console


def run_trial(config: dict) -> None:
    meta = TrialMeta.of(config)
    torch.set_num_threads(max(1, int(meta.cpus)))
    trainer_config = parse_config(trainer_tree(config), source=f"trial {meta.key}")
    run_dir = Path.cwd() / RUN_DIR.format(trial_id=tune.get_context().get_trial_id())
    storage = tune.get_context().get_storage()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fs, experiment = storage.storage_filesystem, storage.experiment_fs_path
        stored = stored_checkpoints(fs, experiment, meta.key, trainer_config.model_dump(mode="json"))
        newest = max(stored, key=lambda s: s.epoch, default=None)
        if newest is not None:
            newest.checkpoint.to_directory(str(run_dir))
        restored = tune.get_checkpoint()
        known = known_epoch(restored.path if restored else None, stored)
        records = unreported(newest, known, trainer_config.optim.epochs)
        pause = PauseFile.in_storage(fs, storage.storage_fs_path)
        _train(trainer_config, run_dir, records, newest.epoch if newest else 0, meta.key, pause)
    except OSError as error:
        if disk_full(error):  # one clear line in the sweep's output, instead of a traceback per trial
            raise DiskFull.of(error, run_dir, storage.experiment_fs_path) from None
        raise
    finally:  # every epoch is already in a checkpoint in the sweep's storage; this copy is scratch
        shutil.rmtree(run_dir, ignore_errors=True)


@dataclass
class Stored:
    """A complete checkpoint of this trial's configuration and seed in the sweep's storage."""

    checkpoint: tune.Checkpoint
    epoch: int  # epochs trained (the schedule's counter in last.pt)
    history: list[dict]  # the epoch records the trainer reported, in last.pt


def stored_checkpoints(fs: pyarrow.fs.FileSystem, experiment: str, key: str, config_dict: dict) -> list[Stored]:
    """Every complete checkpoint of trial `key` in the experiment folder `experiment` on `fs` (any filesystem Tune
    supports, s3:// included): those of its current Tune trial directory and of earlier ones (KEY_TRIALID), whose
    snapshots were lost."""
    found = []
    for trial_dir in _directories(fs, experiment):
        if not trial_dir.base_name.startswith(f"{key}_"):
            continue
        for directory in _directories(fs, trial_dir.path):
            if not directory.base_name.startswith("checkpoint_"):
                continue
            last, best = (_load(fs, f"{directory.path}/{name}") for name in (checkpoint.LAST, checkpoint.BEST))
            # A kill while Tune copied a checkpoint into storage leaves files cut short; a prefix clash of keys
            # could name another configuration's directory: neither is this trial's state.
            if last is None or best is None or last["config"] != config_dict:
                continue
            found.append(
                Stored(tune.Checkpoint(directory.path, filesystem=fs), int(last["schedule"]["epoch"]), last["history"])
            )
    return found


def _directories(fs: pyarrow.fs.FileSystem, path: str) -> list[pyarrow.fs.FileInfo]:
    infos = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    return [info for info in infos if info.type == pyarrow.fs.FileType.Directory]


def _load(fs: pyarrow.fs.FileSystem, path: str) -> dict | None:
    try:
        with fs.open_input_file(path) as file:
            return checkpoint.load(io.BytesIO(file.readall()))
    except Exception:  # missing or truncated: torch raises several kinds
        return None


def known_epoch(restored_path: str | None, stored: list[Stored]) -> int:
    """The last epoch Tune's (restored) experiment holds a result for: that of the checkpoint it restored
    (`restored_path`, None when it restored none), found among the stored ones by trial folder and name."""
    if restored_path is None:
        return 0
    name = PurePosixPath(restored_path).parts[-2:]
    return next((s.epoch for s in stored if PurePosixPath(s.checkpoint.path).parts[-2:] == name), 0)


def unreported(newest: Stored | None, known: int, epochs: int) -> list[dict]:
    """Epoch records to report before training resumes: those stored after the last one Tune holds (the driver
    died before it recorded them); or, for a run already at its last epoch, that epoch's record, so that the
    trial ends with its final result and checkpoint. The driver logs and prunes on each epoch once."""
    if newest is None:
        return []
    records = [record for record in newest.history if record["epoch"] > known]
    return records or (newest.history[-1:] if newest.epoch >= epochs else [])


def _train(trainer_config, run_dir: Path, records: list[dict], trained: int, key: str, pause: PauseFile) -> None:
    """Reports the stored records Tune lacks, then trains on from the `trained` epochs in `run_dir`, reporting
    each epoch with its checkpoint. At every epoch boundary the trial holds while a pause holds it (pause.py):
    after `tune.report` returned, so the driver has recorded the epoch and its checkpoint is in the storage."""
    node = ray.get_runtime_context().get_node_id()
    epochs = trainer_config.optim.epochs

    def report(record: dict, directory: Path | None, replayed: bool = False) -> bool:
        # Every epoch: the record for the pruner and the tracker, the run directory as the checkpoint.
        checkpoint = tune.Checkpoint.from_directory(str(directory)) if directory else None
        tune.report({**record, REPLAYED: replayed, NODE_KEY: node}, checkpoint=checkpoint)
        if not replayed and record["epoch"] < epochs:
            pause.hold(key, record["epoch"])
        return False  # stopping is Tune's job (the scheduler answers STOP)

    for index, record in enumerate(records):
        report(record, run_dir if index == len(records) - 1 else None, replayed=True)
    if trained >= epochs:
        return  # trained to the end before the interruption
    pause.hold(key, trained)

    with (run_dir / LOG_FILE).open("a") as log_file:

        def log(line: str) -> None:
            log_file.write(line + "\n")
            log_file.flush()

        train(trainer_config, run_dir, on_epoch=report, progress=False, log=log)


class SweepTrial(wrap_function(run_trial)):
    """`run_trial` as Tune runs it. A killed driver's last snapshot can name a checkpoint that Tune had already
    replaced (num_to_keep=1) and deleted; Tune would fail the trial restoring from it, and again deleting it.
    An empty directory in its place lets both pass, and run_trial resumes from the newest complete checkpoint."""

    def restore(self, checkpoint_path) -> None:
        restored = checkpoint_path.checkpoint  # Tune passes the trial's latest _TrainingResult
        restored.filesystem.create_dir(restored.path)  # nothing happens where it exists
        super().restore(checkpoint_path)


def trial_name(trial) -> str:
    return TrialMeta.of(trial.config).key


def trial_dirname(trial) -> str:
    return f"{TrialMeta.of(trial.config).key}_{trial.trial_id}"
