"""Shared by tests/test_sweep_*.py: a real local Ray, small real CoNLL files, the shipped smoke space, MLflow reads."""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from orchestrator import sweep

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "search_spaces" / "smoke.yaml"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # as CI sets it; the sweep's subprocesses inherit it


def start_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    return ray


def sentences(path: Path, count: int) -> str:
    """The first `count` sentences of a CoNLL file, blank-line separated (document markers dropped)."""
    blocks = [b for b in path.read_text().split("\n\n") if b.strip() and not b.startswith("-DOCSTART-")]
    return "\n\n".join(blocks[:count]) + "\n"


def write_slices(conll2003_en: dict, directory: Path, counts=(300, 100, 100), with_test: bool = True) -> dict:
    """Small real train/dev/test files; the test file is left out when `with_test` is False."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {split: directory / f"{split}.txt" for split in ("train", "dev", "test")}
    for split, count in zip(("train", "dev", "test"), counts, strict=True):
        if split != "test" or with_test:
            paths[split].write_text(sentences(conll2003_en[split], count))
    return paths


def data_overrides(paths: dict) -> list[str]:
    """--set options that point a space's base config at the files from write_slices."""
    values = {
        "base.data.dataset": "files",
        "base.data.train_path": paths["train"],
        "base.data.dev_path": paths["dev"],
        "base.data.test_path": paths["test"],
    }
    return [option for key, value in values.items() for option in ("--set", f"{key}={value}")]


@dataclass
class Session:
    code: int
    stdout: str
    stderr: str

    def trial_lines(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.startswith("trial ")]

    def finished_keys(self) -> list[str]:
        return [line.split()[1] for line in self.trial_lines()]


def run_main(argv: list[str]) -> Session:
    """`python -m orchestrator.sweep ARGV` in this process (it joins the test module's Ray)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = sweep.main([str(a) for a in argv])
    return Session(code, out.getvalue(), err.getvalue())


def sweep_state(out_dir: Path) -> dict:
    return json.loads((out_dir / sweep.STATE_FILE).read_text())


def summary(out_dir: Path) -> dict:
    return json.loads((out_dir / "summary.json").read_text())


def trial_runs(out_dir: Path) -> list:
    """The MLflow runs of the sweep's trials (children of its parent run)."""
    state = sweep_state(out_dir)
    client = MlflowClient(state["tracking_uri"])
    return client.search_runs(
        [state["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{state['parent_run_id']}'"
    )


def client(out_dir: Path) -> MlflowClient:
    return MlflowClient(sweep_state(out_dir)["tracking_uri"])


def dev_history(out_dir: Path, run) -> list:
    return client(out_dir).get_metric_history(run.info.run_id, "dev_score")
