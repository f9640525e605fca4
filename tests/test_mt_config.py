"""The MT task's config: the paper's defaults, the shipped configs, precision, and describe."""

import pytest
import torch

from trainer import describe
from trainer.config import ConfigError, MtConfig, load_config, parse_config
from trainer.train import train


def test_defaults_reproduce_the_paper_mt_model():
    config = parse_config({"task": "mt"})
    assert isinstance(config, MtConfig)
    assert (config.model.encoder_hidden, config.model.decoder_hidden) == (256, 256)
    assert config.data.target_vocab_size == 32000
    assert config.data.max_length == 50


def test_iwslt14_config_is_the_papers_setup_on_files_given_by_path():
    config = load_config("configs/mt_iwslt14.yaml")
    assert config.data.dataset == "files" and not config.data.path.is_absolute()
    assert (config.model.embedding_dim, config.model.encoder_hidden, config.model.decoder_hidden) == (256, 256, 256)
    assert config.data.target_vocab_size == 32000 and config.data.max_length == 50


def test_iwslt14_config_splits_words_with_the_recipes_joint_bpe_of_10000():
    subwords = load_config("configs/mt_iwslt14.yaml").data.subwords
    assert (subwords.model, subwords.vocab_size, subwords.joint) == ("bpe", 10000, True)


def test_ding_config_is_the_default_data_set():
    config = load_config("configs/mt_ding.yaml")
    assert config.task == "mt" and config.data.dataset == "ding_de_en"


def test_files_dataset_needs_a_folder():
    with pytest.raises(ConfigError, match="dataset 'files' needs path"):
        parse_config({"task": "mt", "data": {"dataset": "files"}})


def test_unknown_mt_key_is_rejected_with_its_path():
    with pytest.raises(ConfigError, match=r"model\.hidden: Extra inputs are not permitted"):
        parse_config({"task": "mt", "model": {"hidden": 3}})


def test_bf16_on_the_cpu_is_rejected():
    with pytest.raises(ConfigError, match="bf16"):
        parse_config({"task": "mt", "device": "cpu", "precision": "bf16"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_bf16_without_cuda_is_refused_before_any_data_is_read(tmp_path):
    config = parse_config({"task": "mt", "precision": "bf16", "data": {"dataset": "files", "path": str(tmp_path)}})
    with pytest.raises(ConfigError, match="bf16' needs CUDA"):
        train(config, tmp_path / "run", progress=False, log=lambda _: None)


def test_describe_lists_every_mt_key_with_its_default(capsys):
    assert describe.main(["mt"]) == 0
    text = capsys.readouterr().out
    for line in (
        "task: mt",
        "target_vocab_size: 32000",
        "max_length: 50",
        "attention_dim: 256",
        "precision: float32",
        "subwords: null",
        "  # vocab_size: 10000",
        "extra_training: []",
    ):
        assert line in text


def test_a_data_path_without_dataset_files_is_refused_rather_than_ignored():
    with pytest.raises(ConfigError, match=r"data: .*path is only read with dataset: files, .* 'ding_de_en'"):
        parse_config({"task": "mt", "data": {"path": "data/iwslt14.tokenized.de-en"}})
