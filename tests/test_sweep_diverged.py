"""A trial whose training loss turns NaN fails in the sweep: FAILED in the summary and in MLflow, never chosen,
while the rest of the sweep finishes (issue 7: it used to finish with a "best dev" trained on NaN)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from sweep_helpers import run_main, start_ray, summary, trial_runs, write_slices


@pytest.fixture(scope="module")
def sweep(conll2003_en, tmp_path_factory):
    ray = start_ray()
    root = tmp_path_factory.mktemp("diverged")
    paths = write_slices(conll2003_en, root / "data", counts=(100, 30, 30))
    space = {
        "name": "diverged",
        "base": {
            "data": {"dataset": "files", **{f"{split}_path": str(path) for split, path in paths.items()}},
            "procedure": {"name": "ce"},
            "device": "cpu",
        },
        "epochs": 2,
        "restarts": 1,
        "groups": {
            "adam": {"fixed": {"optim.lr": 0.01}},
            # SGD at lr 1e38 makes the parameters infinite after one step; the loss of the next step is NaN.
            "diverges": {"fixed": {"optim.optimizer": "sgd", "optim.lr": 1.0e38}},
        },
        "rows": {
            "adam": {"label": "Adam", "where": {"optim.optimizer": "adam"}},
            "sgd": {"label": "SGD at lr 1e38", "where": {"optim.optimizer": "sgd"}},
        },
    }
    path = root / "diverged.yaml"
    path.write_text(yaml.safe_dump(space))
    out = root / "out"
    session = run_main([path, "--out", out, "--no-test"])
    ray.shutdown()
    return SimpleNamespace(out=out, session=session, runs={r.data.tags["trial_key"]: r for r in trial_runs(out)})


def test_sweep_finishes_and_exits_1_for_the_row_without_a_finished_trial(sweep):
    assert sweep.session.code == 1, sweep.session.stderr
    rows = {row["row"]: row for row in summary(sweep.out)["rows"]}
    assert rows["adam"]["chosen"] == "adam-000-r0"
    assert (rows["sgd"]["chosen"], rows["sgd"]["failed"], rows["sgd"]["note"]) == (None, 1, "no finished trial")


def test_diverged_trial_is_failed_in_the_summary_and_in_mlflow_with_the_reason(sweep):
    states = {trial["key"]: trial["state"] for trial in summary(sweep.out)["trials"]}
    assert states == {"adam-000-r0": "COMPLETE", "diverges-000-r0": "FAILED"}
    run = sweep.runs["diverges-000-r0"]
    assert (run.data.tags["state"], run.info.status) == ("FAILED", "FAILED")
    assert "training diverged" in Path(run.data.tags["error_file"]).read_text()
