"""Bad input to `python -m orchestrator.sweep` is refused before anything starts: one clear message naming the
file, field or URI, exit status 2, no traceback, and nothing written (no output folder, no stores).

Every case here is refused before Ray, Optuna or MLflow would start, so no test starts them."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
import time

import pytest
import yaml
from sweep_helpers import REPO, SMOKE, run_main

from orchestrator import sweep
from orchestrator.outdir import STATE_FILE
from orchestrator.space import load_space

MT_SPACE = REPO / "search_spaces" / "mt_ding.yaml"


def refused(argv: list, out, *expected: str) -> str:
    """Runs the sweep CLI in this process; checks the refusal, that `out` is as it was (absent, mostly), and
    returns the error."""
    before = contents(out)
    session = run_main([*argv, "--out", out])
    assert session.code == 2, session.stderr
    for text in expected:
        assert text in session.stderr
    assert "Traceback" not in session.stderr
    assert contents(out) == before
    return session.stderr


def contents(folder) -> dict | None:
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else None


def space_file(directory, task: str = "ner", **data) -> str:
    """A one-group search space whose trials read `data` (dataset: files)."""
    tree = {
        "task": task,
        "base": {"data": {"dataset": "files", **data}},
        "epochs": 1,
        "groups": {"ce": {"fixed": {"procedure.name": "ce"}}},
        "rows": {"ce": {"label": "CE", "where": {"procedure.name": "ce"}}},
    }
    path = directory / "space.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def conll_files(directory, *names: str) -> dict:
    directory.mkdir(exist_ok=True)
    for name in names:
        (directory / name).write_text("EU B-ORG\nrejects O\n")
    return {f"{name}_path": str(directory / name) for name in ("train", "dev", "test")}


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-concurrent", "0", "argument --max-concurrent: must be at least 1, not 0"),
        ("--max-concurrent", "-3", "argument --max-concurrent: must be at least 1, not -3"),
        ("--max-failures", "-2", "argument --max-failures: must be at least -1, not -2"),
    ],
)
def test_option_out_of_range_is_an_argparse_error(option, value, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        sweep.main([str(SMOKE), option, value, "--out", str(tmp_path / "out")])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("space", "metric"),
    [
        (MT_SPACE, "dev_chrf"),  # reported by the trainer, but best.pt is kept on BLEU
        (SMOKE, "dev_bleu"),  # never reported for NER
        (SMOKE, "dev_accuracy"),
    ],
)
@pytest.mark.parametrize("dry_run", [False, True])
def test_metric_other_than_the_tasks_own_is_refused(space, metric, dry_run, tmp_path):
    argv = [space, "--set", f"metric.name={metric}"] + (["--dry-run"] if dry_run else [])
    refused(argv, tmp_path / "out", f"{space}: metric.name: {metric}", "use dev_score or dev_")


def test_metric_mode_min_is_refused_for_a_higher_is_better_metric(tmp_path):
    refused([SMOKE, "--set", "metric.mode=min"], tmp_path / "out", f"{SMOKE}: metric.mode", "use max")


@pytest.mark.parametrize(("space", "metric"), [(SMOKE, "dev_f1"), (MT_SPACE, "dev_bleu")])
def test_the_tasks_metric_by_name_is_accepted(space, metric, tmp_path):
    session = run_main([space, "--set", f"metric.name={metric}", "--dry-run", "--out", tmp_path / "out"])
    assert session.code == 0, session.stderr
    assert f"metric {metric} (max)" in session.stdout


def test_data_file_that_does_not_exist_is_refused_naming_the_field(tmp_path):
    paths = conll_files(tmp_path / "data", "dev", "test")
    space = space_file(tmp_path, **paths)
    refused([space], tmp_path / "out", f"{space}: groups.ce: data.train_path: no such file: {paths['train_path']}")


def test_data_file_that_is_a_folder_is_refused_naming_the_field(tmp_path):
    paths = conll_files(tmp_path / "data", "train", "test")
    (tmp_path / "data" / "dev").mkdir()
    space = space_file(tmp_path, **paths)
    refused([space], tmp_path / "out", "data.dev_path: a folder, not a file", paths["dev_path"])


def test_missing_test_split_is_refused_unless_the_sweep_does_not_score_on_test(tmp_path):
    space = space_file(tmp_path, **conll_files(tmp_path / "data", "train", "dev"))
    refused([space], tmp_path / "out", "data.test_path: no such file", "pass --no-test")
    session = run_main([space, "--no-test", "--dry-run", "--out", tmp_path / "out"])
    assert session.code == 0, session.stderr


def test_relative_data_path_is_taken_from_the_working_directory(tmp_path, monkeypatch):
    space = space_file(tmp_path, train_path="train", dev_path="dev", test_path="test")
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    refused([space], tmp_path / "out", f"data.train_path: no such file: {tmp_path / 'run' / 'train'}")


def test_mt_folder_without_a_split_file_is_refused_naming_the_file(tmp_path):
    folder = tmp_path / "iwslt"
    folder.mkdir()
    for name in ("train.de", "train.en", "valid.de", "test.de", "test.en"):
        (folder / name).write_text("hallo welt\n")
    space = space_file(tmp_path, task="mt", path=str(folder))
    refused([space], tmp_path / "out", f"{space}: groups.ce: data.path: no file valid.en in {folder}")


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound to find a free one, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("dry_run", [False, True])
def test_tracking_server_that_is_down_is_refused_in_seconds_naming_the_uri(dry_run, tmp_path):
    uri = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    refused([SMOKE, "--tracking-uri", uri] + (["--dry-run"] if dry_run else []), tmp_path / "out", uri, "not reachable")
    assert time.monotonic() - started < 60  # MLflow's own retries took 251 s


def test_tracking_server_from_the_environment_is_checked_too(tmp_path, monkeypatch):
    uri = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    refused([SMOKE], tmp_path / "out", f"MLflow tracking server {uri}: not reachable")


def test_http_server_that_is_not_mlflow_is_refused(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)  # answers 501
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        refused([SMOKE, "--tracking-uri", uri], tmp_path / "out", f"{uri}/health answered HTTP 501")
    finally:
        server.shutdown()
        server.server_close()


def test_set_value_that_is_not_yaml_is_refused(tmp_path):
    refused([SMOKE, "--set", "restarts=[1"], tmp_path / "out", "--set 'restarts=[1': not valid YAML")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("task=[1]", "task: Input should be a valid string"),
        ("base=[1]", "base: Input should be a valid dictionary"),
        ("base.optim=[1]", "groups.ce: optim.epochs: 'optim' is not a section"),
        ("name.first=x", "--set 'name.first=x': name.first: 'name' is not a section"),
        ("groups.ce.fixed={optim: {epochs: 3}}", "groups.ce.fixed.optim.epochs: set by the sweep"),
    ],
)
def test_set_value_of_the_wrong_shape_is_refused_naming_the_field(override, message, tmp_path):
    refused([SMOKE, "--set", override], tmp_path / "out", message)


def test_space_file_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "space.yaml").mkdir()
    refused([tmp_path / "space.yaml"], tmp_path / "out", f"{tmp_path / 'space.yaml'}: a directory, not a file")


def test_space_file_that_is_not_utf8_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_bytes(SMOKE.read_bytes().replace(b"Seconds-per-trial", "Sekunden-pro-Versuch für".encode("latin-1")))
    refused([path], tmp_path / "out", f"{path}:6: not valid utf-8")


def state_of(out, **changes) -> dict:
    """The sweep.json a sweep of the smoke space would have written to `out`."""
    state = {
        "space_file": str(SMOKE),
        "fingerprint": load_space(SMOKE).fingerprint(),
        "tracking_uri": f"sqlite:///{out.resolve() / 'mlflow.db'}",
        "experiment_id": "1",
        "parent_run_id": "0123456789abcdef",
        "storage": str(out.resolve()),
    }
    return {**state, **changes}


@pytest.mark.parametrize(
    ("text", "damage"),
    [
        ('{"space_file": "smoke.yaml", "fingerp', "not readable as JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"fingerprint": "{}"}', "no space_file, tracking_uri, experiment_id, parent_run_id, storage"),
    ],
)
def test_damaged_sweep_record_is_refused_naming_the_file_and_what_to_do(text, damage, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / STATE_FILE).write_text(text)
    refused([SMOKE], out, f"{out / STATE_FILE}: damaged ({damage}", "Restore the file, or start over")


def test_rerun_with_another_space_names_what_differs_and_what_to_do(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / STATE_FILE).write_text(json.dumps(state_of(out)))
    error = refused(
        [SMOKE, "--set", "restarts=1", "--set", "groups.ce.fixed.optim.lr=0.1"], out, "another search space"
    )
    assert "\n  restarts: 2 -> 1\n" in error
    assert "\n  groups.ce.fixed.optim.lr: (not set) -> 0.1\n" in error
    assert "Use a new --out for this space, or rerun with the space file and --set values" in error


def test_rerun_with_another_tracking_uri_says_which_one_the_sweep_uses(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / STATE_FILE).write_text(json.dumps(state_of(out)))
    other = f"sqlite:///{tmp_path / 'other.db'}"
    refused([SMOKE, "--tracking-uri", other], out, f"rerun with --tracking-uri sqlite:///{out.resolve()}/mlflow.db")


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_database_tracking_store_that_does_not_answer_is_refused_in_seconds_naming_it(dry_run, tmp_path):
    uri = f"postgresql://sweeper@127.0.0.1:{closed_port()}/mlflow"
    started = time.monotonic()
    refused([SMOKE, "--tracking-uri", uri, *dry_run], tmp_path / "out", f"--tracking-uri {uri}: cannot connect")
    assert time.monotonic() - started < 60  # it had not failed after 75 s (issue 16); the check waits 5 s


def test_a_database_tracking_uri_shows_no_password_when_refused(tmp_path):
    uri = f"postgresql://sweeper:s3cret@127.0.0.1:{closed_port()}/mlflow"
    error = refused([SMOKE, "--tracking-uri", uri], tmp_path / "out", "--tracking-uri postgresql://sweeper:***@")
    assert "s3cret" not in error


@pytest.mark.parametrize("flag", ["--tracking-uri", "--optuna-storage"])
def test_a_sqlite_file_in_a_folder_that_does_not_exist_is_refused_naming_the_folder(flag, tmp_path):
    uri = f"sqlite:///{tmp_path / 'absent' / 'store.db'}"
    refused([SMOKE, flag, uri], tmp_path / "out", f"{flag} {uri}: the folder {tmp_path / 'absent'} does not exist")


def test_a_file_store_tracking_uri_is_refused_unless_mlflow_allows_it(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    refused([SMOKE, "--tracking-uri", str(tmp_path / "mlruns")], tmp_path / "out", "MLFLOW_ALLOW_FILE_STORE=true")


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("", "--storage: empty"),
        ("afile/checkpoints", "afile is a file, not a directory"),
        ("nosuchscheme://bucket/sweeps", "not a storage URI Ray Tune can use"),
    ],
)
def test_a_storage_that_cannot_hold_checkpoints_is_refused(storage, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    refused([SMOKE, "--storage", storage], tmp_path / "out", message)


def test_an_out_that_is_a_file_is_refused(tmp_path):
    out = tmp_path / "out"
    out.write_text("")
    session = run_main([SMOKE, "--out", out])
    assert session.code == 2 and f"--out {out}: a file, not a directory" in session.stderr
    assert out.read_text() == ""


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["orchestrator.describe", "extra"], "unrecognized arguments: extra"),
        (["orchestrator.report", "{tmp}"], "does not hold a finished sweep's summary"),
        (["orchestrator.pause", "{tmp}/afile"], "no sweep.json; not the output directory of a sweep"),
        (["orchestrator.chaos", "--out", "{tmp}/afile"], "a file, not a directory"),
        (["orchestrator.chaos", "--out", "{tmp}/c", "--every", "-3"], "must be a positive number of seconds"),
        (["orchestrator.chaos", "--out", "{tmp}/c", "--workers", "0"], "must be at least 1, not 0"),
        (["orchestrator.scale", "--out", "{tmp}/s", "--trials", "0"], "must be at least 1, not 0"),
        (["orchestrator.scale", "--out", "{tmp}/afile"], "a file, not a directory"),
    ],
)
def test_the_other_commands_refuse_a_wrong_value_or_path_with_status_2(command, message, tmp_path):
    (tmp_path / "afile").write_text("")
    argv = [part.format(tmp=tmp_path) for part in command]
    done = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr and "Traceback" not in done.stderr
