"""What is fed back at each decoder step, per procedure (METHOD.md, 'Training procedures')."""

import pytest
import torch

from trainer.feedback import FeedbackPolicy

VOCAB, DIM, BATCH = 7, 5, 4


@pytest.fixture
def embedding():
    torch.manual_seed(0)
    return torch.randn(VOCAB, DIM)


@pytest.fixture
def logits():
    torch.manual_seed(1)
    return torch.randn(BATCH, VOCAB)


@pytest.mark.parametrize("procedure", ["ss_greedy", "ss_sample"])
def test_hard_procedures_feed_a_one_hot_row(procedure, logits):
    weights = FeedbackPolicy(procedure).choice_weights(logits, alpha=1.0)
    assert torch.all((weights == 0) | (weights == 1))
    assert torch.all(weights.sum(-1) == 1)


def test_ss_greedy_picks_the_argmax(logits):
    weights = FeedbackPolicy("ss_greedy").choice_weights(logits, alpha=1.0)
    assert torch.equal(weights.argmax(-1), logits.argmax(-1))


@pytest.mark.parametrize("procedure", ["soft_greedy", "soft_sample"])
def test_soft_procedures_feed_a_distribution_over_the_vocabulary(procedure, logits):
    weights = FeedbackPolicy(procedure).choice_weights(logits, alpha=1.0)
    assert torch.allclose(weights.sum(-1), torch.ones(BATCH))
    assert torch.all(weights > 0)


def test_soft_greedy_applies_alpha_to_logits_not_probabilities(logits):
    weights = FeedbackPolicy("soft_greedy").choice_weights(logits, alpha=3.0)
    assert torch.allclose(weights, torch.softmax(3.0 * logits, dim=-1))


def test_soft_greedy_at_huge_alpha_matches_ss_greedy_forward(logits, embedding):
    gold = torch.zeros(BATCH, dtype=torch.long)
    soft = FeedbackPolicy("soft_greedy").next_input(logits, gold, embedding, gold_probability=0.0, alpha=1e4)
    hard = FeedbackPolicy("ss_greedy").next_input(logits, gold, embedding, gold_probability=0.0, alpha=1e4)
    assert torch.allclose(soft, hard, atol=1e-5)


def test_excluded_ids_are_never_chosen(embedding):
    logits = torch.zeros(BATCH, VOCAB)
    logits[:, 0] = 100.0  # padding scores highest
    policy = FeedbackPolicy("soft_greedy", excluded_ids=(0, 1))
    weights = policy.choice_weights(logits, alpha=1.0)
    assert torch.all(weights[:, :2] == 0)
    assert FeedbackPolicy("ss_greedy", excluded_ids=(0,)).choice_weights(logits, 1.0)[:, 0].sum() == 0


def test_top_k_keeps_only_the_k_highest_scores(logits):
    weights = FeedbackPolicy("soft_greedy", top_k=2).choice_weights(logits, alpha=1.0)
    assert torch.all((weights > 0).sum(-1) == 2)
    assert torch.equal(weights.argmax(-1), logits.argmax(-1))
    assert torch.allclose(weights.sum(-1), torch.ones(BATCH))


def test_top_k_embedding_equals_the_truncated_soft_vector_times_the_table(logits, embedding):
    policy = FeedbackPolicy("soft_greedy", top_k=3)
    fed = policy.next_input(logits, torch.zeros(BATCH, dtype=torch.long), embedding, 0.0, alpha=2.0)
    assert torch.allclose(fed, policy.choice_weights(logits, alpha=2.0) @ embedding, atol=1e-6)


def test_ce_always_feeds_gold(logits, embedding):
    gold = torch.tensor([3, 1, 4, 1])
    fed = FeedbackPolicy("ce").next_input(logits, gold, embedding, gold_probability=0.0, alpha=1.0)
    assert torch.equal(fed, embedding[gold])


def test_gold_probability_one_feeds_gold_for_every_procedure(logits, embedding):
    gold = torch.tensor([3, 1, 4, 1])
    for procedure in ["ss_greedy", "ss_sample", "soft_greedy", "soft_sample"]:
        fed = FeedbackPolicy(procedure).next_input(logits, gold, embedding, gold_probability=1.0, alpha=1.0)
        assert torch.equal(fed, embedding[gold])


def test_mixing_flips_an_independent_coin_per_example(embedding):
    torch.manual_seed(0)
    batch = 2000
    logits = torch.zeros(batch, VOCAB)
    logits[:, 5] = 50.0
    gold = torch.full((batch,), 2)
    fed = FeedbackPolicy("ss_greedy").next_input(logits, gold, embedding, gold_probability=0.3, alpha=1.0)
    took_gold = torch.all(fed == embedding[2], dim=-1).float()
    took_choice = torch.all(fed == embedding[5], dim=-1).float()
    assert torch.all(took_gold + took_choice == 1)
    assert abs(took_gold.mean().item() - 0.3) < 0.04


def _gradient_to_previous_logits(procedure: str, gold_probability: float = 0.0) -> torch.Tensor:
    """Loss at step i depends on the input fed from step i-1; returns d loss / d logits_{i-1}."""
    torch.manual_seed(0)
    embedding = torch.randn(VOCAB, DIM, requires_grad=True)
    previous_logits = torch.randn(BATCH, VOCAB, requires_grad=True)
    readout = torch.randn(DIM, VOCAB)
    fed = FeedbackPolicy(procedure).next_input(
        previous_logits, torch.zeros(BATCH, dtype=torch.long), embedding, gold_probability, alpha=1.0
    )
    step_loss = torch.nn.functional.cross_entropy(fed @ readout, torch.ones(BATCH, dtype=torch.long))
    step_loss.backward()
    return previous_logits.grad


@pytest.mark.parametrize("procedure", ["soft_greedy", "soft_sample"])
def test_soft_procedures_pass_gradient_to_the_previous_steps_logits(procedure):
    gradient = _gradient_to_previous_logits(procedure)
    assert gradient is not None and gradient.abs().sum() > 0


@pytest.mark.parametrize("procedure", ["ss_greedy", "ss_sample", "ce"])
def test_hard_procedures_pass_no_gradient_to_the_previous_steps_logits(procedure):
    gradient = _gradient_to_previous_logits(procedure)
    assert gradient is None or gradient.abs().sum() == 0


def test_gumbel_noise_never_touches_the_logits_it_is_given(logits, embedding):
    before = logits.clone()
    FeedbackPolicy("soft_sample").next_input(logits, torch.zeros(BATCH, dtype=torch.long), embedding, 0.0, 1.0)
    assert torch.equal(logits, before)


def test_soft_sample_is_random_and_soft_greedy_is_not(logits):
    soft_sample = FeedbackPolicy("soft_sample")
    assert not torch.allclose(soft_sample.choice_weights(logits, 1.0), soft_sample.choice_weights(logits, 1.0))
    soft_greedy = FeedbackPolicy("soft_greedy")
    assert torch.equal(soft_greedy.choice_weights(logits, 1.0), soft_greedy.choice_weights(logits, 1.0))


@pytest.mark.parametrize("procedure", ["ss_greedy", "ss_sample", "soft_greedy", "soft_sample"])
@pytest.mark.parametrize("top_k", [None, 3])
def test_fed_embedding_is_the_choice_weights_times_the_embedding_table(procedure, top_k, logits, embedding):
    """next_input's efficient paths (index lookup, embedding_bag) equal the definition, weights @ E."""
    policy = FeedbackPolicy(procedure, top_k=top_k)
    torch.manual_seed(5)
    weights = policy.choice_weights(logits, alpha=2.0)
    torch.manual_seed(5)
    fed = policy.next_input(logits, torch.zeros(BATCH, dtype=torch.long), embedding, 0.0, alpha=2.0)
    assert torch.allclose(fed, weights @ embedding, atol=1e-6)


@pytest.mark.parametrize("procedure", ["ss_greedy", "soft_greedy"])
def test_under_bf16_autocast_the_gold_coin_has_exactly_the_scheduled_probability(procedure, embedding):
    """A coin drawn in bf16 would use 0.98828125 for ε = 0.99 (issue 7); the soft choice is bf16 under autocast."""
    torch.manual_seed(0)
    batch = 2_000_000
    logits = torch.zeros(batch, VOCAB)
    logits[:, 5] = 50.0
    gold = torch.full((batch,), 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fed = FeedbackPolicy(procedure).next_input(logits, gold, embedding, gold_probability=0.99, alpha=100.0)
    assert fed.dtype == embedding.dtype
    took_gold = torch.all(fed == embedding[2], dim=-1).double().mean().item()
    assert abs(took_gold - 0.99) < 5e-4  # 7 standard deviations at this batch size; bf16's 0.9883 is 24 away


def test_the_noise_of_soft_sample_is_standard_gumbel():
    from trainer.feedback import negative_gumbel_noise

    torch.manual_seed(0)
    gumbel = -negative_gumbel_noise(torch.Size([400_000]), torch.device("cpu"))
    assert torch.isfinite(gumbel).all()
    assert gumbel.mean().item() == pytest.approx(0.5772, abs=0.01)  # the Euler-Mascheroni constant
    assert gumbel.var().item() == pytest.approx(torch.pi**2 / 6, abs=0.02)


def test_ss_sample_draws_each_id_as_often_as_its_softmax_probability():
    from trainer.feedback import categorical_sample

    torch.manual_seed(0)
    scores = torch.tensor([2.0, 0.0, -1.0, float("-inf"), 1.0])
    drawn = categorical_sample(scores.expand(200_000, -1))
    frequencies = torch.bincount(drawn, minlength=5).double() / drawn.numel()
    expected = torch.softmax(scores.double(), dim=-1)
    assert frequencies[3] == 0  # probability 0: never drawn
    assert torch.allclose(frequencies, expected, atol=0.004)  # > 4 standard deviations for every id


def test_ss_sample_never_draws_an_excluded_id_even_where_it_scores_highest():
    torch.manual_seed(0)
    logits = torch.zeros(4096, VOCAB)
    logits[:, 0] = logits[:, VOCAB - 1] = 100.0
    weights = FeedbackPolicy("ss_sample", excluded_ids=(0, VOCAB - 1)).choice_weights(logits, alpha=1.0)
    assert weights[:, 0].sum() == 0 and weights[:, VOCAB - 1].sum() == 0
