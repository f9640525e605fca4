"""Bad input to the trainer's commands is refused as a user expects: one clear `error:` paragraph naming the file,
field or line, exit status 2, no traceback, and no run directory created (issue 7)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(module, *args):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def assert_refused(result, *phrases):
    """Exit 2 with an `error:` message holding every phrase, and no traceback."""
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert str(phrase) in result.stderr


def test_data_paths_without_dataset_files_are_refused(tmp_path):
    out = tmp_path / "run"
    result = run_cli("trainer", "configs/ner.yaml", "--out", out, "--set", "data.train_path=deu.train")
    assert_refused(result, "configs/ner.yaml", "train_path is only read with dataset: files")
    assert not out.exists()


def test_a_key_given_twice_in_the_config_is_refused_with_its_line(tmp_path):
    config, out = tmp_path / "config.yaml", tmp_path / "run"
    config.write_text("task: ner\nseed: 1\nseed: 2\n")
    assert_refused(run_cli("trainer", config, "--out", out), f"{config}:3:", "duplicate key 'seed'")
    assert not out.exists()


def test_an_empty_config_file_is_refused(tmp_path):
    config, out = tmp_path / "config.yaml", tmp_path / "run"
    config.write_text("")
    assert_refused(run_cli("trainer", config, "--out", out), f"{config}: no settings")
    assert not out.exists()
