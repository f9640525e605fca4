"""The five procedures on the MT model: same feedback policy, same gradient-flow properties as for NER."""

import pytest
import torch
import torch.nn.functional as F

from trainer.config import PROCEDURES, MtModelConfig
from trainer.feedback import FeedbackPolicy
from trainer.model import build_mt_model
from trainer.vocabulary import BOS, EOS, PAD, UNK, Vocabulary

BATCH, LENGTH = 3, 6
SIZES = MtModelConfig(embedding_dim=8, encoder_hidden=8, decoder_hidden=8, attention_dim=8, dropout=0.0)


@pytest.fixture
def model():
    torch.manual_seed(0)
    source = Vocabulary([PAD, UNK] + [f"s{i}" for i in range(20)])
    target = Vocabulary([PAD, UNK, BOS, EOS] + [f"t{i}" for i in range(30)])
    return build_mt_model(SIZES, source, target)


@pytest.fixture
def batch():
    torch.manual_seed(1)
    src_lengths = torch.tensor([6, 4, 2])
    src = torch.randint(2, 22, (BATCH, LENGTH)).masked_fill(torch.arange(LENGTH) >= src_lengths[:, None], 0)
    targets = torch.randint(4, 34, (BATCH, LENGTH))
    targets[1, 4:] = 0  # padding
    return src, src_lengths, targets


def step_logits_of(model, procedure, batch, gold_probability=0.0, alpha=1.0):
    """Runs the model and returns each decoder step's logits, kept with their gradients, and the loss."""
    captured = []

    def keep(module, inputs, output):
        output.retain_grad()
        captured.append(output)

    handle = model.decoder.output.register_forward_hook(keep)
    logits, loss = model(*batch, FeedbackPolicy(procedure, model.excluded_ids), gold_probability, alpha)
    handle.remove()
    return captured, logits, loss


@pytest.mark.parametrize("procedure", PROCEDURES)
def test_every_procedure_gives_logits_per_target_position_and_a_finite_loss(model, batch, procedure):
    _, logits, loss = step_logits_of(model, procedure, batch)
    assert logits.shape == (BATCH, LENGTH, 34)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("procedure", ["soft_greedy", "soft_sample"])
def test_soft_procedures_pass_the_last_steps_loss_back_to_earlier_steps_logits(model, batch, procedure):
    steps, logits, _ = step_logits_of(model, procedure, batch)
    F.cross_entropy(logits[:, -1], batch[2][:, -1], ignore_index=0).backward()
    assert steps[-2].grad is not None and steps[-2].grad.abs().sum() > 0


@pytest.mark.parametrize("procedure", ["ce", "ss_greedy", "ss_sample"])
def test_other_procedures_pass_no_gradient_through_the_fed_back_token(model, batch, procedure):
    steps, logits, _ = step_logits_of(model, procedure, batch)
    F.cross_entropy(logits[:, -1], batch[2][:, -1], ignore_index=0).backward()
    assert all(s.grad is None or s.grad.abs().sum() == 0 for s in steps[:-1])


def test_soft_greedy_at_huge_alpha_computes_what_ss_greedy_computes(model, batch):
    model.eval()
    _, soft, _ = step_logits_of(model, "soft_greedy", batch, alpha=1e6)  # untrained: logits nearly tie
    _, hard, _ = step_logits_of(model, "ss_greedy", batch)
    assert torch.allclose(soft, hard, atol=1e-4)


@pytest.mark.parametrize("procedure", PROCEDURES)
def test_gold_probability_one_is_teacher_forcing_for_every_procedure(model, batch, procedure):
    model.eval()
    _, forced, _ = step_logits_of(model, "ce", batch)
    _, logits, _ = step_logits_of(model, procedure, batch, gold_probability=1.0)
    assert torch.equal(logits, forced)


def test_the_loss_is_the_mean_cross_entropy_over_real_target_tokens(model, batch):
    _, logits, loss = step_logits_of(model, "ce", batch)
    real = batch[2] != 0
    assert torch.allclose(loss, F.cross_entropy(logits[real], batch[2][real]))


def test_a_padded_sentence_is_translated_as_if_it_were_alone(model, batch):
    # Padding is never attended to and never enters the encoder's final state.
    model.eval()
    src, src_lengths, targets = batch
    _, together, _ = step_logits_of(model, "ce", batch)
    alone = model(src[2:, :2], src_lengths[2:], targets[2:], FeedbackPolicy("ce"))[0]
    assert torch.allclose(together[2:], alone, atol=1e-6)


def test_training_step_reaches_every_parameter(model, batch):
    _, _, loss = step_logits_of(model, "soft_sample", batch)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
