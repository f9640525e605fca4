"""The Ray Tune trainable: one trial = `trainer.train` on one configuration and seed, a checkpoint per epoch.

A thin adapter. The trainer resumes by itself from `last.pt` in its run
directory, so resuming a trial is copying Tune's latest checkpoint (the whole
run directory: last.pt, best.pt, metrics.json, train.log) back into place.
Workers never talk to MLflow or Optuna: they report to Tune, and the driver
tracks (tracking.py) and prunes (pruning.py), so a cluster needs no tracking
server reachable from its GPU machines.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from ray import tune

from trainer import parse_config, train

RUN_DIR = "run_{trial_id}"  # in the worker's working directory; per trial, since workers are reused
LOG_FILE = "train.log"  # the trainer's lines, kept with the checkpoint instead of flooding the sweep's console


def run_trial(config: dict) -> None:
    meta = config["sweep"]
    torch.set_num_threads(max(1, int(meta["cpus"])))
    trainer_config = parse_config(config["trainer"], source=f"trial {meta['key']}")
    run_dir = Path.cwd() / RUN_DIR.format(trial_id=tune.get_context().get_trial_id())
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        checkpoint.to_directory(str(run_dir))

    try:
        _train(trainer_config, run_dir)
    finally:  # every epoch is already in Tune's checkpoint (the sweep's storage); this copy is scratch
        shutil.rmtree(run_dir, ignore_errors=True)


def _train(trainer_config, run_dir: Path) -> None:
    with (run_dir / LOG_FILE).open("a") as log_file:

        def log(line: str) -> None:
            log_file.write(line + "\n")
            log_file.flush()

        def report(record: dict, directory: Path) -> bool:
            # Every epoch: the record for the pruner and the tracker, the run directory as the checkpoint.
            tune.report(dict(record), checkpoint=tune.Checkpoint.from_directory(str(directory)))
            return False  # stopping is Tune's job (the scheduler answers STOP)

        train(trainer_config, run_dir, on_epoch=report, progress=False, log=log)


def trial_name(trial) -> str:
    return trial.config["sweep"]["key"]


def trial_dirname(trial) -> str:
    return f"{trial.config['sweep']['key']}_{trial.trial_id}"
