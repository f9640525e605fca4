"""The groups' Optuna studies: what each sampler proposes, and that a resumed sweep proposes the same."""

from __future__ import annotations

import pytest

from orchestrator.space import SearchSpace
from orchestrator.studies import Studies, storage_url


def space(sampler: dict, axes: dict) -> SearchSpace:
    return SearchSpace.model_validate(
        {
            "epochs": 2,
            "groups": {"g": {"axes": axes}},
            "sampler": sampler,
            "rows": {"r": {"label": "r", "where": {"procedure.name": "ce"}}},
        }
    )


def studies(tmp_path, name: str, sweep_space: SearchSpace) -> Studies:
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    result = Studies(storage_url(directory), sweep_space)
    result.create_all()
    return result


def test_grid_configurations_are_proposed_once_each_in_file_order(tmp_path):
    grid = space({"type": "grid"}, {"procedure.k": [100, 10, "always"], "optim.lr": [0.1, 0.01]})
    group = studies(tmp_path, "a", grid)
    proposed = [group.ask("g")[1] for _ in range(6)]
    assert proposed == grid.grid("g")
    assert len(grid.grid("g")) == grid.planned_configurations("g") == 6


@pytest.mark.parametrize("sampler", [{"type": "random", "samples": 4, "seed": 3}, {"type": "tpe", "samples": 4}])
def test_a_resumed_sweep_proposes_what_an_uninterrupted_one_would(tmp_path, sampler):
    axes = {"optim.lr": {"distribution": "loguniform", "low": 1e-4, "high": 1e-1}, "procedure.k": [100, 10, 1]}
    sweep_space = space(sampler, axes)
    whole = studies(tmp_path, "whole", sweep_space)
    uninterrupted = [whole.ask("g")[1] for _ in range(3)]
    first = studies(tmp_path, "split", sweep_space)
    before = [first.ask("g")[1] for _ in range(2)]
    after = Studies(first.url, sweep_space).ask("g")[1]  # a new session: fresh objects, same storage
    assert before + [after] == uninterrupted


def test_a_configuration_asked_by_a_driver_killed_before_its_suggestions_resumes_with_its_grid_point(tmp_path):
    grid = space({"type": "grid"}, {"procedure.k": [100, 10, "always"]})
    group = studies(tmp_path, "a", grid)
    group.ask("g")
    study = group.study("g")
    study.enqueue_trial(grid.grid("g")[1])
    study.ask()  # what the killed driver stored: a RUNNING trial, no parameters yet
    resumed = Studies(group.url, grid)
    assert resumed.asked_configurations("g") == [(0, {"procedure.k": 100}), (1, {"procedure.k": 10})]


def test_distributions_are_sampled_within_their_bounds(tmp_path):
    axes = {
        "optim.lr": {"distribution": "loguniform", "low": 1e-4, "high": 1e-2},
        "optim.batch_size": {"distribution": "int", "low": 16, "high": 64, "step": 16},
    }
    group = studies(tmp_path, "a", space({"type": "random", "samples": 8}, axes))
    for _ in range(8):
        params = group.ask("g")[1]
        assert 1e-4 <= params["optim.lr"] <= 1e-2
        assert params["optim.batch_size"] in (16, 32, 48, 64)


def test_a_group_without_axes_has_one_configuration_whatever_the_sampler():
    assert space({"type": "tpe", "samples": 5}, {}).planned_configurations("g") == 1
