"""Two sweeps of one space side by side (orchestrator/compare.py): the rows' choices, verdicts and trial-epochs.

The sweeps' folders are written by the selection module's own writers (summary.json) from constructed trials,
so the comparison reads exactly what a sweep leaves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import compare
from orchestrator.outdir import REPORT_STEM
from orchestrator.selection import Outcome, choose, markdown_table, outcome_dict, summary_rows, write_summary
from orchestrator.space import SearchSpace

SPACE = SearchSpace.model_validate(
    {
        "epochs": 4,
        "restarts": 2,
        "groups": {"g": {}},
        "rows": {
            "ce": {"table": "1", "label": "Baseline CE", "where": {"procedure.name": "ce"}},
            "ss": {"table": "1", "label": "SS greedy", "where": {"procedure.name": "ss_greedy"}},
        },
    }
)


def trial(row: str, setting: str, restart: int, dev: float, state: str = "COMPLETE", epochs: int = 4) -> Outcome:
    config = f"{row}-{setting}"
    return Outcome(
        key=f"{config}-r{restart}", group=row, config_id=config, restart=restart, seed=1 + restart, params={},
        rows=[row], state=state, epochs=epochs, best_dev=dev, setting=setting,
    )  # fmt: skip


def sweep(folder: Path, trials: list[Outcome], verdicts: dict[str, tuple[str, str]] | None = None) -> Path:
    """A finished sweep's folder: summary.json as the sweep writes it, report.json's verdicts if given."""
    folder.mkdir()
    rows = summary_rows(SPACE, choose(SPACE, trials), None)
    meta = {"trials": [outcome_dict(t) for t in trials]}
    write_summary(folder, rows, markdown_table(rows, "f1", False), meta)
    if verdicts is not None:
        report = {"rows": [{"row": r, "verdict": v, "verdict_chosen_restart": c} for r, (v, c) in verdicts.items()]}
        (folder / f"{REPORT_STEM}.json").write_text(json.dumps(report))
    return folder


def table_row(text: str, label: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| 1 | {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


CE = [trial("ce", "-", 0, 80.0), trial("ce", "-", 1, 81.0)]


def test_a_row_that_chose_the_same_configuration_with_the_same_verdicts_agrees(tmp_path):
    verdicts = {"ce": ("baseline", "baseline"), "ss": ("indistinguishable", "worse than CE")}
    a = sweep(tmp_path / "a", [*CE, trial("ss", "k=10", 0, 79.0), trial("ss", "k=10", 1, 80.0)], verdicts)
    b = sweep(tmp_path / "b", [*CE, trial("ss", "k=10", 0, 78.0), trial("ss", "k=10", 1, 79.0)], verdicts)
    row = table_row(compare.compare(compare.read_side([a]), compare.read_side([b])), "SS greedy")
    assert row[2:] == ["k=10", "79.50", "k=10", "78.50", "-1.00", "yes", "indistinguishable", "indistinguishable",
                       "yes", "worse than CE", "worse than CE", "yes"]  # fmt: skip


def test_verdicts_that_differ_between_the_sweeps_are_marked_as_disagreeing():
    a = compare.RowChoice((("ss",), "k=10"), 79.5, "indistinguishable", "worse than CE")
    b = compare.RowChoice((("ss",), "k=1"), 79.0, "indistinguishable", "indistinguishable")
    labels = {"ss": ("1", "SS greedy")}
    text = compare.compare(compare.Side((), labels, {"ss": a}, 8, 2), compare.Side((), labels, {"ss": b}, 8, 2))
    assert table_row(text, "SS greedy")[7:] == ["no", "indistinguishable", "indistinguishable", "yes",
                                                "worse than CE", "indistinguishable", "no"]  # fmt: skip
    assert "same choice in 0 of 1 rows; verdicts agree in 1 of 1" in text
    assert "0 of 1 (chosen restart alone)" in text


def test_each_row_takes_the_configuration_with_the_best_mean_over_its_finished_restarts(tmp_path):
    trials = [
        *CE,
        trial("ss", "k=10", 0, 90.0), trial("ss", "k=10", 1, 70.0),  # best single restart, worse mean
        trial("ss", "k=1", 0, 82.0), trial("ss", "k=1", 1, 81.0),
        trial("ss", "k=100", 0, 95.0, state="PRUNED", epochs=2),
        trial("ss", "k=100", 1, 95.0, state="PRUNED", epochs=2),
    ]  # fmt: skip
    side = compare.read_side([sweep(tmp_path / "a", trials)])
    assert side.choices["ss"].setting == "k=1"
    assert side.choices["ss"].dev_mean == pytest.approx(81.5)
    assert side.trial_epochs == 6 * 4 + 2 * 2


def test_a_configuration_in_a_later_folder_of_b_replaces_the_one_in_an_earlier(tmp_path):
    pruned = [trial("ss", "k=1", r, 60.0, state="PRUNED", epochs=2) for r in (0, 1)]
    a = sweep(tmp_path / "pruned", [*CE, trial("ss", "k=10", 0, 79.0), trial("ss", "k=10", 1, 79.0), *pruned])
    rest = sweep(tmp_path / "rest", [trial("ss", "k=1", 0, 83.0), trial("ss", "k=1", 1, 84.0)])
    unpruned = compare.read_side([a, rest])
    assert unpruned.choices["ss"].setting == "k=1"
    assert unpruned.choices["ss"].dev_mean == pytest.approx(83.5)
    assert unpruned.trial_epochs == 6 * 4  # the pruned scouts' 2 epochs each are not counted beside their rerun
    text = compare.compare(compare.read_side([a]), unpruned)
    assert table_row(text, "SS greedy")[2:8] == ["k=10", "79.00", "k=1", "83.50", "+4.50", "no"]
    assert "A trained 0.83× the trial-epochs of B" in text


def test_a_configuration_is_known_across_sweeps_by_its_rows_and_setting_not_its_id(tmp_path):
    a = sweep(tmp_path / "a", [*CE, trial("ss", "k=10", 0, 79.0), trial("ss", "k=10", 1, 80.0)])
    renamed = [trial("ss", "k=10", r, 80.0) for r in (0, 1)]
    for t in renamed:
        t.config_id, t.group = "other-007", "other"
    b = sweep(tmp_path / "b", [*CE, *renamed])
    assert table_row(compare.compare(compare.read_side([a]), compare.read_side([b])), "SS greedy")[7] == "yes"


def test_sweeps_of_different_rows_are_refused(tmp_path):
    a = compare.Side((), {"ss": ("1", "SS")}, {}, 0, 0)
    b = compare.Side((), {"ce": ("1", "CE")}, {}, 0, 0)
    with pytest.raises(compare.CompareError, match="different rows"):
        compare.compare(a, b)


def test_a_folder_without_a_finished_sweep_exits_2_naming_its_summary(tmp_path, capsys):
    a = sweep(tmp_path / "a", CE)
    assert compare.main([str(a), str(tmp_path / "nothing")]) == 2
    assert "nothing/summary.json not found" in capsys.readouterr().err


def test_the_command_prints_the_table_and_both_sides_trial_epochs(tmp_path, capsys):
    a = sweep(tmp_path / "a", CE)
    assert compare.main([str(a), str(a)]) == 0
    out = capsys.readouterr().out
    assert "| 1 | Baseline CE | - | 80.50 | - | 80.50 | +0.00 | yes |" in out
    assert out.count("2 trials, 8 trial-epochs") == 2
