"""The paper's protocol per row: best configuration by mean dev over its restarts, then its best restart;
only the chosen checkpoints are scored on test, each once."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from ray import tune

from orchestrator.selection import (
    TEST_RECORD,
    Outcome,
    choose,
    markdown_table,
    score_on_test,
    summary_rows,
    write_summary,
)
from orchestrator.space import SearchSpace


def space(mode: str = "max", restarts: int = 3) -> SearchSpace:
    return SearchSpace.model_validate(
        {
            "epochs": 3,
            "restarts": restarts,
            "groups": {"g": {}},
            "metric": {"mode": mode},
            "rows": {
                "soft": {"label": "soft", "where": {"procedure.name": "soft_greedy"}},
                "k10": {"label": "k10", "where": {"procedure.k": 10}},
            },
        }
    )


def outcome(config: str, restart: int, dev: float | None, state: str = "COMPLETE", rows=("soft",)) -> Outcome:
    return Outcome(
        key=f"{config}-r{restart}",
        group="g",
        config_id=config,
        restart=restart,
        seed=1 + restart,
        params={},
        rows=list(rows),
        state=state,
        best_dev=dev,
    )


def test_best_configuration_by_mean_dev_then_its_best_restart():
    trials = [outcome("a", 0, 60.0), outcome("a", 1, 40.0), outcome("b", 0, 55.0), outcome("b", 1, 52.0)]
    choice = choose(space(), trials)["soft"]
    assert choice.outcome.key == "b-r0"  # a has the single best restart, b the better mean
    assert choice.config_mean_dev == pytest.approx(53.5)
    assert choice.config_restarts == 2


def test_lower_is_better_in_min_mode():
    trials = [outcome("a", 0, 1.0), outcome("a", 1, 3.0), outcome("b", 0, 2.5), outcome("b", 1, 2.6)]
    assert choose(space("min"), trials)["soft"].outcome.key == "a-r0"


def test_pruned_trials_are_chosen_only_when_a_row_has_nothing_else():
    trials = [outcome("a", 0, 70.0, state="PRUNED"), outcome("b", 0, 50.0)]
    assert choose(space(), trials)["soft"].outcome.key == "b-r0"
    only_pruned = choose(space(), trials[:1])["soft"]
    assert (only_pruned.outcome.key, only_pruned.note) == ("a-r0", "only pruned trials")


def test_failed_and_unfinished_trials_are_never_chosen():
    trials = [outcome("a", 0, 90.0, state="FAILED"), outcome("b", 0, 80.0, state="UNFINISHED")]
    choice = choose(space(), trials)["soft"]
    assert (choice.outcome, choice.failed, choice.note) == (None, 1, "no finished trial")


def test_row_counts_trials_configurations_and_pruned():
    trials = [outcome("a", 0, 60.0), outcome("a", 1, 50.0), outcome("b", 0, 10.0, state="PRUNED")]
    choice = choose(space(), trials)["soft"]
    assert (choice.trials, choice.configurations, choice.pruned) == (3, 2, 1)


def summary_files(tmp_path: Path, sweep: SearchSpace, trials: list[Outcome]) -> tuple[str, list[dict], list[dict]]:
    """The summary of `trials` as written: markdown, csv rows, json rows."""
    rows = summary_rows(sweep, choose(sweep, trials), scores=None)
    table = markdown_table(rows, "f1", test_scored=False)
    md, csv_path, json_path = write_summary(tmp_path, rows, table, meta={})
    with csv_path.open() as file:
        csv_rows = list(csv.DictReader(file))
    return md.read_text(), csv_rows, json.loads(json_path.read_text())["rows"]


def test_summary_says_how_many_restarts_the_chosen_mean_is_over_and_notes_a_failed_one(tmp_path):
    trials = [outcome("a", 0, 60.0), outcome("a", 1, 90.0, state="FAILED"), outcome("a", 2, 50.0)]
    choice = choose(space(restarts=3), trials)["soft"]
    assert (choice.config_mean_dev, choice.config_restarts, choice.planned_restarts) == (55.0, 2, 3)
    table, csv_rows, json_rows = summary_files(tmp_path, space(restarts=3), trials)
    soft = table.splitlines()[2].split(" | ")
    assert soft[4] == "a-r0 (mean over 2 of 3 restarts)"
    assert soft[6] == "2/3"
    assert (csv_rows[0]["restarts"], csv_rows[0]["planned_restarts"]) == ("2", "3")
    assert (json_rows[0]["restarts"], json_rows[0]["planned_restarts"]) == (2, 3)
    assert json_rows[0]["note"] == "mean over 2 of 3 restarts"


def test_a_mean_over_every_planned_restart_has_no_note(tmp_path):
    trials = [outcome("a", 0, 60.0), outcome("a", 1, 50.0)]
    table, _, json_rows = summary_files(tmp_path, space(restarts=2), trials)
    assert table.splitlines()[2].split(" | ")[4:7] == ["a-r0", "-", "2/2"]
    assert json_rows[0]["note"] == ""


def test_a_pruned_choice_is_over_its_one_planned_restart(tmp_path):
    trials = [outcome("a", 0, 70.0, state="PRUNED")]
    table, _, json_rows = summary_files(tmp_path, space(restarts=3), trials)
    assert table.splitlines()[2].split(" | ")[6] == "1/1"
    assert json_rows[0]["note"] == "only pruned trials"


def checkpoint(tmp_path: Path, name: str) -> tune.Checkpoint:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "best.pt").write_bytes(b"")
    return tune.Checkpoint.from_directory(str(directory))


def test_a_trial_chosen_for_two_rows_is_scored_on_test_once(tmp_path):
    shared = outcome("a", 0, 60.0, rows=("soft", "k10"))
    shared.checkpoint = checkpoint(tmp_path, "a")
    shared.checkpoint_dir = shared.checkpoint.path
    calls = []

    def evaluate(path: Path) -> dict:
        calls.append(path.name)
        return {"split": "test", "metric": "f1", "f1": 42.0}

    scores = score_on_test(choose(space(), [shared]), tmp_path, evaluate, log=lambda _: None)
    assert calls == ["best.pt"]
    assert scores["a-r0"]["f1"] == 42.0
    assert (tmp_path / TEST_RECORD).exists()


def test_a_rerun_reuses_the_recorded_test_scores(tmp_path):
    trial = outcome("a", 0, 60.0)
    trial.checkpoint = checkpoint(tmp_path, "a")
    trial.checkpoint_dir = trial.checkpoint.path
    calls = []

    def evaluate(path: Path) -> dict:
        calls.append(path)
        return {"split": "test", "metric": "f1", "f1": 42.0}

    for _ in range(2):
        score_on_test(choose(space(), [trial]), tmp_path, evaluate, log=lambda _: None)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("procedure", "params", "shown"),
    [
        ({"procedure.name": "ce"}, {}, "-"),
        ({"procedure.name": "ss_greedy", "procedure.k": 10}, {"procedure.k": 10}, "k=10"),
        ({"procedure.name": "ss_greedy", "procedure.k": 10.0}, {}, "k=10"),
        (
            {
                "procedure.name": "soft_greedy",
                "procedure.k": "always",
                "procedure.alpha.mode": "fixed",
                "procedure.alpha.alpha0": 10.0,
                "procedure.alpha.growth": 1.5,
            },
            {},
            "k=always, α=10",
        ),  # fmt: skip
        (
            {
                "procedure.name": "soft_sample",
                "procedure.k": 100,
                "procedure.alpha.mode": "annealed",
                "procedure.alpha.alpha0": 1.0,
                "procedure.alpha.growth": 3.0,
            },
            {"procedure.alpha.growth": 3.0, "optim.lr": 0.01},
            "k=100, α=1·3^epoch, lr=0.01",
        ),  # fmt: skip
    ],
)
def test_a_rows_setting_names_k_and_alpha_even_where_the_group_fixes_them(procedure, params, shown):
    from orchestrator.selection import setting_text

    assert setting_text(procedure, params) == shown
