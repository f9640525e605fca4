"""`python -m orchestrator.sweep SPACE.yaml`: run a search space on Ray Tune, track it in MLflow, fill the table.

Top to bottom: validate the space; check everything else that can refuse the
command (the output directory's sweep, the tracking server) before anything is
written; set up the output directory, MLflow experiment and parent run, Ray, the
Optuna studies; run the trials (RestartSearcher proposes, OptunaPruningScheduler
prunes, callbacks track and print); then choose per row on dev, score the
choices on test, and write the summary.

Ray, Optuna and MLflow are imported where they are first needed, so that
--help and a bad search-space file answer within a second.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import logging
import math
import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path

from orchestrator.outdir import TUNE_DIR, DriverLock, OutDirBusy, StateError, SweepState, storage_location
from orchestrator.space import (
    SearchSpace,
    SpaceError,
    config_id,
    describe_axis,
    flatten,
    load_space,
    validated_flat_config,
)
from orchestrator.trials import Fate

EPILOG = """\
examples:
  python -m orchestrator.sweep search_spaces/ner.yaml                 # local Ray sized to this machine
  python -m orchestrator.sweep search_spaces/ner.yaml --dry-run       # list the trials, run nothing
  python -m orchestrator.sweep search_spaces/smoke.yaml --out /tmp/smoke
  python -m orchestrator.sweep search_spaces/ner.yaml --address auto --storage s3://bucket/sweeps  # on a cluster node
  python -m orchestrator.sweep search_spaces/ner_paper.yaml --set base.data.train_path=/data/deu.train ...

Rerunning the same command on the same --out continues an interrupted sweep (Ctrl-C once, or SIGTERM,
stops it cleanly; a killed driver resumes too): finished trials are not run again, trials in flight go on
from their newest checkpoint in the storage, and no MLflow run is duplicated. One driver at a time owns an
--out: a second one is refused while the first runs. The output directory holds summary.md/.csv/.json,
test_scores.json, mlflow.db (unless --tracking-uri), optuna.db (unless --optuna-storage), driver.lock and
the Ray Tune experiment (ray-RUN/ in the storage, one directory per trial with its last checkpoint:
best.pt, last.pt).
python -m orchestrator.pause OUT holds the trials at their next epoch boundary (--resume lets them go on).
Exit status: 0 done, 1 a row without a finished trial, a failure or a full disk, 2 bad search space or
options, an --out holding another sweep or in use by another driver, or a tracking store, Optuna storage
or --address cluster that does not answer (all checked before anything is written, --dry-run included),
130 interrupted (Ctrl-C), 143 stopped by SIGTERM.
"""


class SweepSetupError(RuntimeError):
    """Options, an output directory or a tracking server that refuse the command before it starts (exit status 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.sweep",
        description="Hyper-parameter sweep of the Goyal et al. (2017) training procedures: Ray Tune trials, "
        "Optuna sampling and pruning, one MLflow run per restart, best-dev selection and test scoring per row.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("space", type=Path, help="search-space YAML (see search_spaces/)")
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default: ./sweeps/NAME, NAME from the space)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a search-space field by dotted path, e.g. base.data.train_path=/data/deu.train or "
        "restarts=1 (repeatable; VALUE is YAML)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the trials that would run, then exit")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="require an interrupted sweep in --out and continue it (rerunning without the flag also resumes)",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="join this Ray cluster ('auto' on a cluster node, or HOST:PORT) instead of starting a local Ray; "
        "Ray Client addresses (ray://) are refused, see deploy/README.md",
    )
    parser.add_argument(
        "--storage",
        default=None,
        help="where Ray Tune keeps trial checkpoints (default: the output directory); must be shared "
        "storage (s3://, gs://, an NFS path) on a multi-node cluster",
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///OUT/mlflow.db)",
    )
    parser.add_argument(
        "--optuna-storage",
        default=None,
        metavar="URL",
        help="database for the groups' Optuna studies, e.g. postgresql://USER@HOST:5432/optuna, shared by a team "
        "and watched live with optuna-dashboard URL (default: sqlite:///OUT/optuna.db); a URL holding a password is "
        "refused: PostgreSQL's comes from PGPASSWORD or ~/.pgpass",
    )
    parser.add_argument(
        "--max-concurrent",
        type=int_at_least(1),
        default=None,
        help="trials running at once, >= 1 (default: the space's max_concurrent, else what the cluster's "
        "CPUs/GPUs hold)",
    )
    parser.add_argument(
        "--max-failures",
        type=int_at_least(-1),
        default=0,
        help="retry a failed trial this many times from its last checkpoint (use >= 1 where nodes can vanish; "
        "-1 retries without limit)",
    )
    parser.add_argument(
        "--no-test",
        action="store_true",
        help="choose on dev but do not score on test (the test split need not exist); rerun without it later",
    )
    parser.add_argument(
        "--pause-after-epoch",
        type=int_at_least(0),
        default=None,
        metavar="N",
        help="start paused: every trial holds once it has trained N epochs, until python -m orchestrator.pause OUT "
        "--resume (or --release KEY for some of them)",
    )
    return parser


def int_at_least(minimum: int):
    """An argparse type: an integer no smaller than `minimum` (Tune would otherwise take 0 or -5 and misbehave)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, not {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


def seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        space = load_space(args.space, args.overrides, test_split=not args.no_test)
        out_dir = (args.out or Path("sweeps") / space.name).expanduser().resolve()
        state, resuming = preflight(space, args, out_dir)
    except (SpaceError, SweepSetupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(plan_text(space, args.space))
        return 0
    from orchestrator.disk import disk_full

    terminated: list[int] = []
    try:
        with stopping_on_sigterm(terminated):
            code = run_sweep(space, args, out_dir, state, resuming)
        return 143 if terminated and code == 130 else code
    except SweepSetupError as error:  # what only the tracking server could tell (e.g. a user who may not write)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; rerun the same command to resume the sweep in {out_dir}", file=sys.stderr)
        return 143 if terminated else 130
    except Exception as error:
        if not disk_full(error):
            raise
        from orchestrator.disk import DiskFull

        print(f"error: {DiskFull.of(error, out_dir, state.storage)}", file=sys.stderr)
        return 1


@contextlib.contextmanager
def stopping_on_sigterm(received: list[int]):
    """SIGTERM (kill, systemd, Kubernetes) stops the sweep as Ctrl-C does: it goes to whatever handles SIGINT at
    that moment (Tune's graceful stop while trials run, else KeyboardInterrupt), and `received` gets the signal's
    number, so that the exit status can say 143. (Ray's driver installs a native SIGTERM handler that dumps a
    stack and exits; connect_ray puts this one back.) Only the main thread may set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame) -> None:
        received.append(signum)
        interrupt = signal.getsignal(signal.SIGINT)
        if callable(interrupt):
            interrupt(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def owning(out_dir: Path, state: SweepState):
    """Holds the output directory's driver lock (outdir.DriverLock) while the sweep writes to it. Taken once
    everything has been checked, so that a refused command leaves nothing behind; a sweep started in the same
    --out between those checks and the lock is noticed here."""
    lock = DriverLock(out_dir)
    try:
        lock.acquire()
    except OutDirBusy as error:
        raise SweepSetupError(f"{error}; wait for it to end, or stop it (Ctrl-C) and rerun") from None
    try:
        try:
            started_meanwhile = state.parent_run_id is None and SweepState.load(out_dir) is not None
        except StateError as error:
            raise SweepSetupError(str(error)) from None
        if started_meanwhile:
            raise SweepSetupError(f"{out_dir}: another sweep started in it meanwhile; rerun to resume that one")
        yield
    finally:
        lock.release()


def plan_text(space: SearchSpace, path: Path) -> str:
    """The --dry-run listing: every trial of a grid, the axes of a random/TPE search, the rows."""
    restarts = f"{space.restarts} restart(s) (seeds {space.seed}..{space.seed + space.restarts - 1})"
    lines = [
        f"search space {space.name} ({path}): task {space.task}, {space.epochs} epochs per trial, {restarts}",
        f"sampler {space.sampler.model_dump_json()}; pruner {space.pruner.model_dump_json()}",
        f"metric {space.metric.name} ({space.metric.mode}); per trial {space.resources.cpus:g} CPU, "
        f"{space.resources.gpus:g} GPU; at once: {space.max_concurrent or 'as many as fit'}",
    ]
    if space.description:
        lines.append(space.description.strip())
    total = 0
    for group in space.groups:
        count = space.planned_configurations(group)
        total += count
        fixed = ", ".join(f"{k}={v}" for k, v in space.groups[group].fixed.items()) or "-"
        lines.append(f"\ngroup {group}: {count} configuration(s) x {space.restarts} restart(s); fixed: {fixed}")
        if space.sampler.type == "grid":
            for number, params in enumerate(space.grid(group)):
                setting = ", ".join(f"{k}={v}" for k, v in params.items()) or "(fixed fields only)"
                keys = ", ".join(f"r{r}" for r in range(space.restarts))
                lines.append(f"  {config_id(group, number)}  {setting}   trials {keys}")
        else:
            for key, axis in space.group_axes(group).items():
                lines.append(f"  {key}: {describe_axis(axis)}  ({space.sampler.type})")
    lines.append("\nrows:")
    for row_id, row in space.rows.items():
        where = ", ".join(f"{k}={v}" for k, v in row.where.items())
        lines.append(f"  table {row.table}  {row_id:<24} {row.label}  <- {where}")
    lines.append(
        f"\n{total} configuration(s), at most {total * space.restarts} trial(s) "
        f"(a pruned configuration runs only its {space.scouts} scout(s))"
    )
    return "\n".join(lines)


def preflight(space: SearchSpace, args: argparse.Namespace, out_dir: Path) -> tuple[SweepState, bool]:
    """Everything besides the space that can refuse the command, checked before anything is written or started
    (--dry-run included): the Ray address, the sweep already in `out_dir`, the trial storage, the tracking store,
    the Optuna storage. Returns the sweep's state (the interrupted sweep's, or a new one without MLflow ids yet)
    and whether it resumes."""
    from orchestrator import studies, tracking

    if args.address and args.address.startswith("ray://"):
        # Under Ray Client, Tune runs its loop (searcher, pruner, tracker) on the head node, away from the
        # output directory, the Optuna storage and the SQLite store this process reads.
        raise SweepSetupError(
            "--address ray://... (Ray Client) is not supported; run the sweep on a cluster node, e.g. "
            "ray job submit ... -- python -m orchestrator.sweep SPACE.yaml --address auto (deploy/README.md)"
        )
    if args.address:
        check_ray_address(args.address)
    if out_dir.exists() and not out_dir.is_dir():
        raise SweepSetupError(f"--out {out_dir}: a file, not a directory")
    tracking_uri = tracking.resolve_tracking_uri(args.tracking_uri, out_dir)
    storage = resolve_storage(args.storage, out_dir)
    try:
        state = SweepState.load(out_dir)
    except StateError as error:
        raise SweepSetupError(str(error)) from None
    if state is None and args.resume:
        raise SweepSetupError(f"--resume: {out_dir} holds no sweep to resume")
    try:
        optuna_storage = studies.resolve_storage(args.optuna_storage, out_dir)
        if state is not None:
            check_same_sweep(state, space, tracking_uri, storage, optuna_storage, out_dir)
        if tracking_uri != tracking.default_tracking_uri(out_dir):  # the default is created with the folder
            tracking.check_store(tracking_uri)
        if optuna_storage != studies.storage_url(out_dir):
            studies.check_storage(optuna_storage)
    except (tracking.TrackingStoreError, studies.StorageError) as error:
        raise SweepSetupError(str(error)) from None
    if state is not None:
        return state, True
    return SweepState(str(args.space), space.fingerprint(), tracking_uri, storage, optuna_storage), False


def resolve_storage(flag: str | None, out_dir: Path) -> str:
    """Tune's storage path: --storage (a URI such as s3://bucket/prefix, or a directory, made absolute: trials
    run in folders of their own), else the output directory."""
    import pyarrow
    import pyarrow.fs

    if flag is None:
        return str(out_dir)
    if not flag.strip():
        raise SweepSetupError("--storage: empty; give a directory or a URI such as s3://bucket/prefix")
    if "://" not in flag:
        path = Path(flag).expanduser().resolve()
        existing = next(parent for parent in (path, *path.parents) if parent.exists())
        if not existing.is_dir():
            raise SweepSetupError(f"--storage {flag}: {existing} is a file, not a directory")
        if not os.access(existing, os.W_OK):
            raise SweepSetupError(f"--storage {flag}: {existing} is not writable")
        return str(path)
    try:
        pyarrow.fs.FileSystem.from_uri(flag)
    except (pyarrow.ArrowException, ValueError) as error:
        raise SweepSetupError(f"--storage {flag}: not a storage URI Ray Tune can use ({error})") from None
    return flag


def check_same_sweep(
    state: SweepState, space: SearchSpace, tracking_uri: str, storage: str, optuna_storage: str, out_dir: Path
) -> None:
    """A rerun continues the sweep in `out_dir` only with the same space, tracking store, trial storage and
    Optuna storage."""
    if state.fingerprint != space.fingerprint():
        changes = "\n".join(f"  {line}" for line in space_changes(state.fingerprint, space.fingerprint()))
        raise SweepSetupError(
            f"{out_dir} holds a sweep of another search space (or other --set values), and a resumed sweep cannot "
            f"change which trials run. What differs (there -> now):\n{changes}\nUse a new --out for this space, or "
            f"rerun with the space file and --set values of the sweep in {out_dir} ({state.space_file}) to "
            "continue it."
        )
    if state.tracking_uri != tracking_uri:
        raise SweepSetupError(
            f"{out_dir} tracks its sweep to {state.tracking_uri}, not {tracking_uri}: rerun with "
            f"--tracking-uri {state.tracking_uri}, or use a new --out"
        )
    if state.storage != storage:
        raise SweepSetupError(
            f"{out_dir} keeps its trials in {state.storage}, not {storage}: rerun with --storage "
            f"{state.storage}, or use a new --out"
        )
    if state.optuna_storage != optuna_storage:
        again = "" if state.optuna_storage.startswith("sqlite:") else f"--optuna-storage {state.optuna_storage}"
        raise SweepSetupError(
            f"{out_dir} keeps its Optuna studies in {state.optuna_storage}, not {optuna_storage}: rerun with "
            f"{again or 'no --optuna-storage'}, or use a new --out"
        )


def space_changes(before: str, after: str) -> list[str]:
    """The settings in which two space fingerprints differ, one 'key: old -> new' line each."""
    old, new = flatten(json.loads(before)), flatten(json.loads(after))

    def shown(flat: dict, key: str) -> str:
        return json.dumps(flat[key], ensure_ascii=False) if key in flat else "(not set)"

    keys = dict.fromkeys([*new, *old])  # in file order
    return [f"{key}: {shown(old, key)} -> {shown(new, key)}" for key in keys if shown(old, key) != shown(new, key)]


def run_sweep(space: SearchSpace, args: argparse.Namespace, out_dir: Path, state: SweepState, resuming: bool) -> int:
    from orchestrator import tracking

    started = time.monotonic()
    tracking_uri = state.tracking_uri
    if not resuming:
        try:  # the last refusal that only the tracking store can make (a user who may not write), before --out
            experiment_id = tracking.prepare_experiment(tracking_uri, space.name, out_dir)
        except tracking.TrackingStoreError as error:
            raise SweepSetupError(str(error)) from None
    with owning(out_dir, state):
        if resuming:
            print(f"resuming the sweep in {out_dir}", flush=True)
        else:
            state.experiment_id = experiment_id
            state.parent_run_id = tracking.start_parent_run(tracking_uri, experiment_id, space, args.space, out_dir)
            state.tune_name = f"{TUNE_DIR}-{state.parent_run_id[:8]}"
            state.save(out_dir)
        return run_owned_sweep(space, args, out_dir, state, started)


def run_owned_sweep(space: SearchSpace, args: argparse.Namespace, out_dir: Path, state: SweepState, started: float):
    """The sweep, once this driver owns `out_dir` and the sweep's MLflow parent run exists."""
    from orchestrator import tracking
    from orchestrator.pause import Pause, PauseFile

    tracking_uri = state.tracking_uri
    tracking.set_run_status(tracking_uri, state.parent_run_id, "RUNNING")
    pause = PauseFile.of_storage(state.storage)
    if args.pause_after_epoch is not None:
        pause.write(Pause(args.pause_after_epoch))
    if (held := pause.read()) is not None:
        print(f"{held.describe()} (python -m orchestrator.pause {out_dir} --resume lets them go on)", flush=True)

    outcomes, studies, metric, efficiency = run_trials(space, args, out_dir, state)
    missing = unfinished(space, studies, outcomes)
    if missing:
        tracking.set_run_status(tracking_uri, state.parent_run_id, "KILLED")
        print(f"\nsweep interrupted ({missing}); rerun the same command to resume it in {out_dir}", file=sys.stderr)
        return 130
    print(efficiency.line(), flush=True)
    tracking.log_efficiency(tracking_uri, state.parent_run_id, efficiency)
    return select_and_report(space, args, out_dir, state, outcomes, metric, time.monotonic() - started)


def run_trials(space: SearchSpace, args: argparse.Namespace, out_dir: Path, state: SweepState):
    """Runs (or resumes) the Tune experiment; returns every trial's Outcome, the Optuna studies, the metric's
    name and how busy this session kept the trial slots."""
    import ray
    from ray import tune

    from orchestrator.disk import StopOnDiskFull, keeping_back_trial_tracebacks
    from orchestrator.progress import TrialLines, sweep_efficiency
    from orchestrator.pruning import OptunaPruningScheduler
    from orchestrator.searcher import RestartSearcher
    from orchestrator.studies import Studies, study_prefix
    from orchestrator.tracking import MlflowTrials
    from orchestrator.trainable import SweepTrial, trial_dirname, trial_name

    # The sweep prints one line per trial; Tune's tables would bury them. A forced experiment snapshot after
    # every trial checkpoint (num_to_keep=1) is what keeps a resumed sweep consistent, so do not warn about it.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    url = state.optuna_storage
    studies = Studies(url, space, study_prefix(url, out_dir, space.name, state.parent_run_id))
    studies.create_all()
    if studies.prefix:
        print(f"Optuna studies {studies.prefix}*: optuna-dashboard {url}", flush=True)
    owns_ray = connect_ray(args.address)
    try:
        resources = {"cpu": space.resources.cpus, "gpu": space.resources.gpus}
        trainable = tune.with_resources(SweepTrial, resources)
        experiment = state.tune_experiment
        concurrency = args.max_concurrent or space.max_concurrent or fitting_trials(space)
        # Tune lets a custom searcher have one trial pending at a time; with trials of seconds that serialises
        # them behind worker start-up. The searcher itself keeps to `concurrency`.
        os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(concurrency)
        damage = set_aside_if_damaged(experiment)
        if damage:
            print(f"Tune's saved experiment in {experiment} cannot be read back ({damage}); it was moved aside and "
                  "a new one starts: every trial resumes from its newest complete checkpoint", flush=True)  # fmt: skip
        if tune.Tuner.can_restore(experiment):
            tuner = tune.Tuner.restore(experiment, trainable, resume_unfinished=True, resume_errored=False)
        else:
            tracker = MlflowTrials(state.tracking_uri, state.experiment_id, state.parent_run_id, space, studies)
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    metric=space.metric.name,
                    mode=space.metric.mode,
                    search_alg=RestartSearcher(space, studies, concurrency),
                    scheduler=OptunaPruningScheduler(studies),
                    num_samples=-1,  # the searcher says when it is finished
                    reuse_actors=True,  # saves a worker start (and a torch import) per trial
                    trial_name_creator=trial_name,
                    trial_dirname_creator=trial_dirname,
                ),
                run_config=tune.RunConfig(
                    name=state.tune_name,
                    storage_path=state.storage,
                    verbose=0,
                    callbacks=[StopOnDiskFull(), tracker, TrialLines(studies)],
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # it holds best.pt and last.pt
                    failure_config=tune.FailureConfig(max_failures=args.max_failures),
                ),
            )
            print(f"running up to {concurrency} trial(s) at once; output in {out_dir}", flush=True)
        started, clock = time.time(), time.monotonic()
        with keeping_back_trial_tracebacks():
            results = tuner.fit()
        efficiency = sweep_efficiency(results, started, time.monotonic() - clock, concurrency)
        outcomes = collect_outcomes(results, space, studies, state.storage)
        return outcomes, studies, task_metric(results, space), efficiency
    finally:
        if owns_ray:
            ray.shutdown()


# Tune's saved experiment (the files at the top of its folder) and how each is read back when it is restored
# (search_gen_state-*.json is a pickle, despite its name).
TUNE_STATE_FILES = {
    "tuner.pkl": pickle.loads,
    "experiment_state-*.json": json.loads,
    "search_gen_state-*.json": pickle.loads,
    "searcher-state-*.pkl": pickle.loads,
}


def set_aside_if_damaged(experiment: str) -> str:
    """Moves Tune's saved experiment into a folder `damaged-TIME` beside the trials' folders if the newest of its
    files do not read back, and says which one did not ('' if all do). Tune writes them to the storage while it
    runs, and a full disk or a kill can leave them cut short. Nothing is lost with them: a new experiment in the
    same folder runs every trial again, and each resumes from its newest complete checkpoint in the storage
    (trainable.py), re-reporting its stored epochs, which the tracker and the pruner hold already."""
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(experiment)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    files = [info for info in infos if info.type == pyarrow.fs.FileType.File]
    for pattern, read_back in TUNE_STATE_FILES.items():
        newest = max(
            (f for f in files if fnmatch.fnmatch(f.base_name, pattern)), key=lambda f: f.base_name, default=None
        )
        if newest is None:
            continue
        try:
            with fs.open_input_stream(newest.path) as stream:
                read_back(stream.read())
        except Exception as error:  # truncated: EOFError, UnpicklingError, JSONDecodeError and others
            aside = f"{path}/damaged-{time.strftime('%Y%m%d-%H%M%S')}"
            fs.create_dir(aside)
            for info in files:
                fs.move(info.path, f"{aside}/{info.base_name}")
            return f"{newest.base_name}: {type(error).__name__}: {error}"
    return ""


def connect_ray(address: str | None) -> bool:
    """Starts a local Ray sized to this machine, or joins `address`; False if Ray was already up (a test's)."""
    import ray

    if ray.is_initialized():
        return False
    options = {"logging_level": logging.WARNING, "log_to_driver": False}
    on_sigterm = signal.getsignal(signal.SIGTERM)
    if address:
        ray.init(address=address, **options)
    else:
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, **options)
    if callable(on_sigterm) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)  # over the native handler Ray's driver installs
    return True


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """Raises SweepSetupError unless a Ray cluster answers at `address` within `timeout` seconds: ray.init retries
    an address where nothing listens for minutes, logging every few seconds (issue 8), and by then the output
    directory, the studies and the MLflow runs exist. The address is resolved as ray.init resolves it ('auto'
    from $RAY_ADDRESS or the last `ray start`; 127.0.0.1 becomes this machine's address)."""
    import socket

    from ray._private.services import canonicalize_bootstrap_address

    try:
        resolved = canonicalize_bootstrap_address(address)
    except ValueError as error:
        raise SweepSetupError(f"--address {address}: {error}") from None
    if resolved is None:
        raise SweepSetupError(
            f"--address {address}: no running Ray cluster found on this machine ($RAY_ADDRESS is unset and no "
            "`ray start` recorded one); give the head node's HOST:PORT, or start the cluster first"
        )
    host, _, port = resolved.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as error:
        via = f" (Ray resolves it to {resolved})" if resolved != address else ""
        raise SweepSetupError(
            f"no Ray cluster answers at --address {address}{via}: {error}; start the cluster (ray start --head), "
            "or give the address of its head node's GCS (HOST:6379 by default)"
        ) from None


def fitting_trials(space: SearchSpace) -> int:
    import ray

    available = ray.cluster_resources()
    fits = math.floor(available.get("CPU", 0) / space.resources.cpus)
    if space.resources.gpus > 0:
        fits = min(fits, math.floor(available.get("GPU", 0) / space.resources.gpus))
    return max(1, fits)


def collect_outcomes(results, space: SearchSpace, studies, storage: str) -> list:
    from orchestrator.selection import Outcome, setting_text
    from orchestrator.trials import TrialMeta, fate, trainer_tree

    outcomes = []
    metric = space.metric.name
    for result in results:
        meta = TrialMeta.of(result.config)
        tree = trainer_tree(result.config)
        epochs = int(result.metrics.get("epoch") or 0)
        flat = validated_flat_config(tree, f"trial {meta.key}")
        outcome = Outcome(
            key=meta.key,
            group=meta.group,
            config_id=meta.config_id,
            restart=meta.restart,
            seed=tree["seed"],
            params=meta.params,
            rows=space.rows_of(flat),
            state=fate(meta, result.error is not None, epochs, space.epochs, studies),
            epochs=epochs,
            checkpoint=result.checkpoint,
            # where the checkpoint opens again (an s3:// URI for an s3:// storage): the report reads it there
            checkpoint_dir=None if result.checkpoint is None else storage_location(storage, result.checkpoint.path),
            setting=setting_text(flat, meta.params),
        )
        frame = result.metrics_dataframe
        if frame is not None and metric in frame and frame[metric].notna().any():
            series = frame[metric].dropna()
            best_index = series.idxmax() if space.metric.mode == "max" else series.idxmin()
            outcome.best_dev = float(series[best_index])
            outcome.best_epoch = int(frame.loc[best_index, "epoch"])
        outcomes.append(outcome)
    return outcomes


def task_metric(results, space: SearchSpace) -> str:
    """The name the table shows: the task's metric (f1, bleu) when the space optimises dev_score."""
    for result in results:
        names = [k.removeprefix("dev_") for k in result.metrics if k.startswith("dev_") and k != "dev_score"]
        if names:
            return names[0] if space.metric.name == "dev_score" else space.metric.name.removeprefix("dev_")
    return space.metric.name.removeprefix("dev_")


def unfinished(space: SearchSpace, studies, outcomes: list) -> str:
    """'' when every planned trial has finished; else what is missing (the sweep was interrupted)."""
    open_trials = sum(o.state == Fate.UNFINISHED for o in outcomes)
    if open_trials:
        return f"{open_trials} trial(s) unfinished"
    finished_restarts: dict[str, int] = {}
    for outcome in outcomes:
        finished_restarts[outcome.config_id] = finished_restarts.get(outcome.config_id, 0) + 1
    for group in space.groups:
        trials = studies.study(group).get_trials(deepcopy=False)
        if len(trials) < space.planned_configurations(group):
            return f"group {group}: {len(trials)} of {space.planned_configurations(group)} configurations started"
        for trial in trials:
            expected = space.restarts_of(trial.state.name)
            cid = config_id(group, trial.number)
            if trial.state.name in ("RUNNING", "WAITING") or finished_restarts.get(cid, 0) < expected:
                return f"configuration {cid} not finished"
    return ""


def select_and_report(
    space, args, out_dir: Path, state: SweepState, outcomes: list, metric: str, seconds: float
) -> int:
    from orchestrator import selection, tracking

    choices = selection.choose(space, outcomes)  # dev scores only: nothing has read the test split
    scores = None
    if not args.no_test:
        from trainer import evaluate_checkpoint

        scores = selection.score_on_test(
            choices, out_dir, evaluate=lambda path: evaluate_checkpoint(path, split="test", log=lambda _: None)
        )
    rows = selection.summary_rows(space, choices, scores)
    table = selection.markdown_table(rows, metric, test_scored=scores is not None)
    meta = {
        "space": state.space_file,
        "name": space.name,
        "metric": metric,
        "selection": "per row: best configuration by mean dev over its finished restarts, then its best restart",
        "test_scored": scores is not None,
        "trials": [selection.outcome_dict(o) for o in outcomes],
    }
    files = selection.write_summary(out_dir, rows, table, meta)
    tracking.log_selection(state, choices, scores, rows, files)
    pruned = sum(o.state == Fate.PRUNED for o in outcomes)
    failed = sum(o.state == Fate.FAILED for o in outcomes)
    print(f"\n{len(outcomes)} trials ({pruned} pruned, {failed} failed); this session took {seconds / 60:.1f} min")
    print(f"\n{table}\n")
    if scores is not None:  # intervals and verdicts need the chosen checkpoints' test predictions
        from orchestrator import report

        analysis, curves = report.build_report(out_dir, log=lambda _: None)
        report_files = report.write_report(out_dir, analysis, curves)
        report.log_to_parent_run(out_dir, report_files)
        files += report_files
        print(f"{report.markdown(analysis)}\n")
    print(f"wrote {', '.join(str(p) for p in files)}")
    print(tracking.ui_hint(state.tracking_uri, state.experiment_id, state.parent_run_id, space.metric.name))
    return 0 if all(choice.outcome is not None for choice in choices.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
