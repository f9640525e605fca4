"""Decoding for translation: greedy stops at </s>, length limits, and beam search (beam 1 equals greedy)."""

import itertools

import pytest
import torch

from trainer.config import MtModelConfig
from trainer.feedback import FeedbackPolicy
from trainer.model import build_mt_model
from trainer.search import beam_search, cut, decode_lengths, greedy_search
from trainer.vocabulary import BOS, EOS, PAD, UNK, Vocabulary

SIZES = MtModelConfig(embedding_dim=8, encoder_hidden=8, decoder_hidden=8, attention_dim=8, dropout=0.0)


def make_model(target_words: int = 30, seed: int = 0):
    torch.manual_seed(seed)
    source = Vocabulary([PAD, UNK] + [f"s{i}" for i in range(20)])
    target = Vocabulary([PAD, UNK, BOS, EOS] + [f"t{i}" for i in range(target_words)])
    return build_mt_model(SIZES, source, target).eval()


def sources(lengths=(5, 3, 1, 4)):
    torch.manual_seed(1)
    src_lengths = torch.tensor(lengths)
    src = torch.randint(2, 22, (len(lengths), max(lengths)))
    return src.masked_fill(torch.arange(max(lengths)) >= src_lengths[:, None], 0), src_lengths


def test_decode_length_is_twice_the_source_plus_ten_and_capped():
    assert decode_lengths(torch.tensor([1, 20, 100]), cap=150).tolist() == [12, 50, 150]


def test_cut_stops_before_the_first_end_of_sentence():
    assert cut([5, 6, 3, 7, 3], eos_id=3, max_length=10) == [5, 6]
    assert cut([5, 6, 7, 8], eos_id=3, max_length=3) == [5, 6, 7]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_of_one_equals_greedy(seed):
    model = make_model(seed=seed)
    src, src_lengths = sources()
    limits = decode_lengths(src_lengths, cap=200)
    assert beam_search(model, src, src_lengths, limits, beam_size=1) == greedy_search(model, src, src_lengths, limits)


def test_greedy_stops_once_every_sentence_has_ended():
    model = make_model()
    with torch.no_grad():
        model.decoder.output.bias[model.eos_id] = 1e4  # </s> wins at once
    src, src_lengths = sources()
    assert model.greedy_decode(src, src_lengths, max_length=50).shape == (4, 1)
    assert greedy_search(model, src, src_lengths, decode_lengths(src_lengths, 200)) == [[], [], [], []]


@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_translation_that_never_ends_is_cut_at_its_own_limit(beam_size):
    model = make_model()
    with torch.no_grad():
        model.decoder.output.bias[model.eos_id] = -1e4  # </s> never wins
    src, src_lengths = sources()
    limits = decode_lengths(src_lengths, cap=14)
    if beam_size == 1:
        found = greedy_search(model, src, src_lengths, limits)
    else:
        found = beam_search(model, src, src_lengths, limits, beam_size)
    assert [len(ids) for ids in found] == [14, 14, 12, 14]


def test_beam_search_never_outputs_padding_start_or_end_symbols():
    model = make_model()
    src, src_lengths = sources()
    found = beam_search(model, src, src_lengths, decode_lengths(src_lengths, 20), beam_size=4)
    assert not {model.pad_id, model.bos_id, model.eos_id} & {i for ids in found for i in ids}


def sequence_log_probability(model, src, src_lengths, ids):
    """log p(ids | src), ids ending with </s> or stopped by the length limit, as the beam scores it."""
    targets = torch.tensor([ids])
    logits, _ = model(src, src_lengths, targets, FeedbackPolicy("ce"))
    log_probs = torch.log_softmax(logits[0].float(), dim=-1)
    return sum(log_probs[i, token].item() for i, token in enumerate(ids))


def test_a_beam_as_wide_as_the_search_space_finds_the_most_probable_translation():
    # 3 target words + <unk> + </s>, at most 3 tokens: 5 + 25 + 125 prefixes; a beam of 125 is exhaustive.
    model = make_model(target_words=3, seed=4)
    src, src_lengths = sources(lengths=(4,))
    limit = torch.tensor([3])
    eos, words = model.eos_id, [1, 4, 5, 6]
    candidates = [list(c) + [eos] for n in range(3) for c in itertools.product(words, repeat=n)]
    candidates += [list(c) for c in itertools.product(words, repeat=3)]  # stopped by the limit
    with torch.no_grad():
        best = max(candidates, key=lambda ids: sequence_log_probability(model, src, src_lengths, ids))
    found = beam_search(model, src, src_lengths, limit, beam_size=125, length_penalty=0.0)
    assert found == [cut(best, eos, 3)]
