"""Training runs on a slice of the real CoNLL-2003 English data: command line, determinism, resume."""

import json
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from trainer import TrainingDiverged, evaluate_checkpoint, parse_config, train
from trainer.checkpoint import load
from trainer.train import write_metrics

SLICE = {"max_train_sentences": 300, "max_dev_sentences": 100}


def slice_config(**procedure):
    return parse_config(
        {"procedure": {"name": "soft_greedy", **procedure}, "optim": {"epochs": 3}, "data": SLICE, "seed": 7}
    )


def figures(summary):
    """Every epoch's figures except the wall time."""
    return [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in summary["epochs"]]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)


@pytest.mark.parametrize("procedure", ["ce", "ss_greedy", "ss_sample", "soft_greedy", "soft_sample"])
def test_every_procedure_trains_through_the_command_line(conll2003_en, tmp_path, procedure):
    # Two epochs with k=always: epoch 1 is all gold, epoch 2 feeds the model's own choices.
    result = run_cli(
        "trainer", "configs/ner.yaml", "--out", str(tmp_path), "--no-progress",
        "--set", f"procedure.name={procedure}", "--set", "procedure.k=always", "--set", "optim.epochs=2",
        "--set", "data.max_train_sentences=200", "--set", "data.max_dev_sentences=50",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert metrics["epochs"][1]["gold_probability"] == (1.0 if procedure == "ce" else 0.0)
    assert (tmp_path / "best.pt").exists() and "dev f1" in result.stdout
    has_alpha = procedure in ("soft_greedy", "soft_sample")  # ce and the hard procedures have no α
    assert all(("alpha" in epoch) == has_alpha for epoch in metrics["epochs"])
    assert ("alpha" in result.stdout) == has_alpha


def test_evaluate_scores_the_best_checkpoint_on_test(conll2003_en, tmp_path):
    train(slice_config(), tmp_path, progress=False, log=lambda _: None)
    scores = tmp_path / "t.json"
    result = run_cli("trainer.evaluate", str(tmp_path / "best.pt"), "--split", "test", "--out", str(scores))
    assert result.returncode == 0, result.stderr
    scored = json.loads(scores.read_text())
    assert scored["split"] == "test" and 0 <= scored["f1"] <= 100


def test_best_checkpoint_holds_the_best_dev_epoch_and_rebuilds_alone(conll2003_en, tmp_path):
    summary = train(slice_config(), tmp_path, progress=False, log=lambda _: None)
    best = max(summary["epochs"], key=lambda e: e["dev_score"])
    assert load(tmp_path / "best.pt")["epoch"] == summary["best_epoch"] == best["epoch"]
    assert evaluate_checkpoint(tmp_path / "best.pt", split="dev", log=lambda _: None)["f1"] == pytest.approx(
        best["dev_score"]
    )


def test_same_config_and_seed_give_identical_metrics(conll2003_en, tmp_path):
    first = train(slice_config(name="soft_sample", k=1), tmp_path / "a", progress=False, log=lambda _: None)
    second = train(slice_config(name="soft_sample", k=1), tmp_path / "b", progress=False, log=lambda _: None)
    assert figures(first) == figures(second)


def test_resumed_run_continues_the_schedule_and_matches_an_uninterrupted_run(conll2003_en, tmp_path):
    config = slice_config(name="ss_sample", k=10, schedule_unit="step")
    whole = train(config, tmp_path / "whole", progress=False, log=lambda _: None)
    train(config, tmp_path / "cut", on_epoch=lambda record, _: record["epoch"] == 2, progress=False, log=lambda _: None)
    assert load(tmp_path / "cut" / "last.pt")["schedule"]["epoch"] == 2
    resumed = train(config, tmp_path / "cut", progress=False, log=lambda _: None)
    assert figures(resumed) == figures(whole)
    assert whole["epochs"][2]["gold_probability"] < whole["epochs"][1]["gold_probability"] < 1.0


@pytest.mark.parametrize(
    "device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
)
def test_resuming_restores_the_random_generators_of_the_last_epoch(conll2003_en, tmp_path, device):
    """On CUDA the device's generator too (dropout, the gold/model coin and sampling draw from it there)."""
    config = parse_config({"data": {"max_train_sentences": 50, "max_dev_sentences": 20}, "optim": {"epochs": 1},
                           "procedure": {"name": "ss_sample"}, "device": device})  # fmt: skip
    train(config, tmp_path, progress=False, log=lambda _: None)
    saved = load(tmp_path / "last.pt")
    torch.manual_seed(123)  # reseeds the CUDA generators too
    train(config, tmp_path, progress=False, log=lambda _: None)  # resumes after its last epoch: nothing to train
    assert torch.equal(torch.get_rng_state(), saved["rng"])
    if device == "cuda":
        assert torch.equal(torch.cuda.get_rng_state(), saved["cuda_rng"][0])


def test_resuming_with_another_config_is_refused(conll2003_en, tmp_path):
    train(slice_config(), tmp_path, on_epoch=lambda *_: True, progress=False, log=lambda _: None)
    with pytest.raises(ValueError, match="another config"):
        train(slice_config(name="ce"), tmp_path, progress=False, log=lambda _: None)


def test_callback_can_stop_training(conll2003_en, tmp_path):
    summary = train(slice_config(), tmp_path, on_epoch=lambda record, _: True, progress=False, log=lambda _: None)
    assert len(summary["epochs"]) == 1


def test_a_diverging_run_stops_at_once_with_status_1_naming_the_step_and_the_learning_rate(conll2003_en, tmp_path):
    # SGD at lr 1e38 makes the parameters infinite after one step; the loss of step 2 is NaN.
    result = run_cli(
        "trainer", "configs/ner.yaml", "--out", str(tmp_path), "--no-progress",
        "--set", "optim.optimizer=sgd", "--set", "optim.lr=1e38", "--set", "optim.epochs=2",
        "--set", "data.max_train_sentences=64", "--set", "data.max_dev_sentences=20",
    )  # fmt: skip
    assert result.returncode == 1
    assert "training diverged: the training loss is nan at epoch 1, optimizer step 2" in result.stderr
    assert "optim.lr (now 1e+38)" in result.stderr and "Traceback" not in result.stderr
    assert "best dev" not in result.stdout and not (tmp_path / "metrics.json").exists()


def test_divergence_raises_its_own_exception_from_the_python_api(conll2003_en, tmp_path):
    config = parse_config({"optim": {"optimizer": "sgd", "lr": 1e38}, "data": {"max_train_sentences": 64}})
    with pytest.raises(TrainingDiverged, match="epoch 1, optimizer step 2"):
        train(config, tmp_path, progress=False, log=lambda _: None)


def test_metrics_are_never_written_with_a_non_finite_number(tmp_path):
    """Bare NaN/Infinity is not JSON; a non-finite figure is refused and the last valid file stays."""
    write_metrics(tmp_path, {}, "f1", [{"epoch": 1, "train_loss": 0.5}], {"epoch": 1, "dev_score": 50.0})
    with pytest.raises(ValueError):
        write_metrics(tmp_path, {}, "f1", [{"epoch": 2, "train_loss": float("nan")}], {"epoch": 1, "dev_score": 50.0})
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs"] == [{"epoch": 1, "train_loss": 0.5}]


def test_bad_config_exits_with_status_2_and_names_the_field(tmp_path):
    (tmp_path / "bad.yaml").write_text("optim:\n  epochz: 3\n")
    result = run_cli("trainer", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "optim.epochz" in result.stderr and "bad.yaml" in result.stderr


def test_malformed_data_file_exits_with_status_2_and_names_file_and_line(tmp_path):
    (tmp_path / "train.txt").write_text("EU NNP B-NP B-ORG\nrejects VBZ O\n")
    (tmp_path / "dev.txt").write_text("EU NNP B-NP B-ORG\n")
    result = run_cli(
        "trainer", "configs/ner.yaml", "--out", str(tmp_path / "run"), "--set", "data.dataset=files",
        "--set", f"data.train_path={tmp_path / 'train.txt'}", "--set", f"data.dev_path={tmp_path / 'dev.txt'}",
    )  # fmt: skip
    assert result.returncode == 2
    assert f"{tmp_path / 'train.txt'}:2" in result.stderr


def test_training_never_opens_the_test_split(tmp_path, conll2003_en):
    """With dataset 'files' and a test path that does not exist, training still succeeds."""
    config = parse_config(
        {
            "data": {
                "dataset": "files",
                "train_path": str(conll2003_en["train"]),
                "dev_path": str(conll2003_en["dev"]),
                "test_path": str(tmp_path / "absent-test.txt"),
                **SLICE,
            },
            "optim": {"epochs": 1},
        }
    )
    train(config, tmp_path / "run", progress=False, log=lambda _: None)
    assert not (tmp_path / "absent-test.txt").exists()


def test_sigterm_stops_a_run_as_ctrl_c_does_and_the_rerun_resumes_where_it_said(conll2003_en, tmp_path):
    """SIGTERM lands whenever it lands (here once the first epoch is saved): the run exits 143 naming the epoch
    it resumes after, with no traceback, and the rerun resumes after that epoch."""
    command = [sys.executable, "-m", "trainer", "configs/ner.yaml", "--out", str(tmp_path), "--no-progress",
               "--set", "optim.epochs=1000", "--set", "data.max_train_sentences=40",
               "--set", "data.max_dev_sentences=20"]  # fmt: skip
    outcomes = []
    for _ in range(2):
        run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started = tmp_path.stat().st_mtime_ns
        deadline = time.monotonic() + 300
        while not (tmp_path / "last.pt").exists() or (tmp_path / "last.pt").stat().st_mtime_ns <= started:
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        outcomes.append((run.wait(timeout=60), *run.communicate()))
    (first_code, _, first_err), (second_code, second_out, second_err) = outcomes
    assert (first_code, second_code) == (143, 143), first_err + second_err
    said = re.search(r"interrupted after epoch (\d+); rerun the same command to resume", first_err)
    assert said and "Traceback" not in first_err + second_err
    assert f"Resuming {tmp_path} after epoch {said.group(1)} " in second_out
