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
MEDIAN = {"type": "median", "startup": 1, "warmup_epochs": 2}  # decisions on two seeds (PruningRules.seeds)


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
    """The trial reports `scores` (a scout's to Optuna, as the scheduler does) and completes."""
    if meta.scout:
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
    assert (scout.config_id, scout.restart, scout.scout) == ("ce-000", 0, True)
    finish(searcher, "t0", scout)
    second = suggested(searcher, "t1")
    finish(searcher, "t1", second)
    third = suggested(searcher, "t2")
    assert [(m.config_id, m.restart, m.key, m.scout) for m in (second, third)] == [
        ("ce-000", 1, "ce-000-r1", False),
        ("ce-000", 2, "ce-000-r2", False),
    ]


def test_with_a_pruner_a_configurations_scouts_start_together_ahead_of_everything_else(tmp_path):
    searcher = searcher_for(tmp_path, space(MEDIAN, restarts=3), concurrency=4)
    metas = [suggested(searcher, f"t{i}") for i in range(3)]
    assert [(m.key, m.scout) for m in metas] == [("ce-000-r0", True), ("ce-000-r1", True), ("soft-000-r0", True)]


def test_a_configuration_completes_once_all_its_scouts_have_and_only_then_runs_its_other_restarts(tmp_path):
    searcher = searcher_for(tmp_path, space(MEDIAN, restarts=3), concurrency=4)
    first, second = suggested(searcher, "t0"), suggested(searcher, "t1")
    searcher.studies.report_and_check("ce", 0, 1, 70.0, check=False)
    searcher.on_trial_complete("t0", {"dev_score": 70.0})
    assert searcher.studies.state("ce", 0) == TrialState.RUNNING  # its other scout still runs
    meanwhile = [suggested(searcher, "t2").key, suggested(searcher, "t3").key]  # not ce-000-r2 yet
    searcher.on_trial_complete("t1", {"dev_score": 70.0})
    assert searcher.studies.state("ce", 0) == TrialState.COMPLETE
    assert [first.key, second.key, *meanwhile, suggested(searcher, "t4").key] == [
        "ce-000-r0", "ce-000-r1", "soft-000-r0", "soft-000-r1", "ce-000-r2",
    ]  # fmt: skip


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


def tune_trial(config: dict, trial_id: str | None = None) -> Trial:
    return Trial("SweepTrial", config=config, trial_id=trial_id, stub=True)


@pytest.fixture
def pruning(tmp_path):
    """A searcher and a scheduler on the same studies (median pruner, two scouts, two warm-up epochs)."""
    searcher = searcher_for(tmp_path, space(MEDIAN, restarts=3), concurrency=8)
    return searcher, OptunaPruningScheduler(searcher.studies)


def scouts_of(searcher: RestartSearcher, group: str) -> list[Trial]:
    """The two scouts of the next configuration of `group`, as Tune trials named by the ids they were suggested
    under. What comes first ends at once: other groups' configurations fail, further restarts complete."""
    for attempt in range(20):
        ids = (f"x{attempt}", f"x{attempt}-sibling")
        first = TrialMeta.of(searcher.suggest(ids[0]))
        if not first.scout:
            searcher.on_trial_complete(ids[0], {"dev_score": 0.0})
            continue
        second = TrialMeta.of(searcher.suggest(ids[1]))
        assert (second.config_id, second.restart) == (first.config_id, 1)
        if first.group == group:
            configuration = searcher.state.configurations[first.config_id]
            return [tune_trial(searcher.trial_config(configuration, r), trial_id) for r, trial_id in enumerate(ids)]
        for trial_id in ids:
            searcher.on_trial_complete(trial_id, None, error=True)
    raise AssertionError(f"no configuration of {group} within 20 suggestions")


def result(epoch: int, score: float, gold: float = 0.0) -> dict:
    return {"epoch": epoch, "dev_score": score, "gold_probability": gold}


def run_scouts(scheduler, scouts: list[Trial], scores: list[tuple[float, float]], gold=0.0) -> list[list[str]]:
    """Both scouts report each epoch (first, then second); the decisions per epoch."""
    decisions = []
    for epoch, pair in enumerate(scores, start=1):
        reports = zip(scouts, pair, strict=True)
        decisions.append(
            [scheduler.on_trial_result(None, trial, result(epoch, score, gold)) for trial, score in reports]
        )
    return decisions


def complete_configuration(searcher, scheduler, group: str, scores: list[float], gold=0.0) -> None:
    scouts = scouts_of(searcher, group)
    run_scouts(scheduler, scouts, [(s, s) for s in scores], gold)
    for trial in scouts:
        searcher.on_trial_complete(trial.trial_id, {"dev_score": max(scores)})


def test_the_pruner_compares_the_mean_of_both_scouts_once_both_have_reported_an_epoch(pruning):
    searcher, scheduler = pruning
    complete_configuration(searcher, scheduler, "soft", [80, 80, 80, 80])
    scouts = scouts_of(searcher, "soft")
    meta = TrialMeta.of(scouts[0].config)
    assert scheduler.on_trial_result(None, scouts[0], result(1, 70.0)) == TrialScheduler.CONTINUE
    assert searcher.studies.frozen(meta.group, meta.number).intermediate_values == {}  # waits for the other scout
    scheduler.on_trial_result(None, scouts[1], result(1, 50.0))
    assert searcher.studies.frozen(meta.group, meta.number).intermediate_values == {1: 60.0}


def test_scouts_below_the_median_after_the_warm_up_are_stopped_and_their_configuration_pruned(pruning):
    searcher, scheduler = pruning
    complete_configuration(searcher, scheduler, "soft", [80, 80, 80, 80])
    behind = scouts_of(searcher, "soft")
    decisions = run_scouts(scheduler, behind, [(10, 12), (10, 12)])
    assert decisions == [[TrialScheduler.CONTINUE] * 2, [TrialScheduler.CONTINUE, TrialScheduler.STOP]]
    meta = TrialMeta.of(behind[0].config)
    assert searcher.studies.state(meta.group, meta.number) == TrialState.PRUNED
    # The scout that was ahead stops at its next result.
    assert scheduler.on_trial_result(None, behind[0], result(3, 10.0)) == TrialScheduler.STOP


def test_one_scout_far_behind_is_not_pruned_when_the_mean_of_both_is_at_the_median(pruning):
    searcher, scheduler = pruning
    complete_configuration(searcher, scheduler, "soft", [80, 80, 80, 80])
    mixed = scouts_of(searcher, "soft")
    decisions = run_scouts(scheduler, mixed, [(60, 100), (60, 100), (60, 100)])
    assert all(d == TrialScheduler.CONTINUE for epoch in decisions for d in epoch)


def test_no_verdict_while_every_configuration_compared_is_still_fed_gold(pruning):
    searcher, scheduler = pruning
    complete_configuration(searcher, scheduler, "soft", [80, 80, 80, 80], gold=0.99)
    near_gold = scouts_of(searcher, "soft")
    decisions = run_scouts(scheduler, near_gold, [(10, 10)] * 3, gold=0.98)  # k = 100: ε ≈ 0.98 for 100 epochs
    assert all(d == TrialScheduler.CONTINUE for epoch in decisions for d in epoch)
    meta = TrialMeta.of(near_gold[0].config)
    assert searcher.studies.state(meta.group, meta.number) == TrialState.RUNNING


def test_a_verdict_once_this_configuration_is_fed_its_own_choice(pruning):
    searcher, scheduler = pruning
    complete_configuration(searcher, scheduler, "soft", [80, 80, 80, 80], gold=0.99)
    own_choice = scouts_of(searcher, "soft")
    decisions = run_scouts(scheduler, own_choice, [(10, 10), (10, 10)], gold=0.5)
    assert decisions[-1][-1] == TrialScheduler.STOP


def test_the_last_epoch_is_reported_but_never_pruned(pruning):
    searcher, scheduler = pruning
    complete_configuration(searcher, scheduler, "soft", [80, 80, 80, 80])
    late = scouts_of(searcher, "soft")
    run_scouts(scheduler, late, [(90, 90)] * (EPOCHS - 1))  # never pruned before the end, although below
    decisions = [scheduler.on_trial_result(None, trial, result(EPOCHS, 10.0)) for trial in late]
    assert decisions == [TrialScheduler.CONTINUE] * 2
    meta = TrialMeta.of(late[0].config)
    assert searcher.studies.frozen(meta.group, meta.number).intermediate_values[EPOCHS] == 10.0


def test_restarts_other_than_the_scouts_are_neither_reported_nor_pruned(pruning):
    searcher, scheduler = pruning
    complete_configuration(searcher, scheduler, "ce", [80, 80, 80, 80])
    restart = tune_trial(searcher.suggest("x2"))
    meta = TrialMeta.of(restart.config)
    assert (meta.restart, meta.scout) == (2, False)
    assert scheduler.on_trial_result(None, restart, result(2, 0.0)) == TrialScheduler.CONTINUE
    assert searcher.studies.frozen(meta.group, meta.number).intermediate_values == {e: 80 for e in range(1, 5)}


def test_scouts_pruned_before_their_driver_was_killed_stop_again_at_the_same_epoch(pruning):
    searcher, scheduler = pruning
    complete_configuration(searcher, scheduler, "soft", [80, 80, 80, 80])
    behind = scouts_of(searcher, "soft")
    run_scouts(scheduler, behind, [(10, 10), (10, 10)])
    # The restored experiment had them running at epoch 1: they repeat epoch 1, then stop at 2 as before.
    assert [scheduler.on_trial_result(None, t, result(1, 10.0)) for t in behind] == [TrialScheduler.CONTINUE] * 2
    assert [scheduler.on_trial_result(None, t, result(2, 10.0)) for t in behind] == [TrialScheduler.STOP] * 2


def test_a_result_without_the_spaces_metric_names_it(pruning):
    searcher, scheduler = pruning
    with pytest.raises(KeyError, match="reported no 'dev_score'"):
        scheduler.on_trial_result(None, scouts_of(searcher, "ce")[0], {"epoch": 1, "dev_f1": 3.0})
