"""Search-space files: a bad file fails before anything starts, naming the file and the field, with exit status 2;
--dry-run lists the trials; the shipped spaces are valid."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from sweep_helpers import REPO, SMOKE, run_main

from orchestrator.outdir import STATE_FILE, STATE_KEYS
from orchestrator.space import load_space, validated_flat_config

VALID = {
    "name": "bad",
    "epochs": 2,
    "groups": {
        "ce": {"fixed": {"procedure.name": "ce"}},
        "soft": {"fixed": {"procedure.name": "soft_greedy"}, "axes": {"procedure.k": [10, 1]}},
    },
    "rows": {"ce": {"label": "CE", "where": {"procedure.name": "ce"}}},
}


def _set(path: str, value):
    def mutate(tree: dict) -> None:
        *parents, leaf = path.split("/")
        for part in parents:
            tree = tree.setdefault(part, {})
        tree[leaf] = value

    return mutate


def _drop(key: str):
    return lambda tree: tree.pop(key)


BAD = {
    "typo_at_top_level": (_set("epoch", 3), ["epoch: Extra inputs are not permitted"]),
    "missing_epoch_budget": (_drop("epochs"), ["epochs: Field required"]),
    "unknown_trainer_field_as_axis": (_set("groups/soft/axes/procedure.kk", [1]), ["groups.soft", "procedure.kk"]),
    "invalid_trainer_value_in_group": (_set("groups/ce/fixed/procedure.name", "cee"), ["groups.ce", "procedure.name"]),
    "axis_value_the_trainer_rejects": (_set("groups/soft/axes/procedure.k", [10, 0.5]), ["procedure.k=0.5", "k must"]),
    "distribution_under_grid_sampler": (
        _set("groups/soft/axes/optim.lr", {"distribution": "loguniform", "low": 1e-4, "high": 1e-2}),
        ["groups.soft.axes.optim.lr", "grid sampler needs a list"],
    ),
    "bad_distribution_bounds": (
        _set("axes/optim.lr", {"distribution": "loguniform", "low": 0, "high": 1}),
        ["axes.optim.lr", "low > 0"],
    ),
    "axis_neither_list_nor_distribution": (_set("axes/optim.lr", "fast"), ["axes.optim.lr", "list of values"]),
    "row_matching_no_configuration": (
        _set("rows/k5", {"label": "k5", "where": {"procedure.k": 5}}),
        ["rows.k5.where", "matches no configuration"],
    ),
    "row_on_unknown_field": (
        _set("rows/x", {"label": "x", "where": {"procedure.kk": 1}}),
        ["rows.x.where.procedure.kk"],
    ),
    "pruner_setting_out_of_range": (_set("pruner", {"type": "median", "startup": -1}), ["pruner.startup"]),
    "unknown_pruner": (_set("pruner", {"type": "asha"}), ["pruner", "'asha'"]),
    "random_sampler_without_samples": (_set("sampler", {"type": "random"}), ["sampler.samples: Field required"]),
    "seed_in_base_config": (_set("base/seed", 3), ["base.seed", "set by the sweep"]),
    "epochs_in_base_config": (_set("base/optim/epochs", 3), ["base.optim.epochs"]),
    "metric_that_is_not_validation": (_set("metric", {"name": "test_f1"}), ["metric.name"]),
    "negative_resources": (_set("resources", {"cpus": 0}), ["resources.cpus"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_space_file_fails_before_anything_starts_with_exit_status_2(case, tmp_path):
    mutate, expected = BAD[case]
    tree = copy.deepcopy(VALID)
    mutate(tree)
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True))
    session = run_main([path, "--out", tmp_path / "out"])
    assert session.code == 2
    assert str(path) in session.stderr
    for text in expected:
        assert text in session.stderr
    assert not (tmp_path / "out").exists()


def test_file_that_is_not_yaml_exits_2(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("groups: {ce: [\n")
    session = run_main([path])
    assert (session.code, f"{path}:2: not valid YAML" in session.stderr) == (2, True)


def test_missing_file_exits_2(tmp_path):
    session = run_main([tmp_path / "nowhere.yaml"])
    assert (session.code, "no such file" in session.stderr) == (2, True)


def test_dry_run_lists_every_trial_of_the_grid_and_runs_nothing(tmp_path):
    session = run_main([SMOKE, "--dry-run", "--out", tmp_path / "out"])
    assert session.code == 0
    listed = [line.split()[0] for line in session.stdout.splitlines() if "trials r0, r1" in line]
    assert listed == ["ce-000", "soft_greedy_annealed-000", "soft_greedy_annealed-001"]
    assert "3 configuration(s), at most 6 trial(s)" in session.stdout
    assert not (tmp_path / "out").exists()


# The data the paper spaces name by relative paths (the user brings it); empty stand-ins suffice to validate.
PAPER_DATA = [
    "data/conll2003_de/deu.train",
    "data/conll2003_de/deu.testa",
    "data/conll2003_de/deu.testb",
    *(
        f"data/iwslt14.tokenized.de-en/tmp/{split}.{lang}"
        for split in ("train", "valid", "test")
        for lang in ("de", "en")
    ),
]


@pytest.mark.parametrize("space", sorted(p.name for p in (REPO / "search_spaces").glob("*.yaml")))
def test_shipped_search_space_is_valid(space, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in PAPER_DATA:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    session = run_main([REPO / "search_spaces" / space, "--dry-run"])
    assert session.code == 0, session.stderr


def test_relative_data_paths_reach_every_trial_absolute_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "run" / "data").mkdir(parents=True)
    for name in ("train", "dev", "dev2", "test"):
        (tmp_path / "run" / "data" / name).touch()
    tree = copy.deepcopy(VALID)
    tree["base"] = {"data": {"dataset": "files", "train_path": "data/train", "test_path": "data/test"}}
    tree["groups"]["ce"]["fixed"]["data.dev_path"] = "data/dev"
    tree["groups"]["soft"]["fixed"]["data"] = {**tree["base"]["data"], "dev_path": "data/../data/dev"}
    tree["groups"]["soft"]["axes"]["data.dev_path"] = ["data/dev", "data/dev2"]
    tree["rows"]["dev2"] = {"label": "dev2", "where": {"data.dev_path": "data/dev2"}}
    (tmp_path / "spaces").mkdir()
    path = tmp_path / "spaces" / "space.yaml"  # not where the paths are taken from
    path.write_text(yaml.safe_dump(tree))
    monkeypatch.chdir(tmp_path / "run")

    space = load_space(path)

    data = tmp_path / "run" / "data"
    ce = space.trainer_tree("ce", {}, restart=0)["data"]
    expected = {"dataset": "files", "train_path": str(data / "train"), "test_path": str(data / "test")}
    assert ce == {**expected, "dev_path": str(data / "dev")}
    assert space.groups["soft"].fixed["data"] == {**expected, "dev_path": str(data / "dev")}
    assert space.group_axes("soft")["data.dev_path"] == [str(data / "dev"), str(data / "dev2")]
    soft = space.trainer_tree("soft", {"procedure.k": 10, "data.dev_path": str(data / "dev2")}, restart=0)
    assert space.rows_of(validated_flat_config(soft, "trial")) == ["dev2"]


def test_resume_without_an_interrupted_sweep_exits_2(tmp_path):
    session = run_main([SMOKE, "--out", tmp_path, "--resume"])
    assert (session.code, "holds no sweep to resume" in session.stderr) == (2, True)


def test_resume_with_a_changed_space_exits_2(tmp_path):
    state = {key: "" for key in STATE_KEYS}
    (tmp_path / STATE_FILE).write_text(json.dumps({**state, "fingerprint": load_space(SMOKE).fingerprint()}))
    session = run_main([SMOKE, "--out", tmp_path, "--set", "restarts=1"])
    assert (session.code, "another search space" in session.stderr) == (2, True)
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == [STATE_FILE]


def test_building_trial_configs_leaves_a_groups_fixed_section_as_written(tmp_path):
    tree = copy.deepcopy(VALID)
    tree["groups"]["ce"]["fixed"]["optim"] = {"lr": 0.1}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(tree))
    space = load_space(path)
    assert space.trainer_tree("ce", {}, restart=0)["optim"] == {"lr": 0.1, "epochs": 2}
    assert space.groups["ce"].fixed["optim"] == {"lr": 0.1}


def test_describe_lists_every_search_space_key(capsys):
    from orchestrator.describe import main
    from orchestrator.space import SearchSpace

    assert main([]) == 0
    listed = {line.split(":")[0] for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")}
    assert listed == set(SearchSpace.model_fields)
