"""Config loading: defaults reproduce the paper, and bad input is rejected with the field's path."""

import re
from typing import get_args

import pytest
from pydantic import BaseModel

from orchestrator.space import SpaceError, load_space
from trainer.config import TASK_CONFIGS, ConfigError, NerConfig, load_config, read_yaml_tree


def write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_reproduce_the_paper_ner_model():
    config = NerConfig()
    assert (config.model.encoder_hidden, config.model.decoder_hidden) == (64, 64)
    assert config.procedure.schedule_unit == "epoch"


def test_unknown_key_is_rejected_with_its_path(tmp_path):
    with pytest.raises(ConfigError, match=r"\n  procedure\.nmae: Extra inputs are not permitted"):
        load_config(write(tmp_path, "procedure:\n  nmae: ce\n"))


def test_wrong_type_is_rejected_with_its_path(tmp_path):
    with pytest.raises(ConfigError, match=r"optim\.batch_size"):
        load_config(write(tmp_path, "optim:\n  batch_size: many\n"))


def test_impossible_value_is_rejected_with_its_path(tmp_path):
    with pytest.raises(ConfigError, match=r"optim\.lr: Input should be greater than 0"):
        load_config(write(tmp_path, "optim:\n  lr: -1\n"))


def test_unknown_procedure_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"procedure\.name"):
        load_config(write(tmp_path, "procedure:\n  name: reinforce\n"))


def test_error_names_the_file(tmp_path):
    path = write(tmp_path, "seed: [1]\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)


def test_set_overrides_parse_values_as_yaml(tmp_path):
    config = load_config(write(tmp_path, "procedure:\n  name: ce\n"), ["procedure.k=always", "optim.lr=0.01"])
    assert config.procedure.k == "always" and config.optim.lr == 0.01


def test_files_dataset_needs_paths(tmp_path):
    with pytest.raises(ConfigError, match="train_path and dev_path"):
        load_config(write(tmp_path, "data:\n  dataset: files\n"))


def test_unknown_task_is_rejected_with_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"task: must be one of ner, mt"):
        load_config(write(tmp_path, "task: pos\n"))


def float_fields(model, prefix=""):
    """Dotted paths of every field that accepts a float (alone or in a union, like procedure.k)."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from float_fields(annotation, f"{prefix}{name}.")
        elif annotation is float or float in get_args(annotation):
            yield f"{prefix}{name}"


@pytest.mark.parametrize("task", ["ner", "mt"])
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_every_float_field_rejects_non_finite_numbers(tmp_path, task, value):
    fields = list(float_fields(TASK_CONFIGS[task]))
    assert {"procedure.k", "optim.lr", "procedure.alpha.alpha0", "model.dropout"} <= set(fields)
    for field in fields:
        with pytest.raises(ConfigError, match=rf"\n  {re.escape(field)}(\.float)?: Input should be a finite number"):
            load_config(write(tmp_path, f"task: {task}\n"), [f"{field}={value}"])


def test_data_paths_without_dataset_files_are_refused_rather_than_ignored(tmp_path):
    with pytest.raises(ConfigError, match=r"data: .*train_path and dev_path are only read with dataset: files"):
        load_config(write(tmp_path, "data:\n  train_path: deu.train\n  dev_path: deu.testa\n"))


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    path = write(tmp_path, "optim:\n  lr: 0.1\n  batch_size: 8\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:4: .*duplicate key 'lr' \(first given on line 2"):
        load_config(path)


def test_a_group_given_twice_in_a_search_space_is_refused_with_its_line(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "task: ner\nepochs: 1\n"
        "groups:\n  ce:\n    fixed: {procedure.name: ce}\n  ce:\n    fixed: {procedure.name: ss_greedy}\n"
        "rows:\n  ce: {table: '1', label: CE, where: {procedure.name: ce}}\n"
    )
    with pytest.raises(SpaceError, match=rf"{re.escape(str(path))}:6: .*duplicate key 'ce' \(first given on line 4\)"):
        load_space(path)


def test_yaml_merge_keys_may_still_be_overridden(tmp_path):
    text = "x-optim: &optim {lr: 0.1, batch_size: 8}\n"
    tree = read_yaml_tree(write(tmp_path, text + "optim:\n  <<: *optim\n  lr: 0.2\n"))
    assert tree["optim"] == {"lr": 0.2, "batch_size": 8}


def test_an_empty_config_file_is_refused_rather_than_read_as_all_defaults(tmp_path):
    path = write(tmp_path, "# only a comment\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: no settings \(the file is empty"):
        load_config(path)


def test_an_unknown_data_encoding_is_refused_naming_the_field(tmp_path):
    text = "data:\n  dataset: files\n  train_path: a\n  dev_path: b\n  encoding: latin-99\n"
    with pytest.raises(ConfigError, match=r"\n  data\.encoding: .*'latin-99' is not a text encoding Python knows"):
        load_config(write(tmp_path, text))


def test_a_data_encoding_without_dataset_files_is_refused_rather_than_ignored(tmp_path):
    with pytest.raises(ConfigError, match=r"data: .*encoding is only read with dataset: files"):
        load_config(write(tmp_path, "data:\n  encoding: iso-8859-1\n"))


def test_a_data_dir_that_is_a_file_is_refused_naming_the_field(tmp_path):
    path = write(tmp_path, "task: ner\n")
    with pytest.raises(ConfigError, match=rf"\n  data_dir: .*{re.escape(str(path))} is a file, not a folder"):
        load_config(path, [f"data_dir={path}"])


def test_a_set_key_with_an_empty_part_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"--set 'optim\.=3': 'optim\.' is not a field path"):
        load_config(write(tmp_path, "task: ner\n"), ["optim.=3"])


def test_learning_rate_beyond_float32_is_refused_with_its_path(tmp_path):
    with pytest.raises(ConfigError, match=r"optim\.lr: .*must be below 3\.4e38"):
        load_config(write(tmp_path, "optim:\n  lr: 1.0e+300\n"))
