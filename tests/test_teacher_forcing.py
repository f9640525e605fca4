"""Teacher forcing (ε = 1) runs NER's decoder LSTM in one fused call; it must be the step-by-step unroll, faster."""

import pytest
import torch
from tiny_ner import TAGS, WORDS, padded_ner_batch

from trainer.config import MtModelConfig, NerModelConfig
from trainer.feedback import FeedbackPolicy
from trainer.model import build_mt_model, build_ner_model
from trainer.vocabulary import BOS, EOS, PAD, UNK, Vocabulary


def loss_and_gradients(model, run_decoder):
    """The model's loss with the decoder unroll replaced by `run_decoder`, and every parameter's gradient."""
    src, lengths, targets = padded_ner_batch()
    model.zero_grad()
    keys, _, final = model.encode(src, lengths)
    logits = run_decoder(keys, final, targets)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=model.pad_id)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def test_fused_teacher_forcing_gives_the_unrolled_loss_and_gradients():
    torch.manual_seed(0)
    model = build_ner_model(NerModelConfig(dropout=0.0), WORDS, TAGS)
    decoder, ce = model.decoder, FeedbackPolicy("ce", model.excluded_ids)

    def unrolled(keys, final, targets):
        mask = torch.ones(keys.shape[:2], dtype=torch.bool)  # fixed attention never reads it
        return decoder.unrolled(keys, mask, final, targets, model.bos_id, ce, 1.0, 1.0)

    def fused(keys, final, targets):
        return decoder.teacher_forced(keys, final, targets, model.bos_id)

    loop_loss, loop_grads = loss_and_gradients(model, unrolled)
    fused_loss, fused_grads = loss_and_gradients(model, fused)
    assert fused_loss == pytest.approx(loop_loss.item(), rel=1e-6)
    assert loop_grads.keys() == fused_grads.keys()
    for name, gradient in loop_grads.items():
        assert torch.allclose(fused_grads[name], gradient, atol=1e-6), name


@pytest.mark.parametrize("procedure", ["ce", "ss_greedy", "soft_sample"])
def test_every_procedure_takes_the_fused_path_while_all_gold(procedure):
    model = build_ner_model(NerModelConfig(), WORDS, TAGS)
    fused_calls = []
    model.decoder.lstm.register_forward_hook(lambda *args: fused_calls.append(1))
    src, lengths, targets = padded_ner_batch()
    model(src, lengths, targets, FeedbackPolicy(procedure, model.excluded_ids), gold_probability=1.0)
    assert fused_calls == [1]


def test_the_model_choice_is_fed_step_by_step_once_gold_probability_falls():
    model = build_ner_model(NerModelConfig(), WORDS, TAGS)
    fused_calls = []
    model.decoder.lstm.register_forward_hook(lambda *args: fused_calls.append(1))
    src, lengths, targets = padded_ner_batch()
    model(src, lengths, targets, FeedbackPolicy("soft_greedy", model.excluded_ids), gold_probability=0.99)
    assert fused_calls == []


def test_attention_that_reads_the_decoder_state_is_never_fused():
    words = Vocabulary([PAD, UNK, BOS, EOS] + [f"w{i}" for i in range(20)])
    sizes = MtModelConfig(embedding_dim=8, encoder_hidden=8, decoder_hidden=8, attention_dim=8)
    model = build_mt_model(sizes, words, words)
    fused_calls = []
    model.decoder.lstm.register_forward_hook(lambda *args: fused_calls.append(1))
    src = torch.randint(4, len(words), (3, 5))
    logits, loss = model(src, torch.tensor([5, 4, 2]), src.clone(), FeedbackPolicy("ce", model.excluded_ids))
    assert fused_calls == [] and logits.shape == (3, 5, len(words)) and torch.isfinite(loss)
