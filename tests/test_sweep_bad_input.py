"""Bad input to `python -m orchestrator.sweep` is refused before anything starts: one clear message naming the
file, field or URI, exit status 2, no traceback, and nothing written (no output folder, no stores).

Every case here is refused before Ray, Optuna or MLflow would start, so no test starts them."""

from __future__ import annotations

import pytest
from sweep_helpers import REPO, SMOKE, run_main

from orchestrator import sweep

MT_SPACE = REPO / "search_spaces" / "mt_ding.yaml"


def refused(argv: list, out, *expected: str) -> str:
    """Runs the sweep CLI in this process; checks the refusal and returns its stderr."""
    session = run_main([*argv, "--out", out])
    assert session.code == 2, session.stderr
    for text in expected:
        assert text in session.stderr
    assert "Traceback" not in session.stderr
    assert not out.exists()
    return session.stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-concurrent", "0", "argument --max-concurrent: must be at least 1, not 0"),
        ("--max-concurrent", "-3", "argument --max-concurrent: must be at least 1, not -3"),
        ("--max-failures", "-2", "argument --max-failures: must be at least -1, not -2"),
    ],
)
def test_option_out_of_range_is_an_argparse_error(option, value, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        sweep.main([str(SMOKE), option, value, "--out", str(tmp_path / "out")])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("space", "metric"),
    [
        (MT_SPACE, "dev_chrf"),  # reported by the trainer, but best.pt is kept on BLEU
        (SMOKE, "dev_bleu"),  # never reported for NER
        (SMOKE, "dev_accuracy"),
    ],
)
@pytest.mark.parametrize("dry_run", [False, True])
def test_metric_other_than_the_tasks_own_is_refused(space, metric, dry_run, tmp_path):
    argv = [space, "--set", f"metric.name={metric}"] + (["--dry-run"] if dry_run else [])
    refused(argv, tmp_path / "out", f"{space}: metric.name: {metric}", "use dev_score or dev_")


def test_metric_mode_min_is_refused_for_a_higher_is_better_metric(tmp_path):
    refused([SMOKE, "--set", "metric.mode=min"], tmp_path / "out", f"{SMOKE}: metric.mode", "use max")


@pytest.mark.parametrize(("space", "metric"), [(SMOKE, "dev_f1"), (MT_SPACE, "dev_bleu")])
def test_the_tasks_metric_by_name_is_accepted(space, metric, tmp_path):
    session = run_main([space, "--set", f"metric.name={metric}", "--dry-run", "--out", tmp_path / "out"])
    assert session.code == 0, session.stderr
    assert f"metric {metric} (max)" in session.stdout
