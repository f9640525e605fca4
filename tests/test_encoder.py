"""The encoder runs its two directions as two fused LSTM calls over the padded batch; it must be exactly the
bidirectional LSTM over the packed batch that it replaced (issue 10), padding included."""

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from trainer.encoders import BiLSTMEncoder

LENGTHS = torch.tensor([5, 2, 7, 1])  # unsorted, with a one-token sentence and a full-length one


def encoder_and_packed_twin() -> tuple[BiLSTMEncoder, nn.LSTM]:
    torch.manual_seed(0)
    encoder = BiLSTMEncoder(vocab_size=40, embedding_dim=8, hidden_size=6, dropout=0.0, pad_id=0)
    packed_lstm = nn.LSTM(8, 6, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(packed_lstm, name).copy_(getattr(encoder.forward_lstm, name))
            getattr(packed_lstm, f"{name}_reverse").copy_(getattr(encoder.backward_lstm, name))
    return encoder, packed_lstm


def padded_source() -> torch.Tensor:
    src = torch.randint(1, 40, (len(LENGTHS), int(LENGTHS.max())), generator=torch.Generator().manual_seed(1))
    return src.masked_fill(torch.arange(src.size(1))[None, :] >= LENGTHS[:, None], 0)


def packed_reference(encoder: BiLSTMEncoder, packed_lstm: nn.LSTM, src: torch.Tensor):
    embedded = encoder.embedding(src)
    packed = pack_padded_sequence(embedded, LENGTHS, batch_first=True, enforce_sorted=False)
    packed_states, (final_h, _) = packed_lstm(packed)
    states, _ = pad_packed_sequence(packed_states, batch_first=True, total_length=src.size(1))
    return states, torch.cat([final_h[0], final_h[1]], dim=-1)


def test_encoder_states_and_final_states_equal_a_packed_bidirectional_lstm():
    encoder, packed_lstm = encoder_and_packed_twin()
    src = padded_source()
    states, final = encoder(src, LENGTHS)
    expected_states, expected_final = packed_reference(encoder, packed_lstm, src)
    torch.testing.assert_close(states, expected_states)
    torch.testing.assert_close(final, expected_final)


def test_encoder_states_are_zero_at_padding():
    encoder, _ = encoder_and_packed_twin()
    states, _ = encoder(padded_source(), LENGTHS)
    padding = torch.arange(states.size(1))[None, :] >= LENGTHS[:, None]
    assert padding.any() and states[padding].abs().max() == 0


def test_encoder_gradients_equal_a_packed_bidirectional_lstm():
    encoder, packed_lstm = encoder_and_packed_twin()
    src = padded_source()
    weights = torch.randn(len(LENGTHS), src.size(1), 12, generator=torch.Generator().manual_seed(2))
    states, final = encoder(src, LENGTHS)
    ((states * weights).sum() + final.sum()).backward()
    expected_states, expected_final = packed_reference(encoder, packed_lstm, src)
    ((expected_states * weights).sum() + expected_final.sum()).backward()
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        torch.testing.assert_close(getattr(encoder.forward_lstm, name).grad, getattr(packed_lstm, name).grad)
        torch.testing.assert_close(
            getattr(encoder.backward_lstm, name).grad, getattr(packed_lstm, f"{name}_reverse").grad
        )
