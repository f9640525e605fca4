"""A team's tracking stack, real and local, for tests/test_team_server.py: PostgreSQL 15 and an `mlflow server` on it
with MLflow's basic-auth app and artifacts served through the server.

Both listen on 127.0.0.1 and a free port and are waited for with a bound. PostgreSQL runs as the unprivileged
`postgres` user (it refuses to run as root) from a data directory in a temporary folder, and asks for a password
over TCP (scram-sha-256), so that a client which does not get its password from libpq's usual places fails as it
would on a team's server. Everything is stopped and removed when the `with` block ends, a failed test included.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))  # Debian's postgresql-15; .ci/run installs it
ROLE = "team"  # owns the databases; the MLflow server and the sweep's Optuna storage log in as it
DATABASES = ("mlflow", "mlflow_auth", "optuna")  # Optuna's and MLflow's schemas both keep an `alembic_version` table
READY_SECONDS = 240  # a bound for a 2-core machine under load, not an estimate (the MLflow server took ~20 s here)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(command: list, timeout: float = 120, **options) -> subprocess.CompletedProcess:
    """Runs a command with a bound; a failure shows its output."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **options)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


@dataclass
class Postgres:
    port: int
    password: str  # ROLE's
    socket_dir: Path

    def url(self, database: str) -> str:
        """A password-free URL: clients take the password from PGPASSWORD or a .pgpass file, as libpq does."""
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """SQL as the superuser over the server's Unix socket (trusted, reachable only by `postgres` and root)."""
        command = [PG_BIN / "psql", "-h", self.socket_dir, "-p", str(self.port), "-U", "postgres", "-d", database]
        return run([*as_postgres(), *command, "-v", "ON_ERROR_STOP=1", "-tA", "-c", sql]).stdout


def as_postgres() -> list[str]:
    """The prefix that runs a command as the `postgres` user when we are root (PostgreSQL refuses root)."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A fresh PostgreSQL cluster with ROLE (password from PGPASSWORD/.pgpass only) owning DATABASES."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL binaries in {PG_BIN} (Debian's postgresql-15; set PG_BIN to use others)")
    # Not under pytest's temporary folder: that is private to root, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="dss-postgres-"))
    data = root / "data"
    started = False
    try:
        superuser = root / "superuser-password"
        superuser.write_text(secrets.token_urlsafe(24))
        if os.geteuid() == 0:
            for path in (root, superuser):
                shutil.chown(path, "postgres", "postgres")
        initdb = [PG_BIN / "initdb", "-D", data, "-U", "postgres", "-E", "UTF8", "--pwfile", superuser]
        run([*as_postgres(), *initdb, "--auth-local=trust", "--auth-host=scram-sha-256"])
        port = free_port()
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
        start = [PG_BIN / "pg_ctl", "-D", data, "-l", root / "server.log", "-o", options, "-w", "-t", "60", "start"]
        try:
            run([*as_postgres(), *start], timeout=90)
        except RuntimeError as error:
            log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
            raise RuntimeError(f"{error}\n{log[-3000:]}") from None
        started = True
        server = Postgres(port=port, password=secrets.token_urlsafe(24), socket_dir=root)
        server.psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{server.password}'")
        for database in DATABASES:
            server.psql(f"CREATE DATABASE {database} OWNER {ROLE}")
        yield server
    finally:
        if started:
            subprocess.run([*as_postgres(), PG_BIN / "pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop"],
                           capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class MlflowServer:
    uri: str
    admin_password: str
    log: Path

    def request(self, method: str, path: str, body: dict | None, user: str, password: str) -> dict:
        """One call of the server's REST API with basic auth."""
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
        data = json.dumps(body).encode() if body is not None else None
        call = urllib.request.Request(f"{self.uri}{path}", data=data, headers=headers, method=method)
        with urllib.request.urlopen(call, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def create_user(self, username: str) -> str:
        """A new (non-admin) user, created by the admin; returns its password."""
        password = secrets.token_urlsafe(18)
        body = {"username": username, "password": password}
        self.request("POST", "/api/2.0/mlflow/users/create", body, "admin", self.admin_password)
        return password


@contextmanager
def mlflow_server(
    database: Postgres, root: Path, artifacts: str | None = None, environment: dict[str, str] | None = None
) -> Iterator[MlflowServer]:
    """`mlflow server --app-name basic-auth` on `database`: runs and users in PostgreSQL, artifacts served through
    the server (clients need no access to them) from `artifacts`, root/artifacts by default, or a bucket
    (s3://...; `environment` then names its endpoint and holds its credentials, for the server only)."""
    port = free_port()
    config = root / "auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"  # teammates see each other's runs, change only their own
        f"database_uri = {database.url('mlflow_auth')}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 60\n"  # else every request checks the password hash (scrypt) several times
    )
    admin_password = secrets.token_urlsafe(18)
    env = {
        **os.environ,
        "PGPASSWORD": database.password,
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(24),
        **(environment or {}),
    }
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(name, None)
    command = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth"]
    artifacts = artifacts or str(root / "artifacts")
    command += ["--backend-store-uri", database.url("mlflow"), "--artifacts-destination", artifacts]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = root / "mlflow-server.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        server = MlflowServer(uri=f"http://127.0.0.1:{port}", admin_password=admin_password, log=log)
        wait_until_ready(server, process)
        yield server
    finally:
        stop(process)


def wait_until_ready(server: MlflowServer, process: subprocess.Popen) -> None:
    """Polls /health until the server answers, then makes one authenticated API call: the server opens its
    tracking store on the first such call, which took seconds here. It exiting first, or READY_SECONDS
    passing, fails."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited {process.returncode}:\n{server.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.uri}/health", timeout=5):
                pass
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
            continue
        server.request("GET", "/api/2.0/mlflow/experiments/search?max_results=1", None, "admin", server.admin_password)
        return
    raise RuntimeError(f"mlflow server not ready within {READY_SECONDS} s:\n{server.log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """Ends the server and its workers (its own process group): SIGTERM, a bounded wait, then SIGKILL to whatever
    of the group is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
