"""The fused unroll (trainer/unroll.py: one autograd node, backward by hand) computes what the step-by-step unroll
through autograd computes: the same logits, loss and gradient of every parameter, for every procedure, with and
without gold mixing and dropout, from the same random draws."""

import pytest
import torch
import torch.nn.functional as F
from tiny_ner import TAGS, WORDS, padded_ner_batch

from trainer.config import NerModelConfig
from trainer.feedback import FeedbackPolicy
from trainer.model import build_ner_model


def run(model, unroll, procedure: str, gold_probability: float, alpha: float, top_k=None):
    """Logits, loss and parameter gradients of one training step with the decoder unrolled by `unroll`."""
    src, lengths, targets = padded_ner_batch()
    feedback = FeedbackPolicy(procedure, model.excluded_ids, top_k)
    model.zero_grad()
    torch.manual_seed(11)  # the same draws (coins, dropout masks, samples, noise) for both unrolls
    keys, mask, final = model.encode(src, lengths)
    decoder = model.decoder
    if unroll == "fused":
        logits = decoder.fused_unroll(keys, final, targets, model.bos_id, feedback, gold_probability, alpha)
    else:
        logits = decoder.unrolled(keys, mask, final, targets, model.bos_id, feedback, gold_probability, alpha)
    loss = model.loss(logits, targets)
    loss.backward()
    return logits.detach(), loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("procedure", ["ss_greedy", "ss_sample", "soft_greedy", "soft_sample"])
@pytest.mark.parametrize("gold_probability", [0.0, 0.6])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_the_fused_unroll_gives_the_step_by_step_logits_loss_and_gradients(procedure, gold_probability, dropout):
    torch.manual_seed(0)
    model = build_ner_model(NerModelConfig(embedding_dim=6, encoder_hidden=5, decoder_hidden=4, dropout=dropout),
                            WORDS, TAGS)  # fmt: skip
    reference = run(model, "step_by_step", procedure, gold_probability, alpha=3.0)
    fused = run(model, "fused", procedure, gold_probability, alpha=3.0)
    assert torch.allclose(fused[0], reference[0], atol=1e-6)
    assert fused[1] == pytest.approx(reference[1].item(), rel=1e-6)
    assert fused[2].keys() == reference[2].keys()
    for name, gradient in reference[2].items():
        assert torch.allclose(fused[2][name], gradient, atol=1e-6, rtol=1e-5), name


def test_the_fused_unroll_with_a_truncated_soft_vector_matches_the_step_by_step_one():
    torch.manual_seed(0)
    model = build_ner_model(NerModelConfig(embedding_dim=6, encoder_hidden=5, decoder_hidden=4), WORDS, TAGS)
    reference = run(model, "step_by_step", "soft_greedy", 0.0, alpha=1.0, top_k=2)
    fused = run(model, "fused", "soft_greedy", 0.0, alpha=1.0, top_k=2)
    for name, gradient in reference[2].items():
        assert torch.allclose(fused[2][name], gradient, atol=1e-6, rtol=1e-5), name


@pytest.mark.parametrize("procedure", ["ss_greedy", "soft_sample"])
def test_training_feeds_the_models_choice_through_the_fused_unroll(procedure):
    model = build_ner_model(NerModelConfig(), WORDS, TAGS)
    step_by_step_calls = []
    model.decoder.unroll = lambda *args: step_by_step_calls.append(1)
    src, lengths, targets = padded_ner_batch()
    logits, loss = model(src, lengths, targets, FeedbackPolicy(procedure, model.excluded_ids), gold_probability=0.5)
    assert step_by_step_calls == [] and logits.shape == (5, 7, len(TAGS)) and torch.isfinite(loss)
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=0)
    assert loss.item() == pytest.approx(expected.item())
