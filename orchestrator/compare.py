"""`python -m orchestrator.compare A B`: two finished sweeps of one space, row by row.

Two questions a single sweep cannot answer need two of them (issue 17):
- does a verdict survive a rerun? Sweep the space twice with disjoint seeds (`--set seed=4` starts the second
  at seed 4) and compare: per row, the configuration each chose and the verdict each gives, by the restart-aware
  rule (over restarts and test sentences) and by the chosen restart's test sentences alone;
- what does the pruner cost? Compare a pruned sweep with the same search unpruned: per row, whether the choice
  or its dev mean changed, and how many trial-epochs each trained.

The unpruned side may be pieced together from several sweeps with `--add-to-b DIR`: a configuration is known
across sweeps by the rows it fills and its setting (k, α, other axis values), and one found in several of B's
folders is taken from the last that has it. So `compare PRUNED PRUNED --add-to-b REST`, where REST ran only the
configurations PRUNED pruned, to the end, with the same seeds, is the unpruned search without training its
other configurations twice (training is deterministic per seed: their curves would be the same).

Reads each folder's summary.json (the trials and the rows' choices) and report.json where it has one (the
verdicts); reads no test data and no MLflow store.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from orchestrator.outdir import REPORT_STEM, SUMMARY_STEM
from orchestrator.trials import Fate


class CompareError(RuntimeError):
    """A folder that holds no finished sweep, or two sweeps of different rows (exit status 2)."""


@dataclass(frozen=True)
class RowChoice:
    """What one side chose for a row: its configuration (rows filled, setting), dev mean over its finished
    restarts, and the report's verdicts where the side has a report."""

    configuration: tuple | None
    dev_mean: float | None
    verdict: str | None = None
    verdict_chosen_restart: str | None = None

    @property
    def setting(self) -> str | None:
        return None if self.configuration is None else self.configuration[1]


@dataclass(frozen=True)
class Side:
    """One side of the comparison: the rows' choices and the trial-epochs trained for them."""

    folders: tuple[Path, ...]
    labels: dict[str, tuple[str, str]]  # row -> (table, label)
    choices: dict[str, RowChoice]
    trial_epochs: int
    trials: int


def configuration_of(trial: dict) -> tuple:
    """A configuration's name across sweeps: the rows it fills and its setting (its config_id is per sweep)."""
    return tuple(sorted(trial["rows"])), trial["setting"]


def read_side(folders: list[Path]) -> Side:
    """The trials of `folders` pooled by configuration (a later folder's configuration replaces an earlier's),
    each row's best configuration by mean dev over its finished restarts, as selection.choose ranks them (a
    sweep's metric is always maximised: space.py)."""
    configurations: dict[tuple, list[dict]] = {}
    labels: dict[str, tuple[str, str]] = {}
    for folder in folders:
        summary = _read_json(folder / f"{SUMMARY_STEM}.json", "a finished sweep's summary")
        labels.update({row["row"]: (row["table"], row["label"]) for row in summary["rows"]})
        pooled: dict[tuple, list[dict]] = {}
        for trial in summary["trials"]:
            pooled.setdefault(configuration_of(trial), []).append(trial)
        configurations.update(pooled)
    choices = {}
    for row in labels:
        candidates = []
        for configuration, trials in configurations.items():
            finished = [t["best_dev"] for t in trials if t["state"] == Fate.COMPLETE and t["best_dev"] is not None]
            if row in configuration[0] and finished:
                candidates.append(RowChoice(configuration, statistics.fmean(finished)))
        best = max(candidates, key=lambda choice: choice.dev_mean, default=None)
        choices[row] = best or RowChoice(configuration=None, dev_mean=None)
    if len(folders) == 1:
        choices = _with_verdicts(folders[0], choices)
    every = [t for trials in configurations.values() for t in trials]
    return Side(tuple(folders), labels, choices, sum(int(t["epochs"]) for t in every), len(every))


def _with_verdicts(folder: Path, choices: dict[str, RowChoice]) -> dict[str, RowChoice]:
    path = folder / f"{REPORT_STEM}.json"
    if not path.is_file():
        return choices
    verdicts = {row["row"]: row for row in json.loads(path.read_text())["rows"]}
    return {
        row: replace(
            choice,
            verdict=verdicts.get(row, {}).get("verdict"),
            verdict_chosen_restart=verdicts.get(row, {}).get("verdict_chosen_restart"),
        )
        for row, choice in choices.items()
    }


def compare(a: Side, b: Side) -> str:
    """The comparison as Markdown: a table of rows, then the trial-epochs of each side and what agreed."""
    if set(a.labels) != set(b.labels):
        raise CompareError(f"the sweeps fill different rows: {sorted(a.labels)} and {sorted(b.labels)}")
    header = [
        "table", "row", "A: setting", "A: dev mean", "B: setting", "B: dev mean", "Δ dev (B − A)", "same choice",
        "A: verdict", "B: verdict", "agree", "A: verdict (chosen restart)", "B: verdict (chosen restart)", "agree",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    agree = {"same choice": 0, "verdict": 0, "verdict (chosen restart)": 0}
    for row, (table, label) in a.labels.items():
        x, y = a.choices[row], b.choices[row]
        same = x.configuration is not None and x.configuration == y.configuration
        delta = y.dev_mean - x.dev_mean if x.dev_mean is not None and y.dev_mean is not None else None
        verdict_agrees = _agree(x.verdict, y.verdict)
        chosen_agrees = _agree(x.verdict_chosen_restart, y.verdict_chosen_restart)
        agree["same choice"] += same
        agree["verdict"] += verdict_agrees == "yes"
        agree["verdict (chosen restart)"] += chosen_agrees == "yes"
        cells = [
            table, label, x.setting or "-", _number(x.dev_mean), y.setting or "-", _number(y.dev_mean),
            _signed(delta), "yes" if same else "no", x.verdict or "-", y.verdict or "-", verdict_agrees,
            x.verdict_chosen_restart or "-", y.verdict_chosen_restart or "-", chosen_agrees,
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    rows = len(a.labels)
    lines += ["", _side_line("A", a), _side_line("B", b)]
    if b.trial_epochs:
        lines.append(f"A trained {a.trial_epochs / b.trial_epochs:.2f}× the trial-epochs of B")
    lines.append(
        f"same choice in {agree['same choice']} of {rows} rows; verdicts agree in {agree['verdict']} of {rows} "
        f"(over restarts and sentences), {agree['verdict (chosen restart)']} of {rows} (chosen restart alone)"
    )
    return "\n".join(lines)


def _side_line(name: str, side: Side) -> str:
    return f"{name}: {', '.join(map(str, side.folders))}: {side.trials} trials, {side.trial_epochs} trial-epochs"


def _agree(x: str | None, y: str | None) -> str:
    if x is None or y is None:
        return "-"
    return "yes" if x == y else "no"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise CompareError(f"{path} not found: {path.parent} does not hold {what}")
    return json.loads(path.read_text())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.compare",
        description="Two finished sweeps of one space side by side: per row, the configuration each chose on "
        "dev and its dev mean, whether the choice is the same, the verdict against CE each report gives (over "
        "restarts and test sentences, and by the chosen restart alone) and whether they agree; and the "
        "trial-epochs each trained. For a rerun with other seeds (--set seed=4), or a pruned sweep against "
        "the same search unpruned.",
        epilog="example: python -m orchestrator.compare sweeps/ner sweeps/ner-seeds-4-6",
    )
    parser.add_argument("a", type=Path, help="a finished sweep's output directory")
    parser.add_argument("b", type=Path, help="another one, of the same rows")
    parser.add_argument(
        "--add-to-b", type=Path, action="append", default=[], metavar="DIR",
        help="pool this sweep's configurations into B, replacing B's own where both have one (repeatable): "
        "e.g. the configurations a pruned sweep pruned, run to the end with the same seeds",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        a = read_side([args.a.expanduser().resolve()])
        b = read_side([p.expanduser().resolve() for p in [args.b, *args.add_to_b]])
        print(compare(a, b))
    except CompareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
