"""Training and scoring translation on a slice of the real Ding de→en data, through the command line."""

import json
import subprocess
import sys

import pytest

from trainer.config import resolve_data_dir
from trainer.data.ding import fetch_ding_de_en

TINY = [
    "--set", "model.embedding_dim=16", "--set", "model.encoder_hidden=16", "--set", "model.decoder_hidden=16",
    "--set", "model.attention_dim=16", "--set", "optim.batch_size=32",
    "--set", "data.max_train_sentences=160", "--set", "data.max_dev_sentences=40",
]  # fmt: skip


@pytest.fixture(scope="module")
def ding():
    return fetch_ding_de_en(resolve_data_dir(None))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("procedure", ["ce", "ss_greedy", "ss_sample", "soft_greedy", "soft_sample"])
def test_every_procedure_trains_on_real_ding_data_through_the_command_line(ding, tmp_path, procedure):
    # Two epochs with k=always: epoch 1 is all gold (§5), epoch 2 feeds the model's own choices.
    result = run_cli(
        "trainer", "configs/mt_ding.yaml", "--out", str(tmp_path), "--no-progress", *TINY,
        "--set", f"procedure.name={procedure}", "--set", "procedure.k=always", "--set", "optim.epochs=2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["metric"] == "bleu"
    assert metrics["epochs"][1]["gold_probability"] == (1.0 if procedure == "ce" else 0.0)
    assert all(0 <= e["dev_bleu"] <= 100 and 0 <= e["dev_chrf"] <= 100 for e in metrics["epochs"])
    assert (tmp_path / "best.pt").exists() and "dev bleu" in result.stdout


@pytest.mark.slow
def test_evaluate_scores_test_greedily_and_dev_with_beam_search(ding, tmp_path):
    trained = run_cli("trainer", "configs/mt_ding.yaml", "--out", str(tmp_path), "--no-progress", *TINY,
                      "--set", "optim.epochs=1")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    for split, beam in (("test", "1"), ("dev", "3")):  # dev is sliced to 40 sentences: beam search stays quick
        out = tmp_path / f"{split}.json"
        result = run_cli("trainer.evaluate", str(tmp_path / "best.pt"), "--split", split, "--beam", beam,
                         "--out", str(out))  # fmt: skip
        assert result.returncode == 0, result.stderr
        scored = json.loads(out.read_text())
        assert scored["split"] == split and scored["metric"] == "bleu"
        assert 0 <= scored["bleu"] <= 100 and 0 <= scored["chrf"] <= 100
    assert "beam_size" not in json.loads((tmp_path / "test.json").read_text())
    assert json.loads((tmp_path / "dev.json").read_text())["beam_size"] == 3


def test_misaligned_files_exit_with_status_2_naming_both_files(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.de").write_text("ein haus .\nein baum .\n")
        (tmp_path / f"{split}.en").write_text("a house .\n")
    result = run_cli(
        "trainer", "configs/mt_ding.yaml", "--out", str(tmp_path / "run"), "--no-progress",
        "--set", "data.dataset=files", "--set", f"data.path={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 2
    assert "train.de has 2 lines but" in result.stderr and "train.en has 1" in result.stderr
