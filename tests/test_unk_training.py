"""<unk> is trained (issue 7): vocabularies come from the training sentences a run uses, and words seen
once in them become <unk> with data.unk_replace_probability, in training batches only."""

from collections import Counter

import pytest
import torch

from trainer.config import parse_config, resolve_data_dir
from trainer.data.conll import read_conll
from trainer.data.ding import fetch_ding_de_en
from trainer.feedback import FeedbackPolicy
from trainer.mt import MtTask
from trainer.ner import NerTask
from trainer.vocabulary import BOS, EOS, PAD, UNK


def quiet(_):
    pass


def ner_task(**data) -> NerTask:
    config = parse_config({"data": {"max_train_sentences": 300, "max_dev_sentences": 100, **data}})
    return NerTask(config, log=quiet)


@pytest.fixture(scope="module")
def ding():
    return fetch_ding_de_en(resolve_data_dir(None))


def mt_task(**data) -> MtTask:
    return MtTask(parse_config({"task": "mt", "data": {"max_train_sentences": 200, **data}}), log=quiet)


def singleton_ids(vocabulary, sentences) -> torch.Tensor:
    counts = Counter(word for sentence in sentences for word in sentence)
    return torch.tensor(vocabulary.encode([word for word, n in counts.items() if n == 1]))


def test_ner_vocabulary_holds_the_words_of_the_training_slice_only(conll2003_en):
    task = ner_task()
    used = task.read_split("train")
    assert len(used) == 300
    assert set(task.source_vocab.tokens) == {PAD, UNK} | {word for s in used for word in s.tokens}


def test_ner_tags_come_from_the_whole_training_split_so_a_small_slice_still_scores_dev(conll2003_en):
    task = ner_task(max_train_sentences=5)  # the first 30 sentences lack I-LOC, which dev has
    assert set(task.tag_vocab.tokens) == {PAD, BOS} | {tag for s in read_conll(conll2003_en["train"]) for tag in s.tags}
    assert "I-LOC" in {tag for s in task.read_split("dev") for tag in s.tags}


def test_mt_vocabularies_hold_the_words_of_the_training_slice_only(ding):
    task = mt_task()
    used = task.read_split("train")
    assert len(used) == 200
    assert set(task.source_vocab.tokens) == {PAD, UNK} | {word for p in used for word in p.source}
    assert set(task.target_vocab.tokens) == {PAD, UNK, BOS, EOS} | {word for p in used for word in p.target}


def test_with_probability_one_every_training_singleton_is_unk_in_training_batches_and_none_in_dev(conll2003_en):
    task = ner_task(unk_replace_probability=1.0)
    train = task.read_split("train")
    singletons = singleton_ids(task.source_vocab, (s.tokens for s in train))
    torch.manual_seed(0)
    training = task.training_batches(train, 32)
    torch.manual_seed(0)
    plain = task.batches(train, 32, shuffle=True)  # the same order: replacing draws after shuffling
    for replaced, batch in zip(training, plain, strict=True):
        expected = batch.src.masked_fill(torch.isin(batch.src, singletons), task.source_vocab.unk_id)
        assert torch.equal(replaced.src, expected) and torch.equal(replaced.targets, batch.targets)
    dev = torch.cat([b.src.flatten() for b in task.batches(task.read_split("dev"), 32, shuffle=False)])
    assert torch.isin(dev, singletons).any()  # training singletons in dev keep their own vector


def test_mt_replaces_source_singletons_and_never_target_words(ding):
    task = mt_task(unk_replace_probability=1.0)
    train = task.read_split("train")
    singletons = singleton_ids(task.source_vocab, (p.source for p in train))
    torch.manual_seed(0)
    training = task.training_batches(train, 32)
    torch.manual_seed(0)
    plain = task.batches(train, 32, shuffle=True)
    for replaced, batch in zip(training, plain, strict=True):
        expected = batch.src.masked_fill(torch.isin(batch.src, singletons), task.source_vocab.unk_id)
        assert torch.equal(replaced.src, expected) and torch.equal(replaced.targets, batch.targets)


def test_replacement_is_drawn_afresh_each_epoch_with_the_configured_probability(conll2003_en):
    task = ner_task(unk_replace_probability=0.5)
    train = task.read_split("train")
    singletons = singleton_ids(task.source_vocab, (s.tokens for s in train))
    torch.manual_seed(0)
    kept = []
    for _ in range(2):
        ids = torch.cat([b.src.flatten() for b in task.training_batches(train, 32)])
        kept.append(set(ids[torch.isin(ids, singletons)].tolist()))  # each singleton occurs once per epoch
    for epoch in kept:
        assert abs(len(epoch) - 0.5 * len(singletons)) < 4 * (0.25 * len(singletons)) ** 0.5
    assert kept[0] != kept[1]


@pytest.mark.parametrize(("probability", "trained"), [(0.5, True), (0.0, False)])
def test_the_unk_embedding_receives_a_gradient_only_when_singletons_are_replaced(conll2003_en, probability, trained):
    task = ner_task(unk_replace_probability=probability)
    torch.manual_seed(0)
    model = task.build_model()
    (batch,) = task.training_batches(task.read_split("train"), 300)
    _, loss = model(batch.src, batch.src_lengths, batch.targets, FeedbackPolicy("ce"))
    loss.backward()
    unk_gradient = model.encoder.embedding.weight.grad[task.source_vocab.unk_id]
    assert bool(unk_gradient.abs().sum() > 0) == trained
