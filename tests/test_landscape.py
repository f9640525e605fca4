"""Figure 1 (trainer/landscape.py): along a direction in parameter space, hard greedy scheduled sampling's
objective jumps where a greedy decision flips; the α-soft argmax's is continuous and nears it as α grows."""

import csv

import numpy as np
import pytest
import torch
from tiny_ner import tiny_ner_model_and_batch

from trainer import load_config, train
from trainer.landscape import landscape, main, random_direction

ALPHAS = [1.0, 10.0, 100.0, 1000.0]


@pytest.fixture(scope="module")
def curves():
    model, batch = tiny_ner_model_and_batch()
    before = [p.detach().clone() for p in model.parameters()]
    steps = list(np.linspace(-0.5, 0.5, 401))
    result = landscape(model, batch, random_direction(model, 0), steps, ALPHAS)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # θ is restored
    return result


def steps_and_flips(result):
    hard_steps = np.abs(np.diff(result.hard))
    flipped = np.array(result.flips()[1:]) > 0
    assert flipped.any() and (~flipped).any()
    return hard_steps, flipped


def test_the_hard_objective_jumps_where_a_greedy_decision_flips_and_only_there(curves):
    hard_steps, flipped = steps_and_flips(curves)
    assert hard_steps[flipped].max() > 20 * hard_steps[~flipped].max()


def test_the_soft_objective_at_small_alpha_is_continuous(curves):
    hard_steps, _ = steps_and_flips(curves)
    assert np.abs(np.diff(curves.soft[1.0])).max() < hard_steps.max() / 20


def test_the_soft_objective_approaches_the_hard_one_as_alpha_grows(curves):
    gaps = [np.abs(np.array(curves.soft[alpha]) - np.array(curves.hard)).mean() for alpha in ALPHAS]
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < gaps[0] / 10


def test_the_command_writes_the_numbers_and_the_figure_from_a_checkpoint(conll2003_en, tmp_path):
    config = load_config(
        "configs/ner.yaml",
        ["optim.epochs=1", "data.max_train_sentences=64", "data.max_dev_sentences=16", "procedure.name=ce"],
    )
    train(config, tmp_path / "run", progress=False, log=lambda _: None)
    assert main([str(tmp_path / "run" / "best.pt"), "--out", str(tmp_path / "figure"), "--points", "21",
                 "--sentences", "8", "--alphas", "1", "10"]) == 0  # fmt: skip
    with (tmp_path / "figure" / "landscape.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 21
    assert set(rows[0]) == {"t", "ss_greedy", "soft_greedy_alpha_1", "soft_greedy_alpha_10", "flips"}
    assert (tmp_path / "figure" / "landscape.png").stat().st_size > 0
