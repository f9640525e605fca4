"""`python -m orchestrator.screenshots OUT --to DIR`: what a user sees of a sweep in the MLflow UI, as PNGs.

The MLflow UI is a JavaScript application: whether the links the sweep prints land on the runs, the
configurations side by side and their dev curves is only known once a browser has rendered them. This
serves the sweep's store with `mlflow server` on 127.0.0.1 (or uses its tracking server), renders the three
links of tracking.ui_links in headless Chromium (Debian's `chromium`) and writes runs.png,
configurations.png and curves.png.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from orchestrator import tracking
from orchestrator.outdir import StateError, SweepState

SERVER_START_SECONDS = 300  # an MLflow server takes 30-60 s to answer on a busy 2-core machine
RENDER_SECONDS = 240


class ScreenshotError(RuntimeError):
    """Nothing to show, or no browser to show it with (exit status 2)."""


def find_chromium(given: str | None) -> str:
    found = given or next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                           if shutil.which(name)), None)  # fmt: skip
    if found is None:
        raise ScreenshotError("no Chromium found: apt-get install chromium, or give --chromium PATH")
    return found


@contextmanager
def ui_server(tracking_uri: str):
    """The base address of an MLflow UI on the store: the tracking server itself, or one started here."""
    if tracking_uri.startswith(("http://", "https://")):
        yield tracking_uri.rstrip("/")
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + SERVER_START_SECONDS
            while not _answers(f"{base}/health"):
                if server.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise ScreenshotError(f"mlflow server on {tracking_uri} did not start:\n{log.read().decode()}")
                time.sleep(1)
            yield base
        finally:
            server.terminate()
            server.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def render(chromium: str, url: str, path: Path, size: str = "1800,1100") -> Path:
    """A screenshot once the page's scripts have run and its data has arrived (virtual time: 30 s of it)."""
    with tempfile.TemporaryDirectory() as profile:
        command = [chromium, "--headless=new", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
                   f"--window-size={size}", "--virtual-time-budget=30000", f"--screenshot={path}", url]  # fmt: skip
        if os.geteuid() == 0:
            command.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        subprocess.run(command, capture_output=True, timeout=RENDER_SECONDS, check=False)
    if not path.is_file():
        raise ScreenshotError(f"Chromium wrote no screenshot of {url}")
    return path


def take(out_dir: Path, to: Path, chromium: str) -> list[Path]:
    try:
        state = SweepState.read(out_dir)
    except StateError as error:
        raise ScreenshotError(str(error)) from None
    from mlflow.tracking import MlflowClient

    client = MlflowClient(state.tracking_uri)
    configurations = tracking.sweep_runs(client, state.experiment_id, state.parent_run_id, tracking.CONFIGURATION)
    metric = client.get_run(state.parent_run_id).data.params.get("metric", "dev_score")
    to.mkdir(parents=True, exist_ok=True)
    with ui_server(state.tracking_uri) as base:
        links = tracking.ui_links(base, state.experiment_id, [run.info.run_id for run in configurations], metric)
        return [render(chromium, url, to / f"{name}.png") for name, url in links.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.screenshots",
        description="Screenshots of a sweep in the MLflow UI, rendered by headless Chromium: the runs table, the "
        "configurations side by side and their mean dev curves (the links the sweep prints at its end).",
    )
    parser.add_argument("out", type=Path, help="the sweep's output directory (its --out)")
    parser.add_argument("--to", type=Path, required=True, help="folder for runs.png, configurations.png, curves.png")
    parser.add_argument("--chromium", help="the browser's executable (default: chromium on the PATH)")
    args = parser.parse_args(argv)
    try:
        paths = take(args.out.expanduser().resolve(), args.to, find_chromium(args.chromium))
    except ScreenshotError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
