"""Bad input to the trainer's commands is refused as a user expects: one clear `error:` paragraph naming the file,
field or line, exit status 2, no traceback, and no run directory created (issue 7)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer import load_config, train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["optim.epochs=1", "data.max_train_sentences=50", "data.max_dev_sentences=20"]


@pytest.fixture(scope="module")
def finished_run(conll2003_en, tmp_path_factory):
    """A one-epoch run of configs/ner.yaml with TINY on a slice of CoNLL-2003 English: best.pt, last.pt."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(load_config(ROOT / "configs/ner.yaml", TINY), out, progress=False, log=lambda _: None)
    return out


def tiny_cli(out, *overrides):
    """`python -m trainer configs/ner.yaml --out OUT` with TINY and then `overrides` as --set options."""
    sets = [arg for override in [*TINY, *overrides] for arg in ("--set", override)]
    return run_cli("trainer", "configs/ner.yaml", "--out", out, "--no-progress", *sets)


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


def test_a_set_value_that_is_not_yaml_is_refused_naming_the_override(tmp_path):
    out = tmp_path / "run"
    result = run_cli("trainer", "configs/ner.yaml", "--out", out, "--set", "optim.lr=[1")
    assert_refused(result, "--set 'optim.lr=[1': not valid YAML")
    assert not out.exists()


def test_a_task_of_the_wrong_shape_is_refused_with_the_known_tasks(tmp_path):
    out = tmp_path / "run"
    result = run_cli("trainer", "configs/ner.yaml", "--out", out, "--set", "task=[1]")
    assert_refused(result, "task: must be one of ner, mt, not [1]")
    assert not out.exists()


def test_a_config_path_that_is_a_directory_is_refused(tmp_path):
    out = tmp_path / "run"
    assert_refused(run_cli("trainer", tmp_path, "--out", out), f"{tmp_path}: a directory, not a file")
    assert not out.exists()


def test_a_config_file_that_is_not_utf8_is_refused_with_its_line(tmp_path):
    config, out = tmp_path / "config.yaml", tmp_path / "run"
    config.write_bytes("task: ner\n# Erzählung\n".encode("iso-8859-1"))
    assert_refused(run_cli("trainer", config, "--out", out), f"{config}:2: not valid utf-8 text")
    assert not out.exists()


def test_a_data_path_that_is_a_directory_is_refused_before_the_run_directory_exists(tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "trainer", "configs/ner.yaml", "--out", out, "--set", "data.dataset=files",
        "--set", f"data.train_path={tmp_path}", "--set", f"data.dev_path={tmp_path}",
    )  # fmt: skip
    assert_refused(result, f"{tmp_path}: a directory, not a file")
    assert not out.exists()


def test_an_out_path_that_is_a_file_is_refused(tmp_path):
    out = tmp_path / "run"
    out.write_text("notes\n")
    assert_refused(run_cli("trainer", "configs/ner.yaml", "--out", out), f"--out {out}: a file, not a run directory")
    assert out.read_text() == "notes\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_device_cuda_without_one_is_refused(tmp_path):
    out = tmp_path / "run"
    result = run_cli("trainer", "configs/ner.yaml", "--out", out, "--set", "device=cuda")
    assert_refused(result, "device 'cuda' requested but torch sees no CUDA device")
    assert not out.exists()


def test_a_rerun_with_another_config_says_what_differs_and_what_to_do(finished_run, tmp_path):
    out = shutil.copytree(finished_run, tmp_path / "run")
    before = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    result = tiny_cli(out, "optim.lr=0.01", "seed=3")
    assert_refused(
        result,
        f"{out} holds a run of another config (optim.lr was 0.001, is 0.01 now; seed was 1, is 3 now)",
        "use a new --out directory, or delete",
    )
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} == before


def test_a_truncated_last_checkpoint_is_refused_and_left_as_it_is(finished_run, tmp_path):
    out = shutil.copytree(finished_run, tmp_path / "run")
    last = out / "last.pt"
    last.write_bytes(last.read_bytes()[:100_000])
    result = tiny_cli(out)
    assert_refused(result, f"{last}: not a checkpoint written by python -m trainer", f"{out} cannot be resumed")
    assert last.stat().st_size == 100_000


def pickle_with_code(path, marker):
    """A torch file whose unpickling would create the folder `marker`: code a loader must never run."""

    class Payload:
        def __reduce__(self):
            return os.mkdir, (str(marker),)

    torch.save({"config": {}, "model": Payload()}, path)


@pytest.mark.parametrize("kind", ["truncated", "text", "pickle_with_code"])
def test_evaluate_refuses_a_bad_checkpoint_naming_it_without_suggesting_unsafe_loading(finished_run, tmp_path, kind):
    path, marker = tmp_path / "best.pt", tmp_path / "code-ran"
    if kind == "truncated":
        path.write_bytes((finished_run / "best.pt").read_bytes()[:100_000])
    elif kind == "text":
        path.write_text("epoch 1 dev f1 80.1\n")
    else:
        pickle_with_code(path, marker)
    result = run_cli("trainer.evaluate", path, "--split", "dev")
    assert_refused(result, f"{path}: not a checkpoint written by python -m trainer")
    assert "weights_only" not in result.stderr
    assert not marker.exists()


def test_evaluate_scores_a_checkpoint_without_any_warning(finished_run):
    result = run_cli("trainer.evaluate", finished_run / "best.pt", "--split", "dev")
    assert result.returncode == 0, result.stderr
    assert '"metric": "f1"' in result.stdout
    assert "Warning" not in result.stderr


def test_a_data_file_that_is_not_utf8_is_refused_with_its_line_and_the_encoding_field(tmp_path):
    train_file, out = tmp_path / "deu.train", tmp_path / "run"
    train_file.write_bytes("Hans B-PER\nin O\nKöln B-LOC\n".encode("iso-8859-1"))
    result = run_cli(
        "trainer", "configs/ner.yaml", "--out", out, "--set", "data.dataset=files",
        "--set", f"data.train_path={train_file}", "--set", f"data.dev_path={train_file}",
    )  # fmt: skip
    assert_refused(result, f"{train_file}:3: not valid utf-8 text", "data.encoding")
    assert not out.exists()
