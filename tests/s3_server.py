"""An S3-protocol server on 127.0.0.1 for the tests that keep a sweep's trials in a bucket (--storage s3://...): moto's
server in a process of its own (`python -m moto.server`), the way Ray's own tests try Tune's S3 storage
(ray._common.test_utils.simulate_s3_bucket), so that Tune's uploads, the trials' scans of their checkpoints, the
pause file and the chosen checkpoints' downloads are all real HTTP calls of the S3 protocol.

The bucket is made with boto3, as `aws s3 mb` would. Its credentials are invented per server and reach the sweep
only through the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), as an instance role's would: every node's
pyarrow and the driver read them there, and the sweep's URI names only the endpoint.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs
import pytest
from team_server import free_port, stop

READY_SECONDS = 120  # a bound for a loaded machine, not an estimate (moto answered within 2 s here)


@dataclass
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    environment: dict[str, str]  # what a node or a driver needs to reach the bucket: credentials, region
    log: Path

    def uri(self, prefix: str) -> str:
        """A sweep's --storage in this bucket: `s3://BUCKET/PREFIX?endpoint_override=...`, no credentials."""
        return f"s3://{self.bucket}/{prefix}?endpoint_override={self.endpoint}"

    def filesystem(self) -> pyarrow.fs.S3FileSystem:
        """The bucket as the tests look into it, with the server's credentials."""
        credentials = self.environment
        return pyarrow.fs.S3FileSystem(
            access_key=credentials["AWS_ACCESS_KEY_ID"], secret_key=credentials["AWS_SECRET_ACCESS_KEY"],
            endpoint_override=self.endpoint, region=credentials["AWS_DEFAULT_REGION"],
        )  # fmt: skip


@contextmanager
def s3_server(root: Path) -> Iterator[S3Server]:
    """moto's S3 server on a free port of 127.0.0.1 with one empty bucket; stopped when the block ends."""
    import boto3

    port = free_port()
    log = root / "s3-server.log"
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_until_ready(endpoint, process, log)
        environment = {
            "AWS_ACCESS_KEY_ID": f"AKIA{secrets.token_hex(8).upper()}",
            "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance metadata service for other credentials
        }
        server = S3Server(endpoint=endpoint, bucket="dss-sweeps", environment=environment, log=log)
        client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
        )  # fmt: skip
        client.create_bucket(Bucket=server.bucket)
        yield server
    finally:
        stop(process)


def wait_until_ready(endpoint: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto's server exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=5).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"moto's server did not answer within {READY_SECONDS} s:\n{log.read_text()[-3000:]}")


@contextmanager
def s3_in_environment(root: Path) -> Iterator[S3Server]:
    """s3_server, its credentials exported into this process's environment for the block: every Ray node, sweep
    and tool started meanwhile reads them there, as they would an instance role's."""
    with s3_server(root) as server, pytest.MonkeyPatch.context() as patch:
        for name, value in server.environment.items():
            patch.setenv(name, value)
        yield server


def object_names(server: S3Server, prefix: str) -> set[str]:
    """Every object below `prefix` in the bucket, by its key below the prefix."""
    selector = pyarrow.fs.FileSelector(f"{server.bucket}/{prefix}", recursive=True, allow_not_found=True)
    root = f"{server.bucket}/{prefix}/"
    infos = server.filesystem().get_file_info(selector)
    return {info.path.removeprefix(root) for info in infos if info.type == pyarrow.fs.FileType.File}
