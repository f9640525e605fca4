"""The paper's protocol (§5): per table row, choose by validation score, then score the choice alone on test.

Within a row the best configuration is the one with the best *mean* dev score
over its finished restarts (a configuration is a setting of k, α, ...; its
restarts are seeds), and within it the restart with the best dev score is
chosen. A failed restart is left out of the mean, so the summary says how many
of the planned restarts each chosen mean is over, and notes a row whose mean
rests on fewer. Only that restart's best-dev checkpoint is scored on test, through
`trainer.evaluate_checkpoint`, the only code that reads the test split; every
such call is recorded in OUT/test_scores.json. Configurations stopped by the
pruner take no part unless a row has nothing else (then the summary says so).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from orchestrator.outdir import SUMMARY_STEM, TEST_RECORD, in_storage
from orchestrator.space import SearchSpace
from orchestrator.trials import Fate


@dataclass
class Outcome:
    """One finished (or not) trial, as selection sees it."""

    key: str
    group: str
    config_id: str
    restart: int
    seed: int
    params: dict
    rows: list[str]
    state: Fate
    epochs: int = 0
    best_dev: float | None = None
    best_epoch: int | None = None
    checkpoint_dir: str | None = None  # Tune's latest checkpoint: best.pt inside is the best-dev model
    setting: str = "-"  # what the row's reader needs to know of the configuration: its k and α, its axis values
    checkpoint: object = field(default=None, repr=False, compare=False)  # the ray.tune.Checkpoint itself


@dataclass
class Choice:
    row: str
    outcome: Outcome | None
    configurations: int  # in the row, pruned or not
    config_mean_dev: float | None = None
    config_restarts: int = 0  # finished restarts of the chosen configuration: its mean is over these
    planned_restarts: int = 0  # the restarts it was to run: the space's, or 1 for a pruned configuration
    trials: int = 0
    pruned: int = 0
    failed: int = 0
    note: str = ""


def choose(space: SearchSpace, outcomes: list[Outcome]) -> dict[str, Choice]:
    """Best configuration by mean dev over its restarts, then its best restart; per row, dev only."""
    sign = 1.0 if space.metric.mode == "max" else -1.0
    choices = {}
    for row in space.rows:
        members = [o for o in outcomes if row in o.rows]
        choice = Choice(
            row=row,
            outcome=None,
            configurations=len({o.config_id for o in members}),
            trials=len(members),
            pruned=sum(o.state == Fate.PRUNED for o in members),
            failed=sum(o.state == Fate.FAILED for o in members),
        )
        eligible = [o for o in members if o.state == Fate.COMPLETE and o.best_dev is not None]
        if not eligible:
            eligible = [o for o in members if o.state == Fate.PRUNED and o.best_dev is not None]
            choice.note = "only pruned trials" if eligible else "no finished trial"
        by_config: dict[str, list[Outcome]] = {}
        for outcome in eligible:
            by_config.setdefault(outcome.config_id, []).append(outcome)
        if by_config:

            def config_score(item: tuple[str, list[Outcome]]) -> tuple[float, str]:
                return (-sign * statistics.fmean(o.best_dev for o in item[1]), item[0])

            cid, restarts = min(by_config.items(), key=config_score)
            choice.outcome = min(restarts, key=lambda o: (-sign * o.best_dev, o.restart))
            choice.config_mean_dev = statistics.fmean(o.best_dev for o in restarts)
            choice.config_restarts = len(restarts)
            choice.planned_restarts = 1 if choice.outcome.state == Fate.PRUNED else space.restarts
            if choice.config_restarts < choice.planned_restarts:
                choice.note = f"mean over {choice.config_restarts} of {choice.planned_restarts} restarts"
        choices[row] = choice
    return choices


def score_on_test(
    choices: dict[str, Choice],
    out_dir: Path,
    evaluate: Callable[[Path], dict],
    log: Callable[[str], None] = print,
) -> dict[str, dict]:
    """Scores each chosen checkpoint on test once (a trial chosen for two rows is scored once).

    `evaluate(best_pt_path)` is trainer.evaluate_checkpoint on the test split. Results are
    recorded in OUT/test_scores.json before they are used, and reused when a finished sweep is rerun.
    """
    record_path = Path(out_dir) / TEST_RECORD
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    scores = {}
    for choice in choices.values():
        outcome = choice.outcome
        if outcome is None or outcome.key in scores:
            continue
        earlier = record.get(outcome.key)
        if earlier is not None and earlier["checkpoint_dir"] == outcome.checkpoint_dir:
            scores[outcome.key] = earlier["result"]
            continue
        with outcome.checkpoint.as_directory() as directory:
            log(f"scoring {outcome.key} (chosen on dev) on test")
            result = evaluate(Path(directory) / "best.pt")
        result = {**result, "checkpoint": in_storage(outcome.checkpoint_dir, "best.pt")}  # a URI on s3:// storage
        record[outcome.key] = {
            "checkpoint_dir": outcome.checkpoint_dir,
            "rows": [row for row, c in choices.items() if c.outcome is not None and c.outcome.key == outcome.key],
            "result": result,
        }
        scores[outcome.key] = result
        partial = record_path.with_suffix(".partial")
        partial.write_text(json.dumps(record, indent=2) + "\n")
        partial.replace(record_path)
    return scores


def summary_rows(space: SearchSpace, choices: dict[str, Choice], scores: dict[str, dict] | None) -> list[dict]:
    rows = []
    for row_id, choice in choices.items():
        row = space.rows[row_id]
        outcome = choice.outcome
        test = None
        if outcome is not None and scores is not None and outcome.key in scores:
            result = scores[outcome.key]
            test = result[result["metric"]]
        rows.append(
            {
                "table": row.table,
                "row": row_id,
                "label": row.label,
                "dev": outcome.best_dev if outcome else None,
                "test": test,
                "chosen": outcome.key if outcome else None,
                "setting": outcome.setting if outcome else "",
                "best_epoch": outcome.best_epoch if outcome else None,
                "config_mean_dev": choice.config_mean_dev,
                "restarts": choice.config_restarts,
                "planned_restarts": choice.planned_restarts,
                "configurations": choice.configurations,
                "trials": choice.trials,
                "pruned": choice.pruned,
                "failed": choice.failed,
                "note": choice.note,
            }
        )
    return rows


SCHEDULE_KEYS = ("procedure.k", "procedure.alpha.mode", "procedure.alpha.alpha0", "procedure.alpha.growth")


def setting_text(flat_config: dict, params: dict) -> str:
    """The configuration as a row's reader needs it: k where the procedure feeds its own choice, α (α0, or
    α0·rate^epoch) where it is soft, then any other axis value by its last name part where that is unambiguous."""
    procedure = flat_config.get("procedure.name", "ce")
    parts = []
    if procedure != "ce":
        k = flat_config["procedure.k"]  # 'always', or a number that a YAML float may hold (10.0)
        parts.append(f"k={k:g}" if isinstance(k, int | float) else f"k={k}")
    if procedure.startswith("soft_"):
        alpha0 = f"{flat_config['procedure.alpha.alpha0']:g}"
        annealed = flat_config["procedure.alpha.mode"] == "annealed"
        parts.append(f"α={alpha0}·{flat_config['procedure.alpha.growth']:g}^epoch" if annealed else f"α={alpha0}")
    others = {key: value for key, value in params.items() if key not in SCHEDULE_KEYS}
    short = [key.rsplit(".", 1)[-1] for key in others]
    names = [s if short.count(s) == 1 else key for s, key in zip(short, others, strict=True)]
    parts += [f"{name}={value}" for name, value in zip(names, others.values(), strict=True)]
    return ", ".join(parts) or "-"


def markdown_table(rows: list[dict], metric: str, test_scored: bool) -> str:
    header = [
        "table", "row", f"dev {metric}", f"test {metric}", "chosen restart", "setting", "restarts", "configs",
        "pruned", "failed",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        test = _number(row["test"]) if test_scored else "not scored"
        cells = [
            row["table"], row["label"], _number(row["dev"]), test, row["chosen"] or "-", row["setting"],
            f"{row['restarts']}/{row['planned_restarts']}" if row["chosen"] else "-", str(row["configurations"]),
            str(row["pruned"]), str(row["failed"]),
        ]  # fmt: skip
        if row["note"]:
            cells[4] += f" ({row['note']})"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def write_summary(out_dir: Path, rows: list[dict], markdown: str, meta: dict) -> list[Path]:
    """summary.md, summary.csv and summary.json in the output directory."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{SUMMARY_STEM}.{ext}" for ext in ("md", "csv", "json")]
    paths[0].write_text(markdown + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["row"])
    writer.writeheader()
    writer.writerows(rows)
    paths[1].write_text(buffer.getvalue())
    paths[2].write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    return paths


def outcome_dict(outcome: Outcome) -> dict:
    return {f.name: getattr(outcome, f.name) for f in fields(outcome) if f.name != "checkpoint"}
