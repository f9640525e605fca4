"""The searcher and the pruning scheduler on real Optuna studies (SQLite), driven as Tune drives them: which trial
comes next, when a configuration's other restarts start, and when a scout is stopped."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from orchestrator.pruning import OptunaPruningScheduler
from orchestrator.searcher import RestartSearcher
from orchestrator.space import SearchSpace
from orchestrator.studies import Studies, storage_url
from orchestrator.trials import TrialMeta

EPOCHS = 4


def space(pruner: dict | None = None, restarts: int = 2) -> SearchSpace:
    return SearchSpace.model_validate(
        {
            "epochs": EPOCHS,
            "restarts": restarts,
            "groups": {
                "ce": {"fixed": {"procedure.name": "ce"}},
                "soft": {"fixed": {"procedure.name": "soft_greedy"}, "axes": {"procedure.k": [1, 10, 100]}},
            },
            "sampler": {"type": "grid"},
            "pruner": pruner or {"type": "none"},
            "rows": {"r": {"label": "r", "where": {"procedure.name": "ce"}}},
        }
    )


def searcher_for(tmp_path, sweep_space: SearchSpace, concurrency: int = 1) -> RestartSearcher:
    studies = Studies(storage_url(tmp_path), sweep_space)
    studies.create_all()
    return RestartSearcher(sweep_space, studies, concurrency)


def suggested(searcher: RestartSearcher, trial_id: str) -> TrialMeta | str | None:
    config = searcher.suggest(trial_id)
    return TrialMeta.of(config) if isinstance(config, dict) else config


def finish(searcher: RestartSearcher, trial_id: str, meta: TrialMeta, scores=(50.0,)) -> None:
    """The trial reports `scores` (its scout's to Optuna, as the scheduler does) and completes."""
    if meta.is_scout:
        for epoch, score in enumerate(scores, start=1):
            searcher.studies.report_and_check(meta.group, meta.number, epoch, score, check=False)
    searcher.on_trial_complete(trial_id, {"dev_score": max(scores)})


def test_configurations_come_from_the_groups_in_turn_each_first_as_its_scout(tmp_path):
    searcher = searcher_for(tmp_path, space(restarts=1), concurrency=4)
    metas = [suggested(searcher, f"t{i}") for i in range(4)]
    assert [(m.group, m.restart) for m in metas] == [("ce", 0), ("soft", 0), ("soft", 0), ("soft", 0)]
    assert [m.params for m in metas[1:]] == [{"procedure.k": k} for k in (1, 10, 100)]


def test_no_more_trials_run_at_once_than_allowed(tmp_path):
    searcher = searcher_for(tmp_path, space(), concurrency=2)
    assert isinstance(suggested(searcher, "t0"), TrialMeta) and isinstance(suggested(searcher, "t1"), TrialMeta)
    assert suggested(searcher, "t2") is None


def test_a_configurations_other_restarts_start_only_after_its_scout_and_before_new_configurations(tmp_path):
    searcher = searcher_for(tmp_path, space(restarts=3))
    scout = suggested(searcher, "t0")
    assert (scout.config_id, scout.restart) == ("ce-000", 0)
    finish(searcher, "t0", scout)
    second, third = suggested(searcher, "t1"), None
    finish(searcher, "t1", second)
    third = suggested(searcher, "t2")
    assert [(m.config_id, m.restart, m.key) for m in (second, third)] == [
        ("ce-000", 1, "ce-000-r1"),
        ("ce-000", 2, "ce-000-r2"),
    ]


def test_a_pruned_configuration_runs_none_of_its_other_restarts(tmp_path):
    searcher = searcher_for(tmp_path, space(restarts=2))
    scout = suggested(searcher, "t0")
    searcher.studies.report_and_check(scout.group, scout.number, 1, 10.0, check=False)
    searcher.studies.tell(scout.group, scout.number, TrialState.PRUNED)
    searcher.on_trial_complete("t0", {"dev_score": 10.0})
    assert searcher.studies.state(scout.group, scout.number) == TrialState.PRUNED
    following = suggested(searcher, "t1")
    assert (following.group, following.restart) == ("soft", 0)


def test_a_scout_that_failed_fails_its_configuration_and_runs_no_other_restart(tmp_path):
    searcher = searcher_for(tmp_path, space(restarts=2))
    scout = suggested(searcher, "t0")
    searcher.on_trial_complete("t0", None, error=True)
    assert searcher.studies.state(scout.group, scout.number) == TrialState.FAIL
    assert suggested(searcher, "t1").group == "soft"


def test_the_searcher_says_finished_once_every_planned_trial_has_ended(tmp_path):
    searcher = searcher_for(tmp_path, space(restarts=1))
    for index in range(4):
        trial_id = f"t{index}"
        finish(searcher, trial_id, suggested(searcher, trial_id))
    assert suggested(searcher, "t4") == Searcher.FINISHED


def test_a_restored_searcher_adopts_a_configuration_asked_after_its_last_save(tmp_path):
    searcher = searcher_for(tmp_path, space(restarts=1), concurrency=2)
    first = suggested(searcher, "t0")
    searcher.save(str(tmp_path / "searcher.pkl"))
    lost = suggested(searcher, "t1")  # asked of Optuna, then the driver was killed before the next save
    restored = RestartSearcher(searcher.space, searcher.studies, 2)
    restored.restore(str(tmp_path / "searcher.pkl"))
    finish(restored, "t0", first)
    again = suggested(restored, "t2")
    assert (again.config_id, again.params) == (lost.config_id, lost.params)


# --- the pruning scheduler ---------------------------------------------------------------------------------------

MEDIAN = {"type": "median", "startup": 1, "warmup_epochs": 2}


def tune_trial(config: dict) -> Trial:
    return Trial("SweepTrial", config=config, stub=True)


@pytest.fixture
def pruning(tmp_path):
    """A searcher and a scheduler on the same studies, with the first ce configuration complete at 80 every epoch
    and the first soft configuration's scout suggested."""
    searcher = searcher_for(tmp_path, space(MEDIAN, restarts=2), concurrency=4)
    scheduler = OptunaPruningScheduler(searcher.studies)
    return searcher, scheduler


def scout_of(searcher: RestartSearcher, group: str, trial_id: str) -> Trial:
    """The next scout of `group`; the trials suggested before it end at once (other groups' scouts fail)."""
    while True:
        config = searcher.suggest(trial_id)
        meta = TrialMeta.of(config)
        if meta.group == group and meta.is_scout:
            return tune_trial(config)
        searcher.on_trial_complete(trial_id, None, error=True)


def complete(scheduler, searcher, trial: Trial, trial_id: str, scores) -> list[str]:
    decisions = [scheduler.on_trial_result(None, trial, {"epoch": e, "dev_score": s}) for e, s in enumerate(scores, 1)]
    searcher.on_trial_complete(trial_id, {"dev_score": max(scores)})
    return decisions


def test_a_scout_below_the_median_after_warmup_is_stopped_and_its_configuration_pruned(pruning):
    searcher, scheduler = pruning
    leader = scout_of(searcher, "soft", "a")
    assert complete(scheduler, searcher, leader, "a", [80, 80, 80, 80]) == [TrialScheduler.CONTINUE] * 4
    behind = scout_of(searcher, "soft", "b")
    decisions = [scheduler.on_trial_result(None, behind, {"epoch": e, "dev_score": 10.0}) for e in (1, 2)]
    assert decisions == [TrialScheduler.CONTINUE, TrialScheduler.STOP]  # at least the 2 warm-up epochs
    meta = TrialMeta.of(behind.config)
    assert searcher.studies.state(meta.group, meta.number) == TrialState.PRUNED


def test_the_last_epoch_is_reported_but_never_pruned(pruning):
    searcher, scheduler = pruning
    complete(scheduler, searcher, scout_of(searcher, "soft", "a"), "a", [80, 80, 80, 80])
    late = scout_of(searcher, "soft", "b")
    meta = TrialMeta.of(late.config)
    for epoch in range(1, EPOCHS):  # never pruned before the end, although below: report only
        searcher.studies.report_and_check(meta.group, meta.number, epoch, 90.0, check=False)
    assert scheduler.on_trial_result(None, late, {"epoch": EPOCHS, "dev_score": 10.0}) == TrialScheduler.CONTINUE
    assert searcher.studies.frozen(meta.group, meta.number).intermediate_values[EPOCHS] == 10.0


def test_restarts_other_than_the_scout_are_neither_reported_nor_pruned(pruning):
    searcher, scheduler = pruning
    scout = scout_of(searcher, "ce", "a")
    complete(scheduler, searcher, scout, "a", [80, 80, 80, 80])
    restart = tune_trial(searcher.suggest("b"))
    meta = TrialMeta.of(restart.config)
    assert meta.restart == 1
    assert scheduler.on_trial_result(None, restart, {"epoch": 2, "dev_score": 0.0}) == TrialScheduler.CONTINUE
    assert searcher.studies.frozen(meta.group, meta.number).intermediate_values == {e: 80 for e in range(1, 5)}


def test_a_scout_pruned_before_its_driver_was_killed_stops_again_at_the_same_epoch(pruning):
    searcher, scheduler = pruning
    complete(scheduler, searcher, scout_of(searcher, "soft", "a"), "a", [80, 80, 80, 80])
    behind = scout_of(searcher, "soft", "b")
    for epoch in (1, 2):
        scheduler.on_trial_result(None, behind, {"epoch": epoch, "dev_score": 10.0})
    # The restored experiment had it running at epoch 1: it repeats epoch 1, then stops at 2 as before.
    assert scheduler.on_trial_result(None, behind, {"epoch": 1, "dev_score": 10.0}) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, behind, {"epoch": 2, "dev_score": 10.0}) == TrialScheduler.STOP


def test_a_result_without_the_spaces_metric_names_it(pruning):
    searcher, scheduler = pruning
    with pytest.raises(KeyError, match="reported no 'dev_score'"):
        scheduler.on_trial_result(None, scout_of(searcher, "ce", "a"), {"epoch": 1, "dev_f1": 3.0})
