"""The trainable's resume logic on real checkpoints in a folder laid out as Tune's storage lays it out: which stored
checkpoints belong to a trial, which epoch Tune already holds, and which records must be reported again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.fs
import pytest

from orchestrator.trainable import known_epoch, stored_checkpoints, unreported
from trainer import checkpoint, parse_config, train

KEY = "ce-000-r0"
EPOCHS = 3


def tiny_config(conll2003_en: dict, lr: float = 0.01):
    data = {"dataset": "files", **{f"{s}_path": str(conll2003_en[s]) for s in ("train", "dev", "test")}}
    data |= {"max_train_sentences": 30, "max_dev_sentences": 20}
    model = {"embedding_dim": 8, "encoder_hidden": 8, "decoder_hidden": 8}
    return parse_config({"procedure": {"name": "ce"}, "optim": {"epochs": EPOCHS, "lr": lr}, "data": data,
                         "model": model, "seed": 1})  # fmt: skip


@pytest.fixture(scope="module")
def runs(conll2003_en, tmp_path_factory):
    """A run's directory after each of its epochs (what Tune copies into checkpoint_00000N), and a run of
    another configuration."""
    root = tmp_path_factory.mktemp("runs")
    config = tiny_config(conll2003_en)
    snapshots = {}

    def snapshot(record: dict, run_dir: Path) -> bool:
        snapshots[record["epoch"]] = shutil.copytree(run_dir, root / f"after_{record['epoch']}")
        return False

    train(config, root / "run", on_epoch=snapshot, progress=False, log=lambda _: None)
    other = tiny_config(conll2003_en, lr=0.02)
    train(other, root / "other", progress=False, log=lambda _: None)
    return {"config": config.model_dump(mode="json"), "after": snapshots, "other": root / "other"}


def stored(experiment: Path, trial_dir: str, index: int, source: Path) -> Path:
    target = experiment / trial_dir / f"checkpoint_{index:06d}"
    shutil.copytree(source, target)
    return target


def found(experiment: Path, key: str, config: dict):
    return stored_checkpoints(pyarrow.fs.LocalFileSystem(), str(experiment), key, config)


def test_the_trials_checkpoints_are_found_in_its_current_and_earlier_tune_folders(runs, tmp_path):
    stored(tmp_path, f"{KEY}_aaaa", 0, runs["after"][1])  # a Tune trial whose snapshot a killed driver lost
    stored(tmp_path, f"{KEY}_bbbb", 1, runs["after"][2])
    result = found(tmp_path, KEY, runs["config"])
    assert sorted((s.epoch, Path(s.checkpoint.path).parent.name) for s in result) == [
        (1, f"{KEY}_aaaa"),
        (2, f"{KEY}_bbbb"),
    ]
    assert [r["epoch"] for r in max(result, key=lambda s: s.epoch).history] == [1, 2]


def test_a_checkpoint_cut_short_while_it_was_stored_is_skipped(runs, tmp_path):
    stored(tmp_path, f"{KEY}_aaaa", 0, runs["after"][1])
    cut = stored(tmp_path, f"{KEY}_aaaa", 1, runs["after"][2]) / checkpoint.LAST
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    assert [s.epoch for s in found(tmp_path, KEY, runs["config"])] == [1]


def test_a_checkpoint_without_its_best_model_is_skipped(runs, tmp_path):
    (stored(tmp_path, f"{KEY}_aaaa", 1, runs["after"][2]) / checkpoint.BEST).unlink()
    assert found(tmp_path, KEY, runs["config"]) == []


def test_a_folder_of_the_trials_key_holding_another_configuration_is_skipped(runs, tmp_path):
    stored(tmp_path, f"{KEY}_aaaa", 2, runs["other"])
    assert found(tmp_path, KEY, runs["config"]) == []


def test_another_trials_folder_whose_key_starts_with_this_key_is_not_searched(runs, tmp_path):
    stored(tmp_path, f"{KEY}0_aaaa", 0, runs["after"][1])  # ce-000-r00: not ce-000-r0
    assert found(tmp_path, KEY, runs["config"]) == []


def test_an_experiment_folder_that_does_not_exist_yet_holds_no_checkpoint(runs, tmp_path):
    assert found(tmp_path / "not_yet", KEY, runs["config"]) == []


def test_tune_knows_the_epoch_of_the_checkpoint_it_restored(runs, tmp_path):
    stored(tmp_path, f"{KEY}_aaaa", 0, runs["after"][1])
    newer = stored(tmp_path, f"{KEY}_aaaa", 1, runs["after"][2])
    assert known_epoch(str(newer), found(tmp_path, KEY, runs["config"])) == 2


def test_tune_knows_no_epoch_when_it_restored_nothing_or_a_checkpoint_since_deleted(runs, tmp_path):
    stored(tmp_path, f"{KEY}_aaaa", 1, runs["after"][2])
    every = found(tmp_path, KEY, runs["config"])
    assert known_epoch(None, every) == 0
    assert known_epoch(str(tmp_path / f"{KEY}_aaaa" / "checkpoint_000000"), every) == 0


def test_records_stored_after_the_epoch_tune_knows_are_reported_again(runs, tmp_path):
    stored(tmp_path, f"{KEY}_aaaa", 1, runs["after"][2])
    (newest,) = found(tmp_path, KEY, runs["config"])
    assert [r["epoch"] for r in unreported(newest, known=0, epochs=EPOCHS)] == [1, 2]
    assert [r["epoch"] for r in unreported(newest, known=1, epochs=EPOCHS)] == [2]
    assert unreported(newest, known=2, epochs=EPOCHS) == []


def test_a_trial_stored_at_its_last_epoch_reports_that_epoch_again_to_end_with_its_result(runs, tmp_path):
    stored(tmp_path, f"{KEY}_aaaa", 2, runs["after"][3])
    (newest,) = found(tmp_path, KEY, runs["config"])
    assert [r["epoch"] for r in unreported(newest, known=3, epochs=EPOCHS)] == [3]


def test_nothing_is_reported_again_for_a_trial_with_nothing_stored():
    assert unreported(None, known=0, epochs=EPOCHS) == []
