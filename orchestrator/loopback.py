"""A sweep as a process of its own, on a loopback Ray cluster or on the local Ray it starts: what
orchestrator/chaos.py, orchestrator/scale.py and the tests that kill, interrupt or watch sweeps all run.

- `LoopbackCluster`: separate raylets on 127.0.0.1 (Ray's own `ray.cluster_utils.Cluster`), a head without CPUs,
  where a sweep's driver runs as on a real cluster, and worker nodes that can be killed as spot instances go.
- `launch_sweep` / `stop_sweep`: `python -m orchestrator.sweep` in a session of its own, and its end together
  with every process it left in that session (a killed driver leaves Ray's processes behind).
- `conll_slices` / `data_overrides`: small real train/dev/test files and the --set options that use them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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
REPO = Path(__file__).resolve().parents[1]
STOP_SECONDS = 30  # how long stop_sweep waits for the processes it killed to be gone


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


def _processes() -> dict[int, list[str]]:
    """Every live process by pid: the fields of /proc/PID/stat after "pid (comm)": state, ppid, pgrp, session..."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields and fields[0] != "Z":
            found[int(stat.parent.name)] = fields
    return found


def _tree(roots: list[int]) -> list[int]:
    """The processes `roots` and all their descendants, roots first."""
    children: dict[int, list[int]] = {}
    for pid, fields in _processes().items():
        children.setdefault(int(fields[1]), []).append(pid)
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


def launch_sweep(
    argv: list, log: Path, env: dict[str, str] | None = None, profile: Path | None = None
) -> subprocess.Popen:
    """`python -m orchestrator.sweep ARGV` in a session of its own (see stop_sweep), run from the repository,
    output to `log`, with `env` added to this process's environment; under cProfile, writing to `profile`, if
    given. It joins a loopback cluster given by --address, or starts a local Ray of its own."""
    profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
    command = [sys.executable, *profiler, "-m", "orchestrator.sweep", *map(str, argv)]
    return subprocess.Popen(
        command, cwd=REPO, env={**os.environ, **DRIVER_ENV, **(env or {})}, stdout=log.open("w"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def stop_sweep(process: subprocess.Popen) -> None:
    """Kills the driver if it still runs, then every process left in its session (Ray's own, which a driver that
    did not exit cleanly leaves behind), and waits until they are gone."""
    if process.poll() is None:
        process.kill()
        process.wait()
    left = session_processes(process.pid)
    for pid in left:
        _kill(pid)
    deadline = time.monotonic() + STOP_SECONDS
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [pid for pid in left if pid in _processes()]


def session_processes(session: int) -> list[int]:
    """Live processes of the session `session` (a process started with start_new_session leads one: its pid)."""
    return [pid for pid, fields in _processes().items() if int(fields[3]) == session]


def sentences(path: Path, count: int) -> str:
    """The first `count` sentences of a CoNLL file, blank-line separated (document markers dropped)."""
    blocks = [b for b in path.read_text().split("\n\n") if b.strip() and not b.startswith("-DOCSTART-")]
    return "\n\n".join(blocks[:count]) + "\n"


def conll_slices(directory: Path, train: int, dev: int, test: int | None = None, source: dict | None = None) -> dict:
    """The first `train` / `dev` / `test` (default: `dev`) sentences of CoNLL-2003 English's splits as files in
    `directory`; `test` 0 leaves the test file out. `source`: the splits' paths (fetched once into the data
    directory when not given)."""
    if source is None:
        from trainer.config import resolve_data_dir
        from trainer.data.fetch import fetch_conll2003_en

        source = fetch_conll2003_en(resolve_data_dir(None))
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, count in (("train", train), ("dev", dev), ("test", dev if test is None else test)):
        paths[split] = directory / f"{split}.txt"
        if count:
            paths[split].write_text(sentences(source[split], count))
    return paths


def data_overrides(paths: dict[str, Path]) -> list[str]:
    """--set options that point a space's base config at the files from conll_slices."""
    values = {"base.data.dataset": "files", **{f"base.data.{split}_path": p for split, p in paths.items()}}
    return [option for key, value in values.items() for option in ("--set", f"{key}={value}")]
