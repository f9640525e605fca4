"""Additive (Bahdanau) attention of the MT model (paper §5): shapes and masking."""

import pytest
import torch

from trainer.attention import BahdanauAttention

BATCH, SOURCE, QUERY, KEY = 3, 5, 4, 6


@pytest.fixture
def attention():
    torch.manual_seed(0)
    return BahdanauAttention(QUERY, KEY, hidden_size=7)


@pytest.fixture
def inputs():
    torch.manual_seed(1)
    lengths = torch.tensor([5, 3, 1])
    mask = torch.arange(SOURCE)[None, :] < lengths[:, None]  # (B, S)
    return torch.randn(BATCH, QUERY), torch.randn(BATCH, SOURCE, KEY), mask


def test_context_has_one_encoder_state_per_sentence(attention, inputs):
    query, keys, mask = inputs
    assert attention(query, keys, mask, step=0).shape == (BATCH, KEY)


def test_weights_sum_to_one_over_the_real_tokens(attention, inputs):
    query, keys, mask = inputs
    weights = attention.weights(query, keys, mask)
    assert weights.shape == (BATCH, SOURCE)
    assert torch.allclose(weights.sum(-1), torch.ones(BATCH))
    assert torch.all(weights[mask] > 0)


def test_padding_gets_exactly_zero_weight(attention, inputs):
    query, keys, mask = inputs
    assert torch.all(attention.weights(query, keys, mask)[~mask] == 0)


def test_what_padding_holds_never_changes_the_context(attention, inputs):
    query, keys, mask = inputs
    noisy = keys.masked_fill(~mask[..., None], 1e4)
    assert torch.allclose(attention(query, keys, mask, 0), attention(query, noisy.clone(), mask, 0))


def test_a_one_token_source_is_read_entirely(attention, inputs):
    query, keys, mask = inputs
    assert torch.allclose(attention(query, keys, mask, 0)[2], keys[2, 0])


def test_the_context_depends_on_the_query(attention, inputs):
    query, keys, mask = inputs
    assert not torch.allclose(attention(query, keys, mask, 0)[0], attention(-query, keys, mask, 0)[0])


def test_new_keys_are_projected_anew(attention, inputs):
    # The key projection is computed once per keys tensor; a second sequence must not reuse the first's.
    query, keys, mask = inputs
    attention(query, keys, mask, 0)
    other = torch.randn(BATCH, SOURCE, KEY)
    fresh = BahdanauAttention(QUERY, KEY, hidden_size=7)
    fresh.load_state_dict(attention.state_dict())
    assert torch.allclose(attention(query, other, mask, 0), fresh(query, other, mask, 0))


def test_gradient_reaches_every_attention_parameter(attention, inputs):
    query, keys, mask = inputs
    attention(query, keys, mask, 0).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in attention.parameters())
