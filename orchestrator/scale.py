"""`python -m orchestrator.scale`: how much the sweep's driver costs per trial, and what grows with the trials.

Runs N one-epoch trials of a tiny NER model (random learning rates, one group, one restart, no pruning) on a
loopback Ray cluster (orchestrator.loopback.LoopbackCluster) with the sweep's driver under cProfile, once per
size given. Reports per size:

- the sweep efficiency, trainer seconds ÷ (wall × trials at once), and the slot time per trial that is not
  training: (wall × trials at once − trainer seconds) ÷ trials;
- the driver's main-thread time per trial, split into the MLflow callback (tracking.py), the searcher and
  the pruner (searcher.py, pruning.py, with their Optuna storage calls), the progress lines, and Tune itself
  (its controller loop less those and less waiting for results), and the MLflow and Optuna calls per trial;

and, across sizes, the calls from the sweep's own code into MLflow, Optuna and Tune whose time per trial
grows with the number of trials: what would break first on a bigger sweep. Ray's own figure for comparison:
10,000 one-second trials on 16 CPUs at about 14% overhead (Ray Tune's scalability benchmarks).
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import sys
import time
from pathlib import Path

from orchestrator.loopback import LoopbackCluster, conll_slices, data_overrides, launch_sweep, stop_sweep
from orchestrator.outdir import SweepState
from orchestrator.sweep import int_at_least, seconds

EPILOG = """\
examples:
  python -m orchestrator.scale --out /tmp/scale --trials 20 60            # a few minutes on 2 cores
  python -m orchestrator.scale --out /tmp/scale --trials 100 300 --workers 2

Each size runs a fresh sweep in OUT/N (its driver's profile in OUT/N/driver.prof: python -m pstats); the
figures go to OUT/scale.json as well. The driver shares the machine with the trials, so on a small machine
its times include waiting for a core.
"""

SPACE = """\
# Written by python -m orchestrator.scale: one-epoch trials of a tiny model, so that the sweep's own costs show.
name: scale
task: ner
base:
  model: {{embedding_dim: 16, encoder_hidden: 16, decoder_hidden: 16}}
  optim: {{batch_size: 32}}
  device: cpu
epochs: 1
restarts: 1
groups:
  ce: {{fixed: {{procedure.name: ce}}}}
axes:
  optim.lr: {{distribution: loguniform, low: 0.0001, high: 0.1}}
sampler: {{type: random, samples: {trials}, seed: 0}}
pruner: {{type: none}}
metric: {{name: dev_score, mode: max}}
resources: {{cpus: 1, gpus: 0}}
rows:
  ce: {{table: "1", label: CE, where: {{procedure.name: ce}}}}
"""

OURS = "orchestrator/"
# Entry points Tune calls in the sweep's own code, by component: their cumulative time is that component's.
COMPONENTS = {
    "MLflow callback": ("tracking.py", ("on_trial_start", "on_trial_result", "on_trial_complete", "on_trial_error",
                                        "on_experiment_end")),
    "searcher": ("searcher.py", ("suggest", "on_trial_complete", "on_trial_result", "save", "restore")),
    "pruner": ("pruning.py", ("on_trial_result", "on_trial_complete")),
    "progress lines": ("progress.py", ("on_trial_start", "on_trial_result", "on_trial_complete", "on_trial_error")),
}  # fmt: skip
LIBRARIES = {"MLflow": "/mlflow/", "Optuna": "/optuna/", "Tune": "/ray/tune/", "Ray": "/ray/_private/"}
# What a call into a library is, for counting: MLflow's client methods (each a round trip to the tracking store;
# not the entity constructors), anything of Optuna's.
COUNTED = {"MLflow": "/mlflow/tracking/client.py", "Optuna": "/optuna/"}
# Tune's own work that may grow with the trials it holds: experiment snapshots, trial creation, actor placement.
TUNE_WATCH = (
    ("tune_controller.py", "checkpoint"),
    ("tune_controller.py", "_update_trial_queue"),
    ("tune_controller.py", "_maybe_add_actors"),
    ("tune_controller.py", "_schedule_trial_actor"),
    ("callback.py", "on_trial_result"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.scale",
        description="Benchmark the sweep's driver: N one-epoch tiny trials on a loopback Ray cluster, driver "
        "profiled; overhead per trial, sweep efficiency, and what grows with the number of trials.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="working directory (one sweep per size in it)")
    parser.add_argument(
        "--trials", type=int_at_least(1), nargs="+", default=[20, 60], help="sizes to run (default 20 60)"
    )
    parser.add_argument("--workers", type=int_at_least(1), default=2, help="worker nodes of 1 CPU each (default 2)")
    parser.add_argument("--train-sentences", type=int_at_least(1), default=32, help="training sentences (default 32)")
    parser.add_argument("--dev-sentences", type=int_at_least(1), default=32, help="dev sentences (default 32)")
    parser.add_argument("--timeout", type=seconds, default=7200.0, help="give up on a sweep after this many seconds")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a cluster on 127.0.0.1, reached by nobody else
    root = args.out.expanduser().resolve()
    if root.exists() and not root.is_dir():
        print(f"error: --out {root}: a file, not a directory", file=sys.stderr)
        return 2
    data = conll_slices(root / "data", args.train_sentences, args.dev_sentences)
    figures = []
    with LoopbackCluster(workers=args.workers) as cluster:
        print(f"cluster at {cluster.address}: a head without CPUs, {args.workers} workers of 1 CPU", flush=True)
        for trials in args.trials:
            result = run_size(cluster, root / str(trials), trials, args.workers, data, args.timeout)
            if result is None:
                return 1
            figures.append(result)
            print(size_text(result), flush=True)
    growth = growing_calls(figures)
    print(growth_text(figures, growth))
    (root / "scale.json").write_text(json.dumps({"sizes": figures, "growing": growth}, indent=2) + "\n")
    print(f"wrote {root / 'scale.json'}")
    return 0


def run_size(cluster, out_root: Path, trials: int, workers: int, data: dict, timeout: float) -> dict | None:
    out_root.mkdir(parents=True, exist_ok=True)
    space = out_root / "scale.yaml"
    space.write_text(SPACE.format(trials=trials))
    out, profile, log = out_root / "out", out_root / "driver.prof", out_root / "sweep.log"
    argv = [space, "--out", out, "--storage",
            out_root / "storage", "--address", cluster.address, "--no-test", "--max-concurrent", workers,
            *data_overrides(data)]  # fmt: skip
    print(f"\n{trials} trials: {log}", flush=True)
    started = time.monotonic()
    process = launch_sweep(argv, log, profile=profile)
    try:
        process.wait(timeout=timeout)
    except Exception:
        print(f"the sweep of {trials} trials did not finish within {timeout:.0f} s; see {log}", file=sys.stderr)
        return None
    finally:
        stop_sweep(process)
    if process.returncode != 0 or not profile.exists():
        print(f"the sweep of {trials} trials failed ({process.returncode}); see {log}", file=sys.stderr)
        return None
    return {"trials": trials, "workers": workers, "command_seconds": time.monotonic() - started,
            **efficiency(out), **driver_profile(profile, trials)}  # fmt: skip


def efficiency(out: Path) -> dict:
    """The session's figures the sweep logged on its MLflow run (tracking.log_efficiency)."""
    from mlflow.tracking import MlflowClient

    state = SweepState.read(out)
    metrics = MlflowClient(state.tracking_uri).get_run(state.parent_run_id).data.metrics
    return {name: metrics[f"sweep_{name}"] for name in ("efficiency", "trainer_seconds", "wall_seconds")}


def driver_profile(path: Path, trials: int) -> dict:
    """Per trial: the driver's time by component, its calls into MLflow and Optuna, and every call from the
    sweep's code into a library (what `growing_calls` compares across sizes)."""
    stats = pstats.Stats(str(path)).stats  # (file, line, function) -> (calls, primitive, own, cumulative, callers)
    per_trial = {}
    for name, (file_tail, functions) in COMPONENTS.items():
        per_trial[name] = sum(
            cumulative for (file, _, function), (_, _, _, cumulative, _) in stats.items()
            if file.endswith(OURS + file_tail) and function in functions
        ) / trials  # fmt: skip
    loop = _cumulative(stats, "tune_controller.py", "step")
    waiting = _cumulative(stats, "worker.py", "wait") + _cumulative(stats, "~", "<built-in method time.sleep>")
    per_trial["Tune (its loop, less the above and waiting)"] = (loop - waiting) / trials - sum(per_trial.values())
    per_trial["waiting for results"] = waiting / trials
    library_calls: dict[str, dict] = {}  # "caller -> callee" from our code into a library: calls and seconds
    counts = dict.fromkeys(COUNTED, 0)
    for (file, _, function), (_, _, _, _, callers) in stats.items():
        library = next((lib for lib, part in LIBRARIES.items() if part in file), None)
        if library is None or OURS in file:
            continue
        for (caller_file, _, caller), (calls, _, _, cumulative) in callers.items():
            if OURS in caller_file:
                edge = f"{Path(caller_file).stem}.{caller} -> {Path(file).stem}.{function}"
                library_calls[edge] = {"calls": calls / trials, "seconds": cumulative / trials}
                counts.update({lib: counts[lib] + calls for lib, part in COUNTED.items() if part in file})
    for file_tail, function in TUNE_WATCH:
        calls = sum(v[0] for (file, _, name), v in stats.items() if file.endswith(file_tail) and name == function)
        edge = f"Tune: {Path(file_tail).stem}.{function}"
        library_calls[edge] = {"calls": calls / trials, "seconds": _cumulative(stats, file_tail, function) / trials}
    return {
        "driver_seconds_per_trial": per_trial,
        "calls_per_trial": {library: n / trials for library, n in counts.items()},
        "library_calls": library_calls,
    }


def _cumulative(stats: dict, file_tail: str, function: str) -> float:
    return sum(v[3] for (file, _, name), v in stats.items() if file.endswith(file_tail) and name == function)


def growing_calls(figures: list[dict], top: int = 12) -> list[dict]:
    """Calls from the sweep's code into a library whose seconds per trial grow from the smallest size to the
    largest, biggest growth first."""
    if len(figures) < 2:
        return []
    small, large = figures[0]["library_calls"], figures[-1]["library_calls"]
    rows = []
    for edge, now in large.items():
        before = small.get(edge, {"calls": 0.0, "seconds": 0.0})
        rows.append({"call": edge, "seconds_small": before["seconds"], "seconds_large": now["seconds"],
                     "calls_small": before["calls"], "calls_large": now["calls"]})  # fmt: skip
    rows.sort(key=lambda r: r["seconds_large"] - r["seconds_small"], reverse=True)
    return rows[:top]


def size_text(figure: dict) -> str:
    n, workers = figure["trials"], figure["workers"]
    idle = (figure["wall_seconds"] * workers - figure["trainer_seconds"]) / n
    lines = [
        f"{n} trials on {workers} workers: sweep efficiency {figure['efficiency']:.2f} ({figure['trainer_seconds']:.0f}"
        f" trainer seconds in {figure['wall_seconds']:.0f} s of wall time); {idle:.2f} s of slot time per trial not "
        "training",
        "  driver main thread per trial:",
    ]
    for name, per_trial in figure["driver_seconds_per_trial"].items():
        lines.append(f"    {name:<46} {per_trial * 1000:8.1f} ms")
    calls = ", ".join(f"{library} {n:.1f}" for library, n in figure["calls_per_trial"].items())
    lines.append(f"  calls per trial from the sweep's code into: {calls}")
    return "\n".join(lines)


def growth_text(figures: list[dict], growth: list[dict]) -> str:
    if not growth:
        return ""
    small, large = figures[0]["trials"], figures[-1]["trials"]
    lines = [f"\nwhat grows per trial from {small} to {large} trials (ms per trial, calls per trial):"]
    for row in growth:
        lines.append(
            f"  {row['call']:<70} {row['seconds_small'] * 1000:7.1f} -> {row['seconds_large'] * 1000:7.1f} ms"
            f"  ({row['calls_small']:.1f} -> {row['calls_large']:.1f} calls)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
