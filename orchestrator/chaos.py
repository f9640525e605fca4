"""`python -m orchestrator.chaos`: a sweep on a loopback Ray cluster that loses a worker node every N seconds.

The cluster is separate raylets on 127.0.0.1 (Ray's own `ray.cluster_utils.Cluster`): a head without CPUs, where
the sweep's driver runs as it does on a real cluster, and 1-CPU workers. A bounded killer SIGKILLs a random
worker's raylet and every process under it (its trial workers, its agents) at once, with no warning, as a
reclaimed spot instance goes, then adds a replacement node, as an autoscaler would. When the sweep has ended it
counts, from the trials' MLflow runs, Tune's records and the checkpoints: nodes killed, trials retried, epochs
trained again, runs lost or duplicated (issue 8).

`LoopbackCluster` is also what tests/test_cluster.py and orchestrator/scale.py run their sweeps on.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

LOOPBACK = "127.0.0.1"
# A driver resolves the address 127.0.0.1 to this machine's network address, where a loopback cluster does not
# listen, unless Ray believes multi-node clusters are off (its switch for macOS and Windows): then 127.0.0.1 stays.
DRIVER_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# Ray's defaults take about 30 s to declare a silent node dead; a dead node's trials wait that long to retry.
FAST_NODE_DEATH = {"health_check_period_ms": 1000, "health_check_timeout_ms": 1000, "health_check_failure_threshold": 3}
OBJECT_STORE_BYTES = 80 * 2**20  # per node; Ray's default is 30% of RAM per raylet, and trials pass no objects
# Process titles of a trial's actor: ray::SweepTrial between calls, ray::ResourceTrainable.train while it trains.
TRIAL_ACTOR = ("ray::SweepTrial", "ray::ResourceTrainable")
SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "smoke.yaml"

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


class LoopbackCluster:
    """A head node without CPUs and `workers` worker nodes of `cpus` CPUs each, all separate raylets on 127.0.0.1.
    Use it as a context manager: every process it started is killed on the way out, also after an error."""

    def __init__(self, workers: int = 2, cpus: int = 1):
        from ray.cluster_utils import Cluster

        self.cpus = cpus
        self.killed: list[str] = []  # node ids, in the order they were killed
        node = {"node_ip_address": LOOPBACK, "object_store_memory": OBJECT_STORE_BYTES}
        head = {**node, "num_cpus": 0, "include_dashboard": False, "_system_config": FAST_NODE_DEATH}
        self.cluster = Cluster(initialize_head=True, head_node_args=head)
        self._node = node
        try:
            for _ in range(workers):
                self.add_worker()
        except BaseException:
            self.shutdown()
            raise

    @property
    def address(self) -> str:
        return self.cluster.address

    def workers(self) -> dict[str, object]:
        """Live worker nodes by Ray node id (hex)."""
        return {node.node_id: node for node in self.cluster.worker_nodes}

    def add_worker(self):
        return self.cluster.add_node(**self._node, num_cpus=self.cpus)

    def kill_worker(self, node_id: str) -> list[str]:
        """SIGKILLs the worker's raylet and every process under it at once; returns their names (Ray titles its
        workers: see TRIAL_ACTOR; ray::IDLE is a spare worker, python one still starting)."""
        node = self.workers()[node_id]
        pids = _tree(_node_pids(node))
        names = [_name(pid) for pid in pids]
        for pid in pids:
            _kill(pid)
        self.cluster.remove_node(node, allow_graceful=False)  # reaps the raylet, forgets the node
        self.killed.append(node_id)
        return names

    def shutdown(self) -> None:
        nodes = list(self.cluster.worker_nodes) + ([self.cluster.head_node] if self.cluster.head_node else [])
        pids = _tree([pid for node in nodes for pid in _node_pids(node)])
        try:
            self.cluster.shutdown()
        finally:  # whatever outlived Ray's own shutdown (workers of a raylet it killed first)
            for pid in pids:
                if _is_ray_process(pid):
                    _kill(pid)

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def _node_pids(node) -> list[int]:
    return [info.process.pid for infos in node.all_processes.values() for info in infos if info.process.poll() is None]


def _tree(roots: list[int]) -> list[int]:
    """The processes `roots` and all their descendants (from /proc), roots first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, queue = [], list(roots)
    while queue:
        pid = queue.pop(0)
        if pid not in found:
            found.append(pid)
            queue += children.get(pid, [])
    return found


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _name(pid: int) -> str:
    try:
        name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").strip()
    except OSError:
        return "?"
    return name if name.startswith("ray::") else Path(name.split()[0] if name else "?").name


def _is_ray_process(pid: int) -> bool:
    try:
        return b"ray" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def launch_sweep(argv: list, log: Path, profile: Path | None = None) -> subprocess.Popen:
    """`python -m orchestrator.sweep ARGV` as a driver of a loopback cluster, in a session of its own, output to
    `log`; under cProfile, writing to `profile`, if given."""
    profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
    command = [sys.executable, *profiler, "-m", "orchestrator.sweep", *map(str, argv)]
    env = {**os.environ, **DRIVER_ENV}
    return subprocess.Popen(
        command, cwd=SPACE.parents[1], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def stop_sweep(process: subprocess.Popen) -> None:
    """Kills the driver if it still runs, and whatever it started in its session."""
    if process.poll() is None:
        process.kill()
        process.wait()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[4]) == process.pid:  # the session id
                _kill(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue


def conll_slices(directory: Path, train: int, dev: int) -> dict[str, Path]:
    """The first `train` / `dev` sentences of CoNLL-2003 English (fetched once into the data directory)."""
    from trainer.config import resolve_data_dir
    from trainer.data.fetch import fetch_conll2003_en

    source = fetch_conll2003_en(resolve_data_dir(None))
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, count in (("train", train), ("dev", dev), ("test", dev)):
        blocks = [b for b in source[split].read_text().split("\n\n") if b.strip() and not b.startswith("-DOCSTART-")]
        paths[split] = directory / f"{split}.txt"
        paths[split].write_text("\n\n".join(blocks[:count]) + "\n")
    return paths


def data_overrides(paths: dict[str, Path]) -> list[str]:
    values = {"base.data.dataset": "files", **{f"base.data.{split}_path": p for split, p in paths.items()}}
    return [option for key, value in values.items() for option in ("--set", f"{key}={value}")]


def tune_records(storage: Path) -> dict[str, list[dict]]:
    """Every result Tune recorded per trial key (result.json of each of the key's trial directories)."""
    from orchestrator.sweep import TUNE_DIR

    records: dict[str, list[dict]] = {}
    for path in sorted((storage / TUNE_DIR).glob("*_*/result.json")):
        key = path.parent.name.rsplit("_", 1)[0]
        records.setdefault(key, []).extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return records


def tally(out: Path, storage: Path) -> dict:
    """What a sweep that lost nodes left behind, from its MLflow runs, Optuna studies and Tune's records."""
    import optuna
    from mlflow.tracking import MlflowClient

    from orchestrator import tracking
    from orchestrator.space import config_id, trial_key
    from orchestrator.studies import storage_url
    from orchestrator.sweep import STATE_FILE
    from orchestrator.trainable import REPLAYED

    state = json.loads((out / STATE_FILE).read_text())
    client = MlflowClient(state["tracking_uri"])
    runs = tracking.sweep_runs(client, state["experiment_id"], state["parent_run_id"])
    keys = Counter(run.data.tags["trial_key"] for run in runs)
    expected, optuna_gaps = set(), []
    studies = state.get("optuna_storage", storage_url(out))  # the default: one study per group, named after it
    for summary in optuna.get_all_study_summaries(studies):
        study = optuna.load_study(study_name=summary.study_name, storage=studies)
        for trial in study.trials:
            restarts = json.loads(state["fingerprint"])["restarts"] if trial.state.name == "COMPLETE" else 1
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
    for key, records in tune_records(storage).items():
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
    from orchestrator.sweep import STATE_FILE

    if not (out / STATE_FILE).exists():
        return []
    state = json.loads((out / STATE_FILE).read_text())
    runs = tracking.sweep_runs(MlflowClient(state["tracking_uri"]), state["experiment_id"], state["parent_run_id"])
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
    parser.add_argument("--workers", type=int, default=2, help="worker nodes of 1 CPU each (default 2)")
    parser.add_argument("--every", type=float, default=40.0, help="seconds between kills (default 40)")
    parser.add_argument("--kills", type=int, default=4, help="kill at most this many nodes (default 4)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per trial (default 6)")
    parser.add_argument("--restarts", type=int, default=2, help="restarts (seeds) per configuration (default 2)")
    parser.add_argument("--train-sentences", type=int, default=600, help="training sentences (default 600)")
    parser.add_argument("--dev-sentences", type=int, default=100, help="dev sentences (default 100)")
    parser.add_argument("--max-failures", type=int, default=3, help="the sweep's --max-failures (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the killer's choices (default 0)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds (3600)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="passed to the sweep"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a cluster on 127.0.0.1, reached by nobody else
    root = args.out.expanduser().resolve()
    out, storage, log = root / "out", root / "storage", root / "sweep.log"
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
    if not (out / "summary.json").exists():
        print(f"the sweep ended without a summary (exit status {sweep.returncode}); see {log}", file=sys.stderr)
        return 1
    counts = tally(out, storage)
    print(report(counts, kills, sweep.returncode, seconds))
    clean = not any(counts[k] for k in ("lost", "duplicated", "unfinished", "mlflow_gaps", "optuna_gaps"))
    return 0 if clean and not counts["trained_twice"] and sweep.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
