"""The shipped smoke sweep end to end on a real local Ray, real Optuna studies and a real SQLite MLflow store.

The sweep runs twice on the same output directory: first with --no-test while the
test split does not exist at all (so training and selection provably never read it),
then, with the test file written, as a plain rerun that must train nothing and only
score the chosen checkpoints on test.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
from types import SimpleNamespace

import pytest
from sweep_helpers import (
    SMOKE,
    client,
    configuration_runs,
    data_overrides,
    dev_history,
    run_main,
    summary,
    sweep_state,
    trial_runs,
    write_slices,
)

from orchestrator import report, screenshots, tracking
from orchestrator.selection import TEST_RECORD
from orchestrator.space import load_space


@pytest.fixture(scope="module")
def ray_instance():
    from sweep_helpers import start_ray

    ray = start_ray()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def sweep(ray_instance, conll2003_en, tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    paths = write_slices(conll2003_en, root / "data", with_test=False)
    out = root / "out"
    diagnostics = {"enabled": "true", "sentences": "16", "draws": "2"}  # small: they run after every epoch
    overrides = data_overrides(paths)
    for name, value in diagnostics.items():
        overrides += ["--set", f"base.diagnostics.{name}={value}"]
    argv = [SMOKE, "--out", out, *overrides]
    dev_only = run_main([*argv, "--no-test"])
    dev_only_summary = summary(out) if dev_only.code == 0 else None
    runs_after_dev_only = {run.info.run_id for run in trial_runs(out) + configuration_runs(out)}
    write_slices(conll2003_en, root / "data")
    with_test = run_main(argv)
    return SimpleNamespace(
        out=out,
        dev_only=dev_only,
        dev_only_summary=dev_only_summary,
        with_test=with_test,
        runs_after_dev_only=runs_after_dev_only,
        space=load_space(SMOKE, overrides[1::2]),
    )


def test_sweep_without_a_test_split_trains_and_selects(sweep):
    assert sweep.dev_only.code == 0, sweep.dev_only.stderr
    result = sweep.dev_only_summary
    assert not result["test_scored"]
    assert all(row["chosen"] for row in result["rows"])
    assert {t["state"] for t in result["trials"]} <= {"COMPLETE", "PRUNED"}


STANDING = re.compile(r"\[(\d+)/(\d+) trials, (\d+) pruned, [\d.]+ min(, ~\d+ min left)?\]$")
EFFICIENCY = re.compile(r"^sweep efficiency ([\d.]+): (\d+) trainer seconds", re.MULTILINE)


def test_every_trial_line_ends_with_trials_finished_of_planned_and_pruned(sweep):
    standings = [STANDING.search(line) for line in sweep.dev_only.trial_lines()]
    assert all(standings), sweep.dev_only.trial_lines()
    finished = [int(match[1]) for match in standings]
    assert finished == list(range(1, len(finished) + 1))
    trials = summary(sweep.out)["trials"]
    last = standings[-1]
    assert (int(last[2]), int(last[3])) == (len(trials), sum(t["state"] == "PRUNED" for t in trials))


def test_the_sweep_prints_its_efficiency_and_logs_it_to_the_parent_run(sweep):
    printed = EFFICIENCY.search(sweep.dev_only.stdout)
    assert printed, sweep.dev_only.stdout
    efficiency, trainer_seconds = float(printed[1]), int(printed[2])
    assert 0 < efficiency <= 1
    epoch_seconds = [m.value for run in trial_runs(sweep.out) for m in client(sweep.out).get_metric_history(
        run.info.run_id, "seconds")]  # fmt: skip
    assert trainer_seconds == pytest.approx(sum(epoch_seconds), abs=1)
    history = client(sweep.out).get_metric_history(sweep_state(sweep.out).parent_run_id, "sweep_efficiency")
    assert history[0].value == pytest.approx(efficiency, abs=0.005)


def test_a_rerun_that_trains_nothing_reports_no_trainer_seconds(sweep):
    printed = EFFICIENCY.search(sweep.with_test.stdout)
    assert printed and int(printed[2]) == 0, sweep.with_test.stdout
    history = client(sweep.out).get_metric_history(sweep_state(sweep.out).parent_run_id, "sweep_trainer_seconds")
    assert [m.value for m in history][-1] == 0


def test_every_trial_has_one_mlflow_run(sweep):
    keys = [run.data.tags["trial_key"] for run in trial_runs(sweep.out)]
    trials = [t["key"] for t in summary(sweep.out)["trials"]]
    assert sorted(keys) == sorted(trials)
    assert len(set(keys)) == len(keys)


def test_trial_runs_hold_hyperparameters_row_tags_and_epoch_metrics(sweep):
    for run in trial_runs(sweep.out):
        params, tags = run.data.params, run.data.tags
        assert {"procedure.name", "procedure.k", "procedure.alpha.mode", "optim.lr", "seed", "data.train_path"} <= set(
            params
        )
        assert params["optim.epochs"] == "3"
        assert {"config_id", "restart", "group", "rows", "state", "pruned", "best_checkpoint"} <= set(tags)
        for row in tags["rows"].split(","):
            assert tags[f"row.{row}"] == "true"
        assert tags["state"] in ("COMPLETE", "PRUNED")
        history = client(sweep.out).get_metric_history
        epochs = int(tags["epochs_run"])
        soft = params["procedure.name"] in ("soft_greedy", "soft_sample")  # the others have no α
        for metric in ("train_loss", "dev_score", "dev_f1", "gold_probability", "seconds") + ("alpha",) * soft:
            assert [m.step for m in history(run.info.run_id, metric)] == list(range(1, epochs + 1)), metric
        assert soft or history(run.info.run_id, "alpha") == []


def test_restart_runs_nest_in_one_run_per_configuration_under_the_sweep_run(sweep):
    parent = sweep_state(sweep.out).parent_run_id
    configurations = {run.data.tags["config_id"]: run for run in configuration_runs(sweep.out)}
    assert len(configurations) == len(configuration_runs(sweep.out))
    assert all(run.data.tags["mlflow.parentRunId"] == parent for run in configurations.values())
    for run in trial_runs(sweep.out):
        assert run.data.tags["mlflow.parentRunId"] == configurations[run.data.tags["config_id"]].info.run_id


def test_a_configuration_run_holds_its_restarts_parameters_without_the_seed(sweep):
    configurations = {run.data.tags["config_id"]: run for run in configuration_runs(sweep.out)}
    for run in trial_runs(sweep.out):
        shared = {name: value for name, value in run.data.params.items() if name != "seed"}
        assert configurations[run.data.tags["config_id"]].data.params == shared


def test_a_configuration_run_holds_the_mean_and_std_of_its_restarts_dev_scores_per_epoch(sweep):
    history = client(sweep.out).get_metric_history
    restarts: dict[str, list] = {}
    for run in trial_runs(sweep.out):
        restarts.setdefault(run.data.tags["config_id"], []).append(run)
    for configuration in configuration_runs(sweep.out):
        members = restarts[configuration.data.tags["config_id"]]
        by_epoch: dict[int, list[float]] = {}
        for run in members:
            for point in history(run.info.run_id, "dev_score"):
                by_epoch.setdefault(point.step, []).append(point.value)
        means = {m.step: m.value for m in history(configuration.info.run_id, "dev_score_mean")}
        stds = {m.step: m.value for m in history(configuration.info.run_id, "dev_score_std")}
        assert len(history(configuration.info.run_id, "dev_score_mean")) == len(by_epoch)  # once per epoch
        assert means == pytest.approx({epoch: statistics.fmean(v) for epoch, v in by_epoch.items()})
        assert stds == pytest.approx({epoch: statistics.stdev(v) for epoch, v in by_epoch.items() if len(v) > 1})
        assert configuration.data.tags["restarts"] == str(len(members))
        assert configuration.info.status == "FINISHED"


def test_each_trial_run_names_the_node_it_ran_on_and_one_attempt(sweep):
    import ray

    node = ray.get_runtime_context().get_node_id()
    for run in trial_runs(sweep.out):
        assert run.data.tags["nodes"] == node
        assert run.data.tags["attempts"] == "1"


def test_chosen_restart_of_each_row_has_the_best_dev_score(sweep):
    """Recomputed from the MLflow store alone: per row, best configuration by mean dev, then its best restart."""
    runs = trial_runs(sweep.out)
    best_dev = {run.data.tags["trial_key"]: max(m.value for m in dev_history(sweep.out, run)) for run in runs}
    chosen = {row["row"]: row["chosen"] for row in summary(sweep.out)["rows"]}
    for row in sweep.space.rows:
        members = [run for run in runs if run.data.tags.get(f"row.{row}") == "true"]
        eligible = [r for r in members if r.data.tags["state"] == "COMPLETE"] or members
        by_config: dict[str, list[str]] = {}
        for run in eligible:
            by_config.setdefault(run.data.tags["config_id"], []).append(run.data.tags["trial_key"])
        best_config = max(by_config.values(), key=lambda keys: statistics.fmean(best_dev[k] for k in keys))
        assert chosen[row] in best_config
        assert best_dev[chosen[row]] == max(best_dev[k] for k in best_config)


def test_rerun_of_a_finished_sweep_trains_nothing_and_duplicates_no_run(sweep):
    assert sweep.with_test.code == 0, sweep.with_test.stderr
    assert sweep.with_test.trial_lines() == []
    runs = trial_runs(sweep.out) + configuration_runs(sweep.out)
    assert {run.info.run_id for run in runs} == sweep.runs_after_dev_only


def test_selection_scores_only_the_chosen_checkpoints_on_test(sweep):
    chosen = {row["chosen"] for row in summary(sweep.out)["rows"]}
    record = json.loads((sweep.out / TEST_RECORD).read_text())
    assert {key for key, entry in record.items() if not entry.get("after_selection")} == chosen
    for entry in record.values():
        assert entry["result"]["metric"] == "f1"
    for key in chosen:
        assert record[key]["result"]["split"] == "test" and record[key]["result"]["checkpoint"].endswith("best.pt")
    scored_runs = {r.data.tags["trial_key"] for r in trial_runs(sweep.out) if "test_f1" in r.data.metrics}
    assert scored_runs == chosen


def restarts_of_chosen(out) -> set[str]:
    """Every restart, as the summary lists them, of each row's chosen configuration that ended as the chosen one."""
    trials = summary(out)["trials"]
    chosen = [t for t in trials if t["key"] in {row["chosen"] for row in summary(out)["rows"]}]
    return {t["key"] for c in chosen for t in trials if t["config_id"] == c["config_id"] and t["state"] == c["state"]}


def test_the_other_restarts_of_the_chosen_configurations_are_scored_on_test_only_after_selection(sweep):
    record = json.loads((sweep.out / TEST_RECORD).read_text())
    after = {key for key, entry in record.items() if entry.get("after_selection")}
    assert after == restarts_of_chosen(sweep.out) - {row["chosen"] for row in summary(sweep.out)["rows"]}
    assert all(record[key]["rows"] == [] for key in after)


def test_test_scores_reach_the_summary_and_the_parent_run(sweep):
    result = summary(sweep.out)
    assert result["test_scored"]
    state = sweep_state(sweep.out)
    parent = client(sweep.out).get_run(state.parent_run_id)
    for row in result["rows"]:
        assert row["test"] is not None
        assert parent.data.metrics[f"{row['row']}.test"] == pytest.approx(row["test"])
    artifacts = {a.path for a in client(sweep.out).list_artifacts(state.parent_run_id)}
    assert {"summary.md", "summary.csv", "summary.json"} <= artifacts
    assert parent.info.status == "FINISHED"


def test_summary_is_written_as_markdown_csv_and_json_and_printed(sweep):
    for name in ("summary.md", "summary.csv", "summary.json"):
        assert (sweep.out / name).stat().st_size > 0
    table = (sweep.out / "summary.md").read_text().strip()
    assert table in sweep.with_test.stdout
    assert "mlflow ui --backend-store-uri sqlite:///" in sweep.with_test.stdout


def test_the_report_tables_equal_what_mlflow_holds(sweep):
    assert "Table 1" in sweep.with_test.stdout and "verdict" in sweep.with_test.stdout
    analysis = json.loads((sweep.out / "report.json").read_text())
    runs = {run.data.tags["trial_key"]: run for run in trial_runs(sweep.out)}
    for row in analysis["rows"]:
        chosen = runs[row["chosen"]]
        assert row["test"]["score"] == pytest.approx(chosen.data.metrics["test_f1"])
        assert row["test"]["low"] <= row["test"]["score"] <= row["test"]["high"]
        restarts = [
            run.data.metrics["best_dev_score"]
            for run in runs.values()
            if run.data.tags["config_id"] == chosen.data.tags["config_id"] and run.data.tags["state"] == "COMPLETE"
        ]
        assert row["dev_restarts"] == len(restarts)
        assert row["dev_mean"] == pytest.approx(statistics.fmean(restarts))
        if len(restarts) > 1:
            assert row["dev_std"] == pytest.approx(statistics.stdev(restarts))


def test_the_report_compares_every_row_with_the_ce_row_on_paired_resamples(sweep):
    analysis = json.loads((sweep.out / "report.json").read_text())
    verdicts = {row["row"]: row["verdict"] for row in analysis["rows"]}
    assert verdicts["ce"] == "baseline"
    assert analysis["baseline"] == next(row["chosen"] for row in analysis["rows"] if row["row"] == "ce")
    for row in analysis["rows"]:
        if row["row"] != "ce":
            assert row["verdict"] in ("better than CE", "worse than CE", "indistinguishable")
            assert row["difference"]["low"] <= row["difference"]["score"] <= row["difference"]["high"]
            assert 0 < row["p_value"] <= 1


def test_the_report_reads_test_only_for_the_chosen_configurations_restarts(sweep):
    read = {path.name.removesuffix(".test.npz") for path in (sweep.out / "report").glob("*.test.npz")}
    assert read == restarts_of_chosen(sweep.out)


def test_the_report_interval_over_restarts_is_around_their_mean_and_the_difference_is_of_means(sweep):
    analysis = json.loads((sweep.out / "report.json").read_text())
    ce = next(row for row in analysis["rows"] if row["row"] == "ce")
    for row in analysis["rows"]:
        over = row["test_over_restarts"]
        assert over["score"] == pytest.approx(statistics.fmean(row["test_restarts"]))
        assert over["low"] <= over["score"] <= over["high"]
        assert row["test_restarts"][0] == pytest.approx(row["test"]["score"])  # the chosen restart first
        if row["row"] != "ce":
            expected = statistics.fmean(row["test_restarts"]) - statistics.fmean(ce["test_restarts"])
            assert row["difference"]["score"] == pytest.approx(expected)
            assert row["verdict_chosen_restart"] in ("better than CE", "worse than CE", "indistinguishable")


def test_a_configuration_chosen_for_two_rows_has_the_same_intervals_and_p_in_both(sweep):
    analysis = json.loads((sweep.out / "report.json").read_text())
    by_choice = {}
    for row in analysis["rows"]:
        by_choice.setdefault(row["chosen"], []).append(row)
    shared = [rows for rows in by_choice.values() if len(rows) > 1]
    assert shared  # the smoke space's annealed greedy row is one of its k rows
    for first, *others in shared:
        for other in others:
            for name in ("test_over_restarts", "difference", "p_value"):
                assert other.get(name) == first.get(name)


def test_the_report_cost_columns_are_the_trials_own_epoch_seconds_in_mlflow(sweep):
    analysis = json.loads((sweep.out / "report.json").read_text())
    runs = trial_runs(sweep.out)
    seconds = {run.data.tags["trial_key"]: [m.value for m in client(sweep.out).get_metric_history(
        run.info.run_id, "seconds")] for run in runs}  # fmt: skip
    config_of = {run.data.tags["trial_key"]: run.data.tags["config_id"] for run in runs}
    rows_of = {run.data.tags["trial_key"]: run.data.tags["rows"].split(",") for run in runs}

    def per_epoch(chosen: str) -> float:
        return statistics.fmean(v for key, values in seconds.items() if config_of[key] == config_of[chosen]
                                for v in values)  # fmt: skip

    ce_cost = per_epoch(next(row["chosen"] for row in analysis["rows"] if row["row"] == "ce"))
    for row in analysis["rows"]:
        cost = row["cost"]
        assert cost["seconds_per_epoch"] == pytest.approx(per_epoch(row["chosen"]))
        assert cost["times_ce"] == pytest.approx(per_epoch(row["chosen"]) / ce_cost)
        searched = sum(v for key, values in seconds.items() if row["row"] in rows_of[key] for v in values)
        assert cost["search_hours"] == pytest.approx(searched / 3600)


def test_the_report_is_logged_to_the_parent_run(sweep):
    state = sweep_state(sweep.out)
    artifacts = {a.path for a in client(sweep.out).list_artifacts(state.parent_run_id, "report")}
    assert {"report/report.md", "report/report.json"} <= artifacts
    assert {"report/dev_curves.png", "report/schedules.png", "report/differences.png"} <= artifacts


def test_the_report_command_refuses_a_folder_without_a_sweep(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    assert str(tmp_path / "summary.json") in capsys.readouterr().err


def test_the_experiment_opens_on_its_runs_in_the_mlflow_ui(sweep):
    state = sweep_state(sweep.out)
    experiment = client(sweep.out).get_experiment(state.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # not the GenAI overview
    assert f"#/experiments/{state.experiment_id}/runs" in sweep.with_test.stdout


def test_the_report_shows_the_chosen_restarts_credit_assignment_diagnostics(sweep):
    analysis = json.loads((sweep.out / "report.json").read_text())
    runs = {run.data.tags["trial_key"]: run for run in trial_runs(sweep.out)}
    for row in analysis["rows"]:
        chosen = runs[row["chosen"]]
        assert row["diagnostics"]["credit_norm"] == pytest.approx(chosen.data.metrics["credit_norm"])
        hard = chosen.data.params["procedure.name"] == "ce"
        assert (row["diagnostics"]["credit_norm"] == 0) == hard  # soft argmax passes credit back; CE feeds gold
    assert "Credit assignment" in (sweep.out / "report.md").read_text()
    parent = sweep_state(sweep.out).parent_run_id
    assert "report/diagnostics.png" in {a.path for a in client(sweep.out).list_artifacts(parent, "report")}


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_configurations_link_the_sweep_prints_shows_them_in_a_real_browser(sweep):
    state = sweep_state(sweep.out)
    configurations = {run.info.run_id: run.data.tags["config_id"] for run in configuration_runs(sweep.out)}
    with screenshots.ui_server(state.tracking_uri) as base:
        links = tracking.ui_links(base, state.experiment_id, list(configurations), "dev_score")
        page = subprocess.run(
            ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=30000",
             "--dump-dom", links["configurations"]],
            capture_output=True, text=True, timeout=screenshots.RENDER_SECONDS, check=True,
        ).stdout  # fmt: skip
    assert f"Comparing {len(configurations)} Runs" in page
    assert all(config_id in page for config_id in configurations.values())
    printed = tracking.ui_links("http://127.0.0.1:5000", state.experiment_id, list(configurations), "dev_score")
    assert printed["configurations"] in sweep.with_test.stdout


def test_the_tune_experiment_is_named_after_the_sweeps_run_so_that_no_two_sweeps_share_its_staging(sweep):
    """Tune stages a driver's experiment in the Ray session's artifacts/<start second>/<name>: two sweeps started
    in the same second on one node with one name shared it, and each saved the other's trials as its own."""
    state = sweep_state(sweep.out)
    assert state.tune_name == f"ray-{state.parent_run_id[:8]}"
    assert (sweep.out / state.tune_name / "tuner.pkl").is_file()
