"""The NER seq2seq model (§5): fixed attention, shapes, and credit assignment through the real decoder."""

import pytest
import torch
import torch.nn.functional as F

from trainer.attention import FixedAttention
from trainer.config import NerModelConfig
from trainer.feedback import FeedbackPolicy
from trainer.model import build_ner_model
from trainer.vocabulary import BOS, PAD, UNK, Vocabulary

WORDS = Vocabulary([PAD, UNK, "EU", "rejects", "German", "call"])
TAGS = Vocabulary([PAD, BOS, "O", "B-ORG", "B-MISC", "I-MISC"])


class RecordingFeedback(FeedbackPolicy):
    """The real policy; keeps the logits it was handed so a test can read their gradient."""

    def __init__(self, procedure):
        super().__init__(procedure, excluded_ids=(TAGS.pad_id, TAGS.bos_id))
        self.handed = []

    def next_input(self, logits, *args):
        logits.retain_grad()
        self.handed.append(logits)
        return super().next_input(logits, *args)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_ner_model(NerModelConfig(dropout=0.0), WORDS, TAGS)


@pytest.fixture
def batch():
    src = torch.tensor([[2, 3, 4, 5], [2, 3, 0, 0]])
    return src, torch.tensor([4, 2]), torch.tensor([[3, 2, 4, 2], [3, 2, 0, 0]])


def test_fixed_attention_reads_the_encoder_state_of_the_same_position():
    keys = torch.randn(2, 5, 3)
    assert torch.equal(FixedAttention()(None, keys, None, 3), keys[:, 3])


def test_forward_returns_logits_per_source_position_and_a_scalar_loss(model, batch):
    logits, loss = model(*batch, FeedbackPolicy("ce"))
    assert logits.shape == (2, 4, len(TAGS)) and loss.dim() == 0


def test_loss_is_cross_entropy_of_the_returned_clean_logits_even_for_soft_sample(model, batch):
    logits, loss = model(*batch, FeedbackPolicy("soft_sample", model.excluded_ids), gold_probability=0.0, alpha=1.0)
    expected = F.cross_entropy(logits.flatten(0, 1), batch[2].flatten(), ignore_index=TAGS.pad_id)
    assert torch.allclose(loss, expected)


def test_first_step_logits_do_not_depend_on_the_procedure(model, batch):
    ce_logits, _ = model(*batch, FeedbackPolicy("ce"))
    sample_logits, _ = model(*batch, FeedbackPolicy("soft_sample", model.excluded_ids), gold_probability=0.0)
    assert torch.allclose(ce_logits[:, 0], sample_logits[:, 0])


@pytest.mark.parametrize(("procedure", "reaches"), [("soft_greedy", True), ("soft_sample", True),
                                                    ("ss_greedy", False), ("ss_sample", False)])  # fmt: skip
def test_loss_at_step_i_reaches_logits_of_step_i_minus_1_only_for_soft_procedures(model, batch, procedure, reaches):
    feedback = RecordingFeedback(procedure)
    logits, _ = model(*batch, feedback, gold_probability=0.0, alpha=2.0)
    F.cross_entropy(logits[:, 2], batch[2][:, 2]).backward()  # the loss of step i = 2 alone
    gradient = feedback.handed[1].grad  # the logits of step i-1 = 1
    assert (gradient is not None and gradient.abs().sum() > 0) == reaches


def test_greedy_decoding_never_emits_padding_or_start(model, batch):
    with torch.no_grad():
        model.decoder.output.bias[TAGS.pad_id] = 1e3
    ids = model.greedy_decode(batch[0], batch[1], max_length=4)
    assert ids.shape == (2, 4)
    assert not torch.isin(ids, torch.tensor([TAGS.pad_id, TAGS.bos_id])).any()


def test_soft_greedy_at_huge_alpha_gives_the_same_forward_pass_as_ss_greedy(model, batch):
    hard, _ = model(*batch, FeedbackPolicy("ss_greedy", model.excluded_ids), gold_probability=0.0)
    soft, _ = model(*batch, FeedbackPolicy("soft_greedy", model.excluded_ids), gold_probability=0.0, alpha=1e4)
    assert torch.allclose(hard, soft, atol=1e-4)
