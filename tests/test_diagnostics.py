"""Credit-assignment diagnostics (trainer/diagnostics.py): the hard procedures pass no credit back through
their choices and the greedy ones have no noise; the relaxed ones pass credit and the sampled ones vary."""

import json

import pytest
import torch
from tiny_ner import tiny_ner_model_and_batch

from trainer import load_config, train
from trainer.diagnostics import measure
from trainer.feedback import FeedbackPolicy


@pytest.fixture(scope="module")
def model_and_batch():
    return tiny_ner_model_and_batch()


def diagnostics_of(procedure: str, model_and_batch) -> dict[str, float]:
    model, batch = model_and_batch
    return measure(model, batch, FeedbackPolicy(procedure, model.excluded_ids), alpha=1.0, draws=4)


@pytest.mark.parametrize("procedure", ["ce", "ss_greedy", "ss_sample"])
def test_no_credit_flows_back_through_the_choices_of_ce_and_the_hard_procedures(procedure, model_and_batch):
    assert diagnostics_of(procedure, model_and_batch)["credit_norm"] == 0.0


@pytest.mark.parametrize("procedure", ["soft_greedy", "soft_sample"])
def test_the_relaxed_procedures_send_credit_to_earlier_decisions(procedure, model_and_batch):
    assert diagnostics_of(procedure, model_and_batch)["credit_norm"] > 1e-6


@pytest.mark.parametrize("procedure", ["ce", "ss_greedy", "soft_greedy"])
def test_deterministic_procedures_have_no_gradient_variance(procedure, model_and_batch):
    assert diagnostics_of(procedure, model_and_batch)["gradient_variance"] == 0.0


@pytest.mark.parametrize("procedure", ["ss_sample", "soft_sample"])
def test_sampling_procedures_have_gradient_variance(procedure, model_and_batch):
    assert diagnostics_of(procedure, model_and_batch)["gradient_variance"] > 0.0


def test_measuring_leaves_the_random_stream_and_the_training_mode_as_they_were(model_and_batch):
    model, _ = model_and_batch
    model.train()
    state = torch.random.get_rng_state()
    diagnostics_of("soft_sample", model_and_batch)
    assert torch.equal(state, torch.random.get_rng_state()) and model.training


def test_a_run_with_diagnostics_logs_them_every_epoch_and_trains_the_same(conll2003_en, tmp_path):
    overrides = ["optim.epochs=2", "data.max_train_sentences=64", "data.max_dev_sentences=16",
                 "procedure.name=soft_sample", "procedure.k=always"]  # fmt: skip
    plain = train(load_config("configs/ner.yaml", overrides), tmp_path / "plain", progress=False, log=lambda _: None)
    measured = train(
        load_config("configs/ner.yaml", [*overrides, "diagnostics.enabled=true", "diagnostics.sentences=8"]),
        tmp_path / "measured",
        progress=False,
        log=lambda _: None,
    )
    for plain_epoch, epoch in zip(plain["epochs"], measured["epochs"], strict=True):
        assert epoch["credit_norm"] > 0 and epoch["gradient_variance"] > 0
        assert epoch["train_loss"] == plain_epoch["train_loss"]
    assert "credit_norm" in json.loads((tmp_path / "measured" / "metrics.json").read_text())["epochs"][0]
