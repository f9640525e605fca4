"""`python -m orchestrator.report OUT`: a finished sweep's tables with intervals and a verdict per row, and plots.

Per row of Tables 1 and 2: the chosen configuration's dev mean ± standard deviation over its finished
restarts, the chosen checkpoint's test score with a 95% bootstrap interval over test sentences, and its
difference to the baseline (CE) row with a paired bootstrap interval, p-value and verdict
(orchestrator/significance.py). The test split is read only for the checkpoints the sweep chose, which it
has already scored; their per-sentence statistics are kept in OUT/report/ so that a rerun reads it no more.
Writes OUT/report.md, OUT/report.json and the figures of orchestrator/plots.py (OUT/report/*.png), and logs
them to the sweep's parent MLflow run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from orchestrator import plots
from orchestrator.outdir import REPORT_DIR, REPORT_STEM, SUMMARY_STEM, TEST_RECORD, StateError, SweepState
from orchestrator.significance import (
    Resamples,
    interval,
    paired_comparison,
    restart_comparison,
    restart_interval,
)

BASELINE_PROCEDURE = "ce"


class ReportError(RuntimeError):
    """A directory that holds no finished, test-scored sweep (exit status 2)."""


def build_report(
    out_dir: Path, resamples: int = 1000, level: float = 0.95, seed: int = 0, log=print
) -> tuple[dict, list]:
    """The report, and the curves read from MLflow for it, which write_report's figures draw."""
    from trainer.metrics import SCORE_FROM_STATISTICS

    summary = _read_json(out_dir / f"{SUMMARY_STEM}.json", "a finished sweep's summary")
    if not summary.get("test_scored"):
        raise ReportError(f"{out_dir}: the sweep ran with --no-test; rerun it without to score the chosen rows")
    record = _read_json(out_dir / TEST_RECORD, "the test scores of the chosen checkpoints")
    chosen = sorted({row["chosen"] for row in summary["rows"] if row["chosen"]})
    if not chosen:
        raise ReportError(f"{out_dir}: no row has a chosen checkpoint (see {SUMMARY_STEM}.md)")
    trials = {trial["key"]: trial for trial in summary["trials"]}
    # Every restart of each chosen configuration, scored on test only now that selection is final.
    restarts_of = {key: _restarts_of(summary["trials"], trials[key]) for key in chosen}
    per_sentence, procedure = {}, {}
    for key in sorted({k for keys in restarts_of.values() for k in keys}):
        per_sentence[key], procedure[key] = _cached_statistics(out_dir, trials[key], log)
    metric = record[chosen[0]]["result"]["metric"]
    score = SCORE_FROM_STATISTICS[metric]
    _record_restart_scores(out_dir, restarts_of, per_sentence, score, metric, trials)
    baseline_key = next(
        (row["chosen"] for row in summary["rows"] if procedure.get(row["chosen"]) == BASELINE_PROCEDURE), None
    )
    draws = Resamples.draw(len(next(iter(per_sentence.values()))), resamples, seed)
    curves = _curves(out_dir)
    by_key = {curve.key: curve for curve in curves}
    baseline_cost = _seconds_per_epoch(curves, trials[baseline_key]["config_id"]) if baseline_key else None
    rows = []
    for row in summary["rows"]:
        key = row["chosen"]
        entry = {
            name: row[name] for name in ("table", "row", "label", "chosen", "setting", "restarts", "planned_restarts")
        }
        entry.update(_dev_spread(summary["trials"], key))
        entry["diagnostics"] = _last_diagnostics(by_key.get(key))
        entry["cost"] = _cost(curves, row["row"], trials[key]["config_id"] if key else None, baseline_cost)
        if key is not None:
            # Each row draws its restarts afresh from the seed: a configuration chosen for two rows (Table 1's
            # annealed greedy is one of Table 2's) gets the same interval, difference and p in both.
            restart_rng = np.random.default_rng(seed)
            own = np.stack([per_sentence[k] for k in restarts_of[key]])
            entry["test_restarts"] = [float(score(per_sentence[k].sum(axis=0))) for k in restarts_of[key]]
            entry["test"] = _interval_dict(interval(per_sentence[key], score, draws, level))
            entry["test_over_restarts"] = _interval_dict(restart_interval(own, score, draws, restart_rng, level))
            if key == baseline_key:
                entry["verdict"] = entry["verdict_chosen_restart"] = "baseline"
            elif baseline_key is not None:
                base = np.stack([per_sentence[k] for k in restarts_of[baseline_key]])
                seeds = restart_comparison(own, base, score, draws, restart_rng, level)
                entry["difference"] = _interval_dict(seeds.difference)
                entry.update(p_value=seeds.p_value, verdict=seeds.verdict)
                one = paired_comparison(per_sentence[key], per_sentence[baseline_key], score, draws, level)
                entry["difference_chosen_restart"] = _interval_dict(one.difference)
                entry.update(p_value_chosen_restart=one.p_value, verdict_chosen_restart=one.verdict)
        rows.append(entry)
    report = {
        "sweep": str(out_dir),
        "metric": metric,
        "baseline": baseline_key,
        "level": level,
        "resamples": resamples,
        "seed": seed,
        "test_sentences": draws.weights.shape[1],
        "rows": rows,
    }
    return report, curves


def _restarts_of(trials: list[dict], chosen: dict) -> list[str]:
    """The chosen trial and the other restarts of its configuration that ended as it did (the ones its dev mean
    is over), chosen first."""
    others = [t["key"] for t in trials if t["config_id"] == chosen["config_id"] and t["state"] == chosen["state"]]
    return [chosen["key"], *sorted(k for k in others if k != chosen["key"])]


def _cached_statistics(out_dir: Path, trial: dict, log) -> tuple[np.ndarray, str]:
    """A trial's per-sentence test statistics and procedure, computed once and kept in OUT/report/."""
    cache = out_dir / REPORT_DIR
    cache.mkdir(exist_ok=True)
    stored = cache / f"{trial['key']}.test.npz"
    if not stored.exists():
        log(f"per-sentence test statistics of {trial['key']} (after selection)")
        np.savez(stored, **_test_statistics(trial["checkpoint_dir"]))
    with np.load(stored) as saved:
        return saved["statistics"], str(saved["procedure"])


def _record_restart_scores(out_dir: Path, restarts_of: dict, per_sentence: dict, score, metric: str, trials) -> None:
    """Adds the restarts scored for the report to OUT/test_scores.json, which holds every test evaluation made;
    marked as made after selection (the rows' choices were made on dev before any of them)."""
    path = out_dir / TEST_RECORD
    record = json.loads(path.read_text())
    for keys in restarts_of.values():
        for key in keys:
            if key not in record:
                result = {"metric": metric, metric: float(score(per_sentence[key].sum(axis=0)))}
                record[key] = {"checkpoint_dir": trials[key]["checkpoint_dir"], "rows": [], "after_selection": True,
                               "result": result}  # fmt: skip
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    partial.replace(path)


def _seconds_per_epoch(curves: list, config_id: str) -> float | None:
    """The mean epoch time (training and dev scoring, as the sweep ran it) over a configuration's restarts."""
    seconds = [value for curve in curves if curve.key.rsplit("-r", 1)[0] == config_id for _, value in curve.seconds]
    return statistics.fmean(seconds) if seconds else None


def _cost(curves: list, row: str, config_id: str | None, baseline: float | None) -> dict:
    """What a row cost: its chosen configuration's seconds per epoch (and that over CE's), and the trainer-hours
    of every trial of the row, pruned ones included: the price of its search."""
    per_epoch = _seconds_per_epoch(curves, config_id) if config_id else None
    search = sum(value for curve in curves if row in curve.rows for _, value in curve.seconds)
    ratio = per_epoch / baseline if per_epoch is not None and baseline else None
    return {"seconds_per_epoch": per_epoch, "times_ce": ratio, "search_hours": search / 3600}


def _interval_dict(value) -> dict:
    return {"score": value.estimate, "low": value.low, "high": value.high}


def _test_statistics(checkpoint_dir: str) -> dict:
    """The chosen checkpoint's per-sentence test statistics and procedure, from wherever the storage keeps it."""
    from ray.tune import Checkpoint

    from trainer import checkpoint, sentence_statistics

    with Checkpoint(checkpoint_dir).as_directory() as directory:
        best = Path(directory) / "best.pt"
        statistics = sentence_statistics(best, split="test", log=lambda _: None)["statistics"]
        return {"statistics": statistics, "procedure": checkpoint.load(best)["config"]["procedure"]["name"]}


def _curves(out_dir: Path) -> list:
    state = _sweep_state(out_dir)
    return plots.read_curves(state.tracking_uri, state.experiment_id, state.parent_run_id)


def _last_diagnostics(curve) -> dict:
    """The chosen trial's credit-assignment diagnostics at its last epoch, if it logged them (opt-in)."""
    if curve is None:
        return {}
    return {name: getattr(curve, name)[-1][1] for name in plots.DIAGNOSTICS if getattr(curve, name)}


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ReportError(f"{path} not found: {path.parent} does not hold {what}")
    return json.loads(path.read_text())


def _dev_spread(trials: list[dict], key: str | None) -> dict:
    """Dev mean ± sample standard deviation over the chosen configuration's finished restarts."""
    if key is None:
        return {"dev_mean": None, "dev_std": None, "dev_restarts": 0}
    config_id = next(t["config_id"] for t in trials if t["key"] == key)
    state = next(t["state"] for t in trials if t["key"] == key)
    scores = [t["best_dev"] for t in trials if t["config_id"] == config_id and t["state"] == state]
    std = statistics.stdev(scores) if len(scores) > 1 else None
    return {"dev_mean": statistics.fmean(scores), "dev_std": std, "dev_restarts": len(scores)}


def markdown(report: dict) -> str:
    metric, level = report["metric"], report["level"]
    percent = f"{100 * level:g}%"
    lines = [
        f"Test {metric} over {report['test_sentences']} test sentences, {report['resamples']} bootstrap resamples, "
        f"{percent} intervals. chosen: the restart chosen on dev (the paper's protocol), interval over sentences; "
        "over restarts: the mean of the chosen configuration's restarts, each scored on test after selection, "
        "interval over restarts and sentences (two-level bootstrap); Δ vs CE, p and verdict: that mean against "
        "CE's, so that seed variance is in them (in brackets where it differs: the verdict of the chosen restarts "
        "alone, paired over sentences). setting: k and α of the chosen configuration. dev: its mean ± std over its "
        "restarts. s/epoch: its mean "
        "epoch time in the sweep (training and dev scoring), and that over CE's; search h: trainer-hours of "
        "every trial of the row, pruned ones included.",
    ]
    for table in sorted({row["table"] for row in report["rows"]}):
        lines += [
            "",
            f"Table {table}",
            "",
            f"| row | setting | dev {metric} (mean ± std, n) | test, chosen [{percent}] | test, over restarts "
            f"[{percent}] | Δ vs CE [{percent}] | p | verdict | s/epoch (× CE) | search h |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in (r for r in report["rows"] if r["table"] == table):
            verdict = row.get("verdict", "-")
            if row.get("verdict_chosen_restart") not in (None, "baseline", verdict):
                verdict += f" (chosen restarts alone: {row['verdict_chosen_restart']})"
            cells = [
                row["label"],
                row.get("setting") or "-",
                _dev_text(row),
                _interval_text(row.get("test")),
                _interval_text(row.get("test_over_restarts")),
                _interval_text(row.get("difference"), signed=True),
                _p_text(row.get("p_value")),
                verdict,
                _cost_text(row.get("cost") or {}),
                _hours_text(row.get("cost") or {}),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    measured = [row for row in report["rows"] if row.get("diagnostics")]
    if measured:
        lines += [
            "",
            "Credit assignment (opt-in diagnostics of the chosen restart, last epoch): credit_norm is the gradient "
            "that later steps send back to earlier steps' scores (0 for the hard procedures); gradient_variance "
            "is the parameter gradient's variance over noise draws (0 for the deterministic ones).",
            "",
            "| table | row | credit_norm | gradient_variance |",
            "|---|---|---|---|",
        ]
        for row in measured:
            values = [_diagnostic_text(row["diagnostics"].get(name)) for name in plots.DIAGNOSTICS]
            lines.append(f"| {row['table']} | {row['label']} | {values[0]} | {values[1]} |")
    return "\n".join(lines)


def _cost_text(cost: dict) -> str:
    if cost.get("seconds_per_epoch") is None:
        return "-"
    ratio = f" ({cost['times_ce']:.2f}×)" if cost.get("times_ce") is not None else ""
    return f"{cost['seconds_per_epoch']:.1f}{ratio}"


def _hours_text(cost: dict) -> str:
    return "-" if cost.get("search_hours") is None else f"{cost['search_hours']:.2f}"


def _diagnostic_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _dev_text(row: dict) -> str:
    if row["dev_mean"] is None:
        return "-"
    spread = f" ± {row['dev_std']:.2f}" if row["dev_std"] is not None else ""
    return f"{row['dev_mean']:.2f}{spread} (n={row['dev_restarts']})"


def _interval_text(value: dict | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    number = "{:+.2f}" if signed else "{:.2f}"
    return f"{number.format(value['score'])} [{number.format(value['low'])}, {number.format(value['high'])}]"


def _p_text(p_value: float | None) -> str:
    return "-" if p_value is None else f"{p_value:.3f}"


def write_report(out_dir: Path, report: dict, curves: list) -> list[Path]:
    """report.md, report.json and the figures (report/*.png, curves read from the sweep's MLflow runs)."""
    paths = [out_dir / f"{REPORT_STEM}.md", out_dir / f"{REPORT_STEM}.json"]
    paths[0].write_text(markdown(report) + "\n")
    paths[1].write_text(json.dumps(report, indent=2) + "\n")
    figures = out_dir / REPORT_DIR
    paths += [
        plots.dev_curves(report, curves, figures / "dev_curves.png"),
        plots.schedules(report, curves, figures / "schedules.png"),
        plots.differences(report, figures / "differences.png"),
    ]
    if any(row.get("diagnostics") for row in report["rows"]):
        paths.append(plots.diagnostics(report, curves, figures / "diagnostics.png"))
    return paths


def _sweep_state(out_dir: Path) -> SweepState:
    try:
        return SweepState.read(out_dir)
    except StateError as error:
        raise ReportError(str(error)) from None


def log_to_parent_run(out_dir: Path, paths: list[Path]) -> None:
    from mlflow.tracking import MlflowClient

    state = _sweep_state(out_dir)
    client = MlflowClient(state.tracking_uri)
    for path in paths:
        client.log_artifact(state.parent_run_id, str(path), artifact_path=REPORT_DIR)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.report",
        description="Tables 1 and 2 of a finished sweep: each row's chosen restart with a bootstrap interval over "
        "test sentences; the mean of its configuration's restarts with an interval over restarts and sentences "
        "(two-level bootstrap), its difference to CE, p and verdict; and what the row cost (s/epoch, × CE, "
        "trainer-hours of its search). Reads the test split only once every choice is made on dev, and only for "
        "the rows' chosen configurations (their other restarts are recorded as scored after selection).",
    )
    parser.add_argument("out", type=Path, help="the sweep's output directory (its --out)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.resamples < 100:
            raise ReportError(f"--resamples {args.resamples}: at least 100")
        if not 0.5 <= args.level < 1:
            raise ReportError(f"--level {args.level}: between 0.5 and 1")
        out_dir = args.out.expanduser().resolve()
        report, curves = build_report(out_dir, args.resamples, args.level, args.seed)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    paths = write_report(out_dir, report, curves)
    log_to_parent_run(out_dir, paths)
    print(markdown(report))
    print(f"\nwrote {', '.join(str(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
