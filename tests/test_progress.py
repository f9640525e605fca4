"""The progress bar within an epoch: on a terminal only, never in a log file or a pipe (issue 7)."""

import os
import subprocess
import sys

import pytest

from trainer.progress import progress_bar


@pytest.fixture
def terminal():
    """The writing end of a real pseudo-terminal."""
    controller, follower = os.openpty()
    stream = os.fdopen(follower, "w")
    yield stream
    stream.close()
    os.close(controller)


def test_the_bar_shows_on_a_terminal(terminal):
    assert not progress_bar(range(3), "epoch 1/1", stream=terminal).disable


def test_no_progress_hides_the_bar_on_a_terminal_too(terminal):
    assert progress_bar(range(3), "epoch 1/1", enabled=False, stream=terminal).disable


def test_the_bar_is_hidden_in_a_log_file(tmp_path):
    with (tmp_path / "train.log").open("w") as log:
        assert progress_bar(range(3), "epoch 1/1", stream=log).disable


def test_a_run_piped_to_a_log_writes_no_carriage_returns(conll2003_en, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "configs/ner.yaml", "--out", str(tmp_path), "--set", "optim.epochs=1",
         "--set", "data.max_train_sentences=64", "--set", "data.max_dev_sentences=20"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr + result.stdout and "epoch   1" in result.stdout
