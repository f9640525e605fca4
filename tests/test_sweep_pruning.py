"""A pruner that must prune does: a configuration built to be worse (a learning rate too small to learn
anything in five epochs) is stopped by each of Optuna's pruners in Ray Tune, and shows as pruned everywhere.

The configurations feed their own choice from epoch 2 (ss_greedy, k = always), so the pruning rules' wait for
schedules that have left teacher forcing ends after the all-gold epoch 1; decisions rest on one seed here
(`seeds: 1`), so that which trial is stopped where does not depend on two trials' relative pace (the mean over
seeds is tested in tests/test_searcher.py)."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest
import yaml
from sweep_helpers import (
    client,
    configuration_runs,
    dev_history,
    run_main,
    start_ray,
    summary,
    trial_runs,
    write_slices,
)

from orchestrator.studies import storage_url

EPOCHS = 5
WARMUP = 2


@pytest.fixture(scope="module")
def ray_instance():
    ray = start_ray()
    yield ray
    ray.shutdown()


PRUNERS = {
    "median": {"type": "median", "startup": 1, "warmup_epochs": WARMUP, "seeds": 1},
    # First rung at epoch 3; with two configurations at a rung only the better one goes on.
    "successive_halving": {"type": "successive_halving", "min_resource": 3, "reduction_factor": 3, "seeds": 1},
    # log_3(EPOCHS / 3) < 1: a single bracket, so both configurations meet in it.
    "hyperband": {"type": "hyperband", "min_resource": 3, "reduction_factor": 3, "seeds": 1},
}


@pytest.fixture(scope="module", params=list(PRUNERS))
def sweep(request, ray_instance, conll2003_en, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"pruning-{request.param}")
    # 1,000 training sentences: on 300, lr 0.01 stays near chance F1 for five epochs now that <unk> is trained
    # (and the vocabulary is the slice's), so the configuration built to be worse was not.
    paths = write_slices(conll2003_en, root / "data", counts=(1000, 100, 100))
    space = {
        "name": "pruning",
        "base": {
            "data": {"dataset": "files", **{f"{split}_path": str(path) for split, path in paths.items()}},
            "procedure": {"name": "ss_greedy", "k": "always"},
            "device": "cpu",
        },
        "epochs": EPOCHS,
        "restarts": 2,
        "groups": {"lr": {"axes": {"optim.lr": [0.01, 1.0e-7]}}},  # the second stays at its initial, chance F1
        "sampler": {"type": "grid"},
        "pruner": PRUNERS[request.param],
        "max_concurrent": 1,  # the good configuration finishes first, so the median exists when the bad one runs
        "rows": {"ss": {"label": "SS greedy", "where": {"procedure.name": "ss_greedy"}}},
    }
    path = root / "pruning.yaml"
    path.write_text(yaml.safe_dump(space))
    out = root / "out"
    session = run_main([path, "--out", out, "--no-test"])
    runs = {run.data.tags["trial_key"]: run for run in trial_runs(out)}
    lines = {line.split()[1]: line for line in session.trial_lines()}
    return SimpleNamespace(out=out, session=session, runs=runs, lines=lines)


def test_worse_configuration_is_pruned_after_the_warm_up_before_its_budget(sweep):
    assert sweep.session.code == 0, sweep.session.stderr
    words = sweep.lines["lr-001-r0"].split()
    assert words[2:5] == ["PRUNED", "at", "epoch"]
    assert WARMUP <= int(words[5]) < EPOCHS


def test_pruned_trial_shows_as_pruned_in_mlflow_with_its_epoch(sweep):
    run = sweep.runs["lr-001-r0"]
    assert (run.data.tags["state"], run.data.tags["pruned"]) == ("PRUNED", "true")
    epoch = int(run.data.tags["pruned_at_epoch"])
    assert epoch < EPOCHS
    assert [m.step for m in dev_history(sweep.out, run)] == list(range(1, epoch + 1))
    assert run.info.status == "FINISHED"
    good = sweep.runs["lr-000-r0"]
    assert (good.data.tags["state"], good.data.tags["pruned"]) == ("COMPLETE", "false")


def test_a_pruned_configuration_run_ends_pruned_with_its_scouts_curve_alone(sweep):
    configuration = {run.data.tags["config_id"]: run for run in configuration_runs(sweep.out)}["lr-001"]
    assert (configuration.data.tags["state"], configuration.data.tags["restarts"]) == ("PRUNED", "1")
    scout = [point.value for point in dev_history(sweep.out, sweep.runs["lr-001-r0"])]
    history = client(sweep.out).get_metric_history(configuration.info.run_id, "dev_score_mean")
    assert [point.value for point in history] == pytest.approx(scout)
    assert "dev_score_std" not in configuration.data.metrics


def test_pruned_trial_is_pruned_in_the_optuna_study(sweep):
    study = optuna.load_study(study_name="lr", storage=storage_url(sweep.out))
    states = {trial.params["optim.lr"]: trial.state for trial in study.trials}
    assert states == {0.01: optuna.trial.TrialState.COMPLETE, 1.0e-7: optuna.trial.TrialState.PRUNED}


def test_pruned_configuration_runs_none_of_its_other_restarts(sweep):
    assert sorted(sweep.runs) == ["lr-000-r0", "lr-000-r1", "lr-001-r0"]


def test_summary_counts_the_pruned_trial(sweep):
    (row,) = summary(sweep.out)["rows"]
    assert (row["pruned"], row["trials"], row["chosen"].startswith("lr-000")) == (1, 3, True)
