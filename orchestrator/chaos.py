"""`python -m orchestrator.chaos`: a sweep on a loopback Ray cluster that loses a worker node every N seconds.

The cluster is separate raylets on 127.0.0.1 (Ray's own `ray.cluster_utils.Cluster`): a head without CPUs, where
the sweep's driver runs as it does on a real cluster, and 1-CPU workers. A bounded killer SIGKILLs a random
worker's raylet and every process under it (its trial workers, its agents) at once, with no warning, as a
reclaimed spot instance goes, then adds a replacement node, as an autoscaler would. When the sweep has ended it
counts, from the trials' MLflow runs, Tune's records and the checkpoints: nodes killed, trials retried, epochs
trained again, runs lost or duplicated (issue 8).

The cluster and the sweep's process come from orchestrator/loopback.py, as for the tests and orchestrator/scale.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

from orchestrator.loopback import (
    REPO,
    TRIAL_ACTOR,
    LoopbackCluster,
    conll_slices,
    data_overrides,
    launch_sweep,
    stop_sweep,
)
from orchestrator.outdir import SUMMARY_STEM, SweepState
from orchestrator.space import load_space
from orchestrator.sweep import int_at_least, seconds

SPACE = REPO / "search_spaces" / "smoke.yaml"

EPILOG = """\
examples:
  python -m orchestrator.chaos --out /tmp/chaos --every 20 --kills 3 --epochs 5 --train-sentences 500  # ~3 min
  python -m orchestrator.chaos --out /tmp/chaos_long --every 45 --kills 12 --epochs 8 --restarts 3 \\
    --train-sentences 1000 --set "groups.soft_greedy_annealed.axes={procedure.k: [1, 3, 10, 30, always], \\
    procedure.alpha.growth: [1.5, 3]}"                        # 11 configurations, up to 33 trials

The sweep is the smoke space (search_spaces/smoke.yaml) on the first --train-sentences sentences of CoNLL-2003
English, with --storage apart from --out as on a cluster; --set passes further overrides to it. Exit status 0
when nothing was lost or duplicated and no finished epoch was trained twice, 1 otherwise.
"""


def tune_records(experiment: str) -> dict[str, list[dict]]:
    """Every result Tune recorded per trial key (result.json of each of the key's trial directories in the
    experiment folder `experiment`)."""
    records: dict[str, list[dict]] = {}
    for path in sorted(Path(experiment).glob("*_*/result.json")):
        key = path.parent.name.rsplit("_", 1)[0]
        records.setdefault(key, []).extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return records


def tally(out: Path, space) -> dict:
    """What a sweep that lost nodes left behind, from its MLflow runs, Optuna studies and Tune's records."""
    import optuna
    from mlflow.tracking import MlflowClient

    from orchestrator import tracking
    from orchestrator.space import config_id, trial_key
    from orchestrator.trainable import REPLAYED

    state = SweepState.read(out)
    client = MlflowClient(state.tracking_uri)
    runs = tracking.sweep_runs(client, state.experiment_id, state.parent_run_id)
    keys = Counter(run.data.tags["trial_key"] for run in runs)
    expected, optuna_gaps = set(), []
    studies = state.optuna_storage  # the default: the sweep's own file, one study per group, named after it
    for summary in optuna.get_all_study_summaries(studies):
        study = optuna.load_study(study_name=summary.study_name, storage=studies)
        for trial in study.trials:
            restarts = space.restarts_of(trial.state.name)
            expected |= {trial_key(summary.study_name, trial.number, r) for r in range(restarts)}
            steps = sorted(trial.intermediate_values)
            if steps != list(range(1, len(steps) + 1)):
                optuna_gaps.append(config_id(summary.study_name, trial.number))
    mlflow_gaps = []
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "dev_score")]
        if steps != list(range(1, int(run.data.tags.get("epochs_run", len(steps))) + 1)):
            mlflow_gaps.append(run.data.tags["trial_key"])
    trained_twice = {}
    for key, records in tune_records(state.tune_experiment).items():
        trained = Counter(r["epoch"] for r in records if not r.get(REPLAYED) and "epoch" in r)
        if twice := sum(n - 1 for n in trained.values()):
            trained_twice[key] = twice
    attempts = {run.data.tags["trial_key"]: int(run.data.tags.get("attempts", "0")) for run in runs}
    nodes = {run.data.tags["trial_key"]: run.data.tags.get("nodes", "").split(",") for run in runs}
    return {
        "trials": len(keys),
        "retried": sorted(key for key, n in attempts.items() if n > 1),
        "retries": sum(max(0, n - 1) for n in attempts.values()),
        "moved": sorted(key for key, ids in nodes.items() if len(ids) > 1),
        "trained_twice": trained_twice,
        "lost": sorted(expected - set(keys)),
        "duplicated": sorted(key for key, n in keys.items() if n > 1),
        "mlflow_gaps": sorted(mlflow_gaps),
        "optuna_gaps": sorted(optuna_gaps),
        "unfinished": sorted(run.data.tags["trial_key"] for run in runs if run.info.status != "FINISHED"),
    }


def report(counts: dict, kills: list[dict], code: int, seconds: float) -> str:
    hit = [k for k in kills if any(name.startswith(TRIAL_ACTOR) for name in k["processes"])]
    lines = [
        f"sweep exit status {code} after {seconds:.0f} s",
        f"nodes killed: {len(kills)} ({len(hit)} with a trial's actor on them)",
        f"trials retried: {len(counts['retried'])} of {counts['trials']} ({counts['retries']} retries; "
        f"{len(counts['moved'])} reported from more than one node)",
        f"finished epochs trained again: {sum(counts['trained_twice'].values())} (should be 0; each retry also "
        "trains again the epoch it interrupted, at most one per kill and trial)",
        f"MLflow runs lost: {len(counts['lost'])}, duplicated: {len(counts['duplicated'])}, not finished: "
        f"{len(counts['unfinished'])} (should be 0)",
        f"runs whose epochs are not each logged once, in order: {len(counts['mlflow_gaps'])} (should be 0)",
        f"Optuna configurations with a missing or repeated epoch: {len(counts['optuna_gaps'])} (should be 0)",
    ]
    for kill in kills:
        names = ", ".join(sorted(set(kill["processes"]) - {"", "?"}))
        on = f"; last reported there: {', '.join(kill['trials'])}" if kill["trials"] else ""
        lines.append(f"  at {kill['at']:5.0f} s killed {kill['node'][:12]}: {names}{on}")
    problems = {k: counts[k] for k in ("lost", "duplicated", "unfinished", "mlflow_gaps", "optuna_gaps") if counts[k]}
    if counts["trained_twice"]:
        problems["trained_twice"] = counts["trained_twice"]
    if problems:
        lines.append(f"problems: {json.dumps(problems)}")
    return "\n".join(lines)


def running_on(out: Path, node_id: str) -> list[str]:
    """Trials whose MLflow run is running and last reported from `node_id`."""
    from mlflow.tracking import MlflowClient

    from orchestrator import tracking

    state = SweepState.load(out)
    if state is None:
        return []
    runs = tracking.sweep_runs(MlflowClient(state.tracking_uri), state.experiment_id, state.parent_run_id)
    return [
        run.data.tags["trial_key"]
        for run in runs
        if run.info.status == "RUNNING" and run.data.tags.get("nodes", "").split(",")[-1] == node_id
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.chaos",
        description="Run the smoke sweep on a loopback Ray cluster (separate raylets on 127.0.0.1) while a bounded "
        "killer SIGKILLs a random worker node every --every seconds and adds a replacement; then count nodes "
        "killed, trials retried, epochs trained again, MLflow runs lost or duplicated.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="working directory (the sweep's --out is OUT/out)")
    parser.add_argument("--workers", type=int_at_least(1), default=2, help="worker nodes of 1 CPU each (default 2)")
    parser.add_argument("--every", type=seconds, default=40.0, help="seconds between kills (default 40)")
    parser.add_argument("--kills", type=int_at_least(0), default=4, help="kill at most this many nodes (default 4)")
    parser.add_argument("--epochs", type=int_at_least(1), default=6, help="epochs per trial (default 6)")
    parser.add_argument(
        "--restarts", type=int_at_least(1), default=2, help="restarts (seeds) per configuration (default 2)"
    )
    parser.add_argument("--train-sentences", type=int_at_least(1), default=600, help="training sentences (default 600)")
    parser.add_argument("--dev-sentences", type=int_at_least(1), default=100, help="dev sentences (default 100)")
    parser.add_argument(
        "--max-failures", type=int_at_least(-1), default=3, help="the sweep's --max-failures (default 3)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the killer's choices (default 0)")
    parser.add_argument("--timeout", type=seconds, default=3600.0, help="give up after this many seconds (3600)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="passed to the sweep"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a cluster on 127.0.0.1, reached by nobody else
    root = args.out.expanduser().resolve()
    out, storage, log = root / "out", root / "storage", root / "sweep.log"
    if root.exists() and not root.is_dir():
        print(f"error: --out {root}: a file, not a directory", file=sys.stderr)
        return 2
    if out.exists():
        print(f"error: {out} exists; give a new --out", file=sys.stderr)
        return 2
    paths = conll_slices(root / "data", args.train_sentences, args.dev_sentences)
    sets = [f"epochs={args.epochs}", f"restarts={args.restarts}", f"max_concurrent={args.workers}"]
    # The smoke space caps training at 300 and dev at 100 sentences; the slices' sizes are what was asked for.
    sets += [f"base.data.max_train_sentences={args.train_sentences}"]
    sets += [f"base.data.max_dev_sentences={args.dev_sentences}"]
    sets += args.overrides
    chooser = random.Random(args.seed)
    kills: list[dict] = []
    with LoopbackCluster(workers=args.workers) as cluster:
        print(f"cluster at {cluster.address}: a head without CPUs, {args.workers} workers of 1 CPU", flush=True)
        sweep_argv = [SPACE, "--out", out, "--storage", storage, "--address", cluster.address, "--no-test"]
        sweep_argv += ["--max-failures", args.max_failures, *data_overrides(paths)]
        sweep_argv += [option for value in sets for option in ("--set", value)]
        started = time.monotonic()
        sweep = launch_sweep(sweep_argv, log)
        try:
            next_kill = started + args.every
            while sweep.poll() is None and time.monotonic() - started < args.timeout:
                time.sleep(0.5)
                if len(kills) < args.kills and time.monotonic() >= next_kill:
                    node_id = chooser.choice(sorted(cluster.workers()))
                    trials = running_on(out, node_id)
                    processes = cluster.kill_worker(node_id)
                    cluster.add_worker()
                    kill = {"at": time.monotonic() - started, "node": node_id, "processes": processes}
                    kills.append({**kill, "trials": trials})
                    print(f"{kill['at']:.0f} s: killed node {node_id[:12]} ({len(processes)} processes)", flush=True)
                    next_kill = time.monotonic() + args.every
            if sweep.poll() is None:
                print(f"the sweep did not finish within {args.timeout:.0f} s; see {log}", file=sys.stderr)
        finally:
            stop_sweep(sweep)
        seconds = time.monotonic() - started
    if not (out / f"{SUMMARY_STEM}.json").exists():
        print(f"the sweep ended without a summary (exit status {sweep.returncode}); see {log}", file=sys.stderr)
        return 1
    counts = tally(out, load_space(SPACE, sets + data_overrides(paths)[1::2], test_split=False))
    print(report(counts, kills, sweep.returncode, seconds))
    clean = not any(counts[k] for k in ("lost", "duplicated", "unfinished", "mlflow_gaps", "optuna_gaps"))
    return 0 if clean and not counts["trained_twice"] and sweep.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
