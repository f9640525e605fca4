"""A Ray cluster on 127.0.0.1 as deploy/README.md has a team run one, for tests/test_ray_job.py: `ray start --head`
with the dashboard and its job server, Ray token authentication, no CPUs on the head, and worker nodes of one CPU
that can be killed as spot instances go and replaced as an autoscaler would.

What differs from a cloud cluster, and why:
- One machine, so every node and client shares 127.0.0.1 and one home directory. The token comes from
  `ray get-auth-token --generate` as on a cloud (it writes HOME/.ray/auth_token), run with a HOME of the cluster's
  own so that this machine's ~/.ray stays untouched (a token there turns token auth on for every later
  `ray start` here); nodes and clients find it through RAY_AUTH_TOKEN_PATH instead of ~/.ray/auth_token.
- Every node runs with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, and so do the jobs' drivers: otherwise Ray turns
  127.0.0.1 into the machine's network address, where nothing listens (orchestrator.loopback.DRIVER_ENV).
- Worker nodes are started by tests/ray_node.py, not `ray start`, which cannot keep a worker on 127.0.0.1.
- Ray's private `--temp-dir` per cluster (other test runs may share /tmp/ray), free ports everywhere, and a dead
  node is noticed in about 3 s instead of Ray's 30 s (orchestrator.loopback.FAST_NODE_DEATH).
Every process a cluster starts runs in a session of its own (one per node), and every one is SIGKILLed when the
`with` block ends, also after a failure. `ray stop` is never used: it stops every Ray on the machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from team_server import free_port

from orchestrator.loopback import DRIVER_ENV, FAST_NODE_DEATH, LOOPBACK, session_processes

RAY = str(Path(sys.executable).with_name("ray"))  # the CLI of the Ray the tests import
NODE = Path(__file__).with_name("ray_node.py")
READY_SECONDS = 240  # a bound for a loaded 2-core machine, not an estimate (the head took ~15 s here)
# Secrets a node must not inherit from the test process: only the driver reads them, from the job's own command.
NOT_FOR_NODES = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "PGPASSWORD")


class TokenCluster:
    """`ray start --head` with token auth and the dashboard at `dashboard` (http://127.0.0.1:PORT), and `workers`
    worker nodes of one CPU. `env` is what a node or client of this cluster has; `client_env` what a teammate's
    shell has (the token, nothing else of the cluster's)."""

    def __init__(self, workers: int = 2):
        self.root = Path(tempfile.mkdtemp(prefix="dss-ray-"))  # short: Ray's socket paths must fit 107 bytes
        self.nodes: dict[str, subprocess.Popen] = {}  # live worker nodes by Ray node id
        self.killed: list[str] = []
        self._processes: list[subprocess.Popen] = []
        try:
            self.token = self._generate_token()
            base = {k: v for k, v in os.environ.items() if k not in NOT_FOR_NODES and not k.startswith("RAY_AUTH")}
            path = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"  # `python` of the jobs
            self.client_env = {**base, "PATH": path, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": self.token}
            self.env = {**self.client_env, **DRIVER_ENV}
            self.port, dashboard_port = free_port(), free_port()
            self.address = f"{LOOPBACK}:{self.port}"
            self.dashboard = f"http://{LOOPBACK}:{dashboard_port}"
            self._start_head(dashboard_port)
            for _ in range(workers):
                self.add_worker()
        except BaseException:
            self.shutdown()
            raise

    def _generate_token(self) -> str:
        home = self.root / "home"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        run([RAY, "get-auth-token", "--generate"], env={**env, "HOME": str(home), "RAY_AUTH_MODE": "token"})
        return str(home / ".ray" / "auth_token")

    def _start_head(self, dashboard_port: int) -> None:
        command = [RAY, "start", "--head", "--block", "--node-ip-address", LOOPBACK, "--port", str(self.port)]
        command += ["--dashboard-host", LOOPBACK, "--dashboard-port", str(dashboard_port), "--include-dashboard=true"]
        command += ["--num-cpus", "0", "--object-store-memory", str(80 * 2**20), "--temp-dir", str(self.root / "t")]
        command += ["--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port())]
        command += ["--disable-usage-stats", "--system-config", json.dumps(FAST_NODE_DEATH)]
        head = self._spawn(command, self.root / "head.log")
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if head.poll() is not None:
                raise RuntimeError(f"ray start --head exited {head.returncode}:\n{self.head_log()[-3000:]}")
            try:
                urllib.request.urlopen(f"{self.dashboard}/api/version", timeout=5).close()
                return
            except urllib.error.HTTPError:  # it answers (and refuses a request without the token)
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"the head's dashboard did not answer within {READY_SECONDS} s:\n{self.head_log()[-3000:]}")

    def head_log(self) -> str:
        return (self.root / "head.log").read_text(errors="replace")

    def add_worker(self) -> str:
        """Starts a worker node and returns its node id once it has joined."""
        log = self.root / f"worker-{len(self.nodes) + len(self.killed)}.log"
        node = self._spawn([sys.executable, NODE, self.address, str(self.root / "t"), "1"], log)
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            match = re.search(r"^([0-9a-f]{56})$", log.read_text(errors="replace"), re.MULTILINE)
            if match:
                self.nodes[match[1]] = node
                return match[1]
            if node.poll() is not None:
                raise RuntimeError(f"a worker node exited {node.returncode}:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        raise RuntimeError(f"a worker node did not join within {READY_SECONDS} s:\n{log.read_text()[-3000:]}")

    def kill_worker(self, node_id: str) -> None:
        """SIGKILLs every process of the node at once (its raylet, agents and workers: the trial's actor)."""
        _kill_session(self.nodes.pop(node_id))
        self.killed.append(node_id)

    def ray(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        """The `ray` CLI as a teammate's shell runs it against this cluster (`env`: another shell's environment)."""
        return subprocess.run(
            [RAY, *args], env=env or self.client_env, capture_output=True, text=True, timeout=timeout
        )  # fmt: skip

    def _spawn(self, command: list, log: Path) -> subprocess.Popen:
        with log.open("w") as output:
            process = subprocess.Popen(
                command, env=self.env, cwd=self.root, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )  # fmt: skip
        self._processes.append(process)
        return process

    def shutdown(self) -> None:
        """Kills the running jobs' drivers (each runs in a session of its own), then every node."""
        for pid in self._driver_pids():
            _kill_session_of(pid)
        for process in self._processes:
            _kill_session(process)
        shutil.rmtree(self.root, ignore_errors=True)

    def _driver_pids(self) -> list[int]:
        """The processes of this cluster's running jobs: those the head lists whose environment names its token."""
        if not self._processes or self._processes[0].poll() is not None:
            return []
        listed = self.ray("list", "jobs", "--address", self.dashboard, "--format", "json", timeout=60)
        try:
            jobs = json.loads(listed.stdout) if listed.returncode == 0 else []
        except ValueError:
            return []
        pids = [int(job["driver_info"]["pid"]) for job in jobs if job["status"] == "RUNNING" and job.get("driver_info")]
        return [pid for pid in pids if self._ours(pid)]

    def _ours(self, pid: int) -> bool:
        try:
            environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return False
        return f"RAY_AUTH_TOKEN_PATH={self.token}".encode() in environment

    def __enter__(self) -> TokenCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def run(command: list, **options) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, **options)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def _kill_session(process: subprocess.Popen) -> None:
    _kill_session_of(process.pid)
    process.wait(timeout=30)


def _kill_session_of(pid: int) -> None:
    """SIGKILL to every live process of the session `pid` leads (or belongs to), all at once; never this one's."""
    try:
        session = os.getsid(pid)
    except ProcessLookupError:
        return
    if session == os.getsid(0):
        raise RuntimeError(f"process {pid} is in the tests' own session")
    for member in session_processes(session):
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass
