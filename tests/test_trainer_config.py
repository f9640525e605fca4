"""Config loading: defaults reproduce the paper, and bad input is rejected with the field's path."""

import pytest

from trainer.config import ConfigError, NerConfig, load_config


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
