"""The report's figures (PNG): dev curves per row, the ε and α schedules, the paired differences to CE and,
where the trials logged them, the credit-assignment diagnostics.

The curves come from the sweep's MLflow runs, the same numbers the MLflow UI shows; the differences from
the report (orchestrator/report.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a cluster node or in CI
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)
from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter  # noqa: E402

DIAGNOSTICS = ("credit_norm", "gradient_variance")


@dataclass
class Curve:
    """One trial's per-epoch metric history, as MLflow holds it."""

    key: str
    state: str  # COMPLETE, PRUNED, FAILED
    rows: list[str]
    dev: list[tuple[int, float]]
    gold_probability: list[tuple[int, float]]
    alpha: list[tuple[int, float]]
    credit_norm: list[tuple[int, float]]  # the opt-in diagnostics (trainer/diagnostics.py); empty when off
    gradient_variance: list[tuple[int, float]]
    seconds: list[tuple[int, float]]  # each epoch's training and dev-scoring time, as the trainer measured it


def read_curves(tracking_uri: str, experiment_id: str, parent_run_id: str) -> list[Curve]:
    from mlflow.tracking import MlflowClient

    from orchestrator.tracking import sweep_runs

    client = MlflowClient(tracking_uri)
    runs = sweep_runs(client, experiment_id, parent_run_id)

    def history(run, name: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, name))

    return [
        Curve(
            key=run.data.tags["trial_key"],
            state=run.data.tags.get("state", ""),
            rows=[row for row in run.data.tags.get("rows", "").split(",") if row],
            dev=history(run, "dev_score"),
            gold_probability=history(run, "gold_probability"),
            alpha=history(run, "alpha"),
            **{name: history(run, name) if name in run.data.metrics else [] for name in DIAGNOSTICS},
            seconds=history(run, "seconds"),
        )
        for run in runs
    ]


def dev_curves(report: dict, curves: list[Curve], path: Path) -> Path:
    """One panel per row: every trial of the row thin, the chosen restart bold, a pruned trial's stop marked."""
    rows = report["rows"]
    columns = min(4, len(rows))
    figure, axes = plt.subplots(
        math.ceil(len(rows) / columns), columns, figsize=(4 * columns, 3 * math.ceil(len(rows) / columns)),
        squeeze=False, sharey=True,
    )  # fmt: skip
    for axis, row in zip(axes.flat, rows, strict=False):
        for curve in (c for c in curves if row["row"] in c.rows and c.dev):
            epochs, scores = zip(*curve.dev, strict=True)
            chosen = curve.key == row["chosen"]
            axis.plot(epochs, scores, linewidth=2.5 if chosen else 0.8, color="C3" if chosen else "C0",
                      alpha=1.0 if chosen else 0.6, zorder=3 if chosen else 2)  # fmt: skip
            if curve.state == "PRUNED":
                axis.plot(epochs[-1], scores[-1], marker="x", color="black", markersize=6)
        axis.set_title(f"Table {row['table']}: {row['label']}", fontsize=9)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    for axis in axes[:, 0]:
        axis.set_ylabel(f"dev {report['metric']}")
    for axis in list(axes.flat)[len(rows) :]:
        axis.set_visible(False)
    figure.suptitle("Dev score per epoch: every restart (thin), the chosen one (bold, red), pruned (x)")
    return _save(figure, path)


def schedules(report: dict, curves: list[Curve], path: Path) -> Path:
    """ε (gold probability) and α per epoch of each row's chosen trial."""
    figure, (gold_axis, alpha_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for label, curve in _chosen_curves(report, curves):
        if curve.gold_probability:
            gold_axis.plot(*zip(*curve.gold_probability, strict=True), marker=".", label=label)
        if curve.alpha:
            alpha_axis.plot(*zip(*curve.alpha, strict=True), marker=".", label=label)
    gold_axis.set(title="ε: probability of feeding the gold token", xlabel="epoch", ylim=(-0.02, 1.02))
    alpha_axis.set(title="α of the soft procedures", xlabel="epoch", yscale="log")
    alpha_axis.yaxis.set_major_formatter(ScalarFormatter())
    alpha_axis.yaxis.set_minor_formatter(NullFormatter())
    for axis in (gold_axis, alpha_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    gold_axis.legend(fontsize=7)
    return _save(figure, path)


def differences(report: dict, path: Path) -> Path:
    """Each row's test difference to CE over restarts and sentences, with its two-level bootstrap interval."""
    rows = [row for row in report["rows"] if "difference" in row]
    figure, axis = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.5))
    for position, row in enumerate(rows):
        difference = row["difference"]
        error = [[difference["score"] - difference["low"]], [difference["high"] - difference["score"]]]
        color = {"indistinguishable": "C0"}.get(row["verdict"], "C2" if row["verdict"].startswith("better") else "C3")
        axis.errorbar(difference["score"], position, xerr=error, fmt="o", color=color, capsize=3)
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set_yticks(range(len(rows)), [f"{row['table']}: {row['label']}" for row in rows], fontsize=8)
    axis.invert_yaxis()
    percent = f"{100 * report['level']:g}%"
    axis.set_xlabel(
        f"mean test {report['metric']} over restarts − CE's, {percent} interval over restarts and sentences"
    )
    axis.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def diagnostics(report: dict, curves: list[Curve], path: Path) -> Path:
    """The credit-assignment diagnostics per epoch of each row's chosen trial (rows that logged them)."""
    figure, (credit_axis, variance_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for label, curve in _chosen_curves(report, curves):
        for axis, points in ((credit_axis, curve.credit_norm), (variance_axis, curve.gradient_variance)):
            if points:
                axis.plot(*zip(*points, strict=True), marker=".", label=label)
    credit_axis.set(title="credit_norm: gradient later steps send to earlier scores", xlabel="epoch")
    variance_axis.set(title="gradient_variance over noise draws", xlabel="epoch")
    for axis in (credit_axis, variance_axis):
        axis.set_yscale("symlog", linthresh=1e-6)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    credit_axis.legend(fontsize=7)
    return _save(figure, path)


def _chosen_curves(report: dict, curves: list[Curve]):
    """(legend label, curve) of each row's chosen trial."""
    by_key = {curve.key: curve for curve in curves}
    for row in report["rows"]:
        if row["chosen"] in by_key:
            yield f"{row['table']}: {row['label']}", by_key[row["chosen"]]


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")  # an axis label wider than the figure is not cut off
    plt.close(figure)
    return path
