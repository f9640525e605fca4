"""Subword units (trainer/subwords.py) on the real Ding pairs: lossless segmentation, the cache, scoring on words."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trainer import evaluate_checkpoint, load_config, train
from trainer.config import ConfigError, SubwordConfig, parse_config, resolve_data_dir
from trainer.data.ding import ding_dir, fetch_ding_de_en
from trainer.mt import MtTask
from trainer.subwords import learn_segmenters

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ding():
    return fetch_ding_de_en(resolve_data_dir(None))


def lines_of(path) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def training_lines(ding):
    return {"source": lines_of(ding["train.de"]), "target": lines_of(ding["train.en"])}


@pytest.fixture
def data_dir(tmp_path, ding):
    """A data directory of its own (so the subword cache starts empty) holding the fetched Ding splits."""
    shutil.copytree(Path(ding["train.de"]).parent, ding_dir(tmp_path))
    return tmp_path


def learn(lines, data_dir, **settings):
    logged = []
    segmenters = learn_segmenters(lines, SubwordConfig(**settings), data_dir, log=logged.append)
    return segmenters, logged


@pytest.mark.parametrize("settings", [{"model": "bpe", "joint": True}, {"model": "unigram", "joint": False}])
def test_encoding_then_decoding_gives_back_every_training_line_of_the_real_corpus(training_lines, tmp_path, settings):
    segmenters, _ = learn(training_lines, tmp_path, vocab_size=4000, **settings)
    for side in ("source", "target"):
        segmenter = getattr(segmenters, side)
        for line in training_lines[side]:
            pieces = segmenter.encode(line.split())
            assert segmenter.decode(list(pieces)) == line.split(), line
    assert max(segmenters.source.size, segmenters.target.size) <= 4000


def test_pieces_are_shorter_than_characters_and_split_rare_words(training_lines, tmp_path):
    segmenters, _ = learn(training_lines, tmp_path, vocab_size=4000)
    words = sum(len(line.split()) for line in training_lines["source"])
    pieces = sum(len(segmenters.source.encode(line.split())) for line in training_lines["source"])
    assert words < pieces < 2 * words


def test_a_learnt_model_is_reused_from_the_cache(training_lines, tmp_path):
    first, logged_first = learn(training_lines, tmp_path, vocab_size=2000)
    second, logged_second = learn(training_lines, tmp_path, vocab_size=2000)
    assert len(logged_first) == 1 and logged_second == []
    assert second.state() == first.state()


@pytest.mark.parametrize(
    "change",
    [
        {"lines": "one training line less"},
        {"vocab_size": 2500},
        {"model": "unigram"},
        {"joint": False},
        {"character_coverage": 0.9995},
    ],
)
def test_other_training_text_or_settings_learn_another_model(training_lines, tmp_path, change):
    learn(training_lines, tmp_path, vocab_size=2000)
    lines = {"source": training_lines["source"][1:], "target": training_lines["target"][1:]}
    settings = {"vocab_size": 2000, **{key: value for key, value in change.items() if key != "lines"}}
    _, logged = learn(lines if "lines" in change else training_lines, tmp_path, **settings)
    assert logged and "Learning" in logged[0]
    assert len(list((tmp_path / "subwords").iterdir())) == 2


def test_a_vocabulary_smaller_than_the_characters_is_a_config_error_naming_subwords(training_lines, tmp_path):
    with pytest.raises(ConfigError, match=r"data\.subwords: .*smaller than required_chars"):
        learn(training_lines, tmp_path, vocab_size=20)


def subword_task(data_dir, **data):
    subwords = {"vocab_size": 4000}
    config = {"task": "mt", "data_dir": str(data_dir), "data": {"subwords": subwords, **data}}
    return MtTask(parse_config(config), log=lambda _: None)


def test_a_perfect_translation_scores_100_against_the_untouched_references(data_dir):
    task = subword_task(data_dir)
    train_pairs = task.read_split("train")[:2000]
    perfect = [task.words(list(pair.target)) for pair in train_pairs]
    assert task.score_translations(perfect, train_pairs) == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100)}
    assert all("▁" not in word for pair in train_pairs for word in pair.reference)


def test_references_are_the_target_words_as_read_not_their_segmentation(data_dir, ding):
    task = subword_task(data_dir)
    dev = task.read_split("dev")
    assert [" ".join(pair.reference) for pair in dev] == lines_of(ding["valid.en"])
    assert all(pair.target != pair.reference for pair in dev[:50])


def test_vocabularies_hold_pieces_of_the_training_pairs_used(data_dir):
    task = subword_task(data_dir, max_train_sentences=500)
    pieces = {piece for pair in task.read_split("train") for piece in pair.target}
    assert set(task.target_vocab.tokens) - {"<pad>", "<unk>", "<s>", "</s>"} == pieces


def test_a_checkpoint_scores_with_its_own_segmentation_when_the_cache_is_gone(data_dir, tmp_path):
    overrides = [
        f"data_dir={data_dir}", "data.subwords={vocab_size: 2000}", "data.max_train_sentences=200",
        "data.max_dev_sentences=40", "optim.epochs=1", "model.embedding_dim=16", "model.encoder_hidden=16",
        "model.decoder_hidden=16", "model.attention_dim=16",
    ]  # fmt: skip
    summary = train(load_config(ROOT / "configs/mt_ding.yaml", overrides), tmp_path / "run", progress=False)
    shutil.rmtree(data_dir / "subwords")
    scored = evaluate_checkpoint(tmp_path / "run" / "best.pt", split="dev", log=lambda _: None)
    assert scored["bleu"] == pytest.approx(summary["epochs"][0]["dev_bleu"])
    assert not (data_dir / "subwords").exists()


def test_an_unknown_subword_setting_is_refused_with_exit_status_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "configs/mt_ding.yaml", "--out", str(tmp_path / "run"),
         "--set", "data.subwords={model: wordpiece}"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2 and result.stderr.startswith("error: ")
    assert "data.subwords.model" in result.stderr and "Traceback" not in result.stderr


def test_text_already_split_by_subword_nmt_is_refused_naming_the_file_and_line(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.de").write_text("das haus .\nich ver@@ stehe .\n")
        (tmp_path / f"{split}.en").write_text("the house .\ni under@@ stand .\n")
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "configs/mt_iwslt14.yaml", "--out", str(tmp_path / "run"),
         "--set", f"data.path={tmp_path}"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2 and result.stderr.startswith("error: ")
    assert f"{tmp_path / 'train.en'}:2: holds subword-nmt's '@@' pieces" in result.stderr
    assert "data.subwords" in result.stderr and not (tmp_path / "run").exists()
