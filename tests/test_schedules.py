"""ε (gold probability) and α schedules (paper §5, METHOD.md)."""

import math

import pytest

from trainer.config import AlphaConfig, ProcedureConfig
from trainer.schedules import ScheduleState, gold_probability, inverse_sigmoid, soft_alpha


def test_epoch_zero_is_all_gold_for_every_procedure_and_k():
    for k in (1, 10, 100, "always"):
        procedure = ProcedureConfig(name="soft_greedy", k=k)
        assert gold_probability(procedure, ScheduleState(epoch=0, step=500)) == 1.0


def test_inverse_sigmoid_values():
    procedure = ProcedureConfig(name="ss_greedy", k=10)
    assert gold_probability(procedure, ScheduleState(epoch=3)) == pytest.approx(10 / (10 + math.exp(0.3)))


def test_k_100_per_epoch_stays_above_097_for_100_epochs():
    procedure = ProcedureConfig(name="soft_greedy", k=100)
    assert all(gold_probability(procedure, ScheduleState(epoch=e)) > 0.97 for e in range(1, 101))


def test_per_step_k_halves_gold_probability_after_k_ln_k_steps():
    procedure = ProcedureConfig(name="soft_greedy", k=10, schedule_unit="step")
    state = ScheduleState(epoch=1, step=400 + round(10 * math.log(10)), gold_steps=400)
    assert gold_probability(procedure, state) == pytest.approx(0.5, abs=0.01)


def test_per_step_decay_counts_from_the_end_of_the_all_gold_epoch():
    """At the first step of epoch 1, t = 0: ε = k/(k+1), not k/(k+exp(N0/k)) after N0 all-gold steps."""
    procedure = ProcedureConfig(name="ss_greedy", k=100, schedule_unit="step")
    state = ScheduleState()
    state.step = 5000  # epoch 0's steps: ε would be 100/(100+e^50) ≈ 0 if t counted them
    state.end_epoch()
    assert gold_probability(procedure, state) == pytest.approx(100 / 101)
    state.step += 100
    assert gold_probability(procedure, state) == pytest.approx(100 / (100 + math.e))


def test_later_epochs_do_not_move_the_start_of_the_per_step_decay():
    state = ScheduleState(epoch=1, step=40, gold_steps=40)
    state.step = 90
    state.end_epoch()
    assert (state.epoch, state.gold_steps) == (2, 40)


def test_schedule_state_survives_a_checkpoint_round_trip():
    state = ScheduleState(epoch=3, step=120, gold_steps=40)
    assert ScheduleState.from_state_dict(state.state_dict()) == state


def test_a_checkpoint_without_gold_steps_keeps_counting_steps_from_zero():
    """Runs checkpointed before gold_steps existed resume on the schedule they started with."""
    assert ScheduleState.from_state_dict({"epoch": 2, "step": 80}) == ScheduleState(epoch=2, step=80, gold_steps=0)


def test_always_never_feeds_gold_after_epoch_zero():
    procedure = ProcedureConfig(name="ss_greedy", k="always")
    assert gold_probability(procedure, ScheduleState(epoch=1)) == 0.0


def test_ce_is_always_gold():
    assert gold_probability(ProcedureConfig(name="ce", k=1), ScheduleState(epoch=50)) == 1.0


def test_gold_probability_decreases_with_epochs():
    procedure = ProcedureConfig(name="ss_sample", k=1)
    values = [gold_probability(procedure, ScheduleState(epoch=e)) for e in range(1, 10)]
    assert values == sorted(values, reverse=True)


def test_inverse_sigmoid_does_not_overflow():
    assert inverse_sigmoid(1e6, 1.0) == 0.0


def test_fixed_alpha_is_constant():
    alpha = AlphaConfig(mode="fixed", alpha0=5.0)
    assert {soft_alpha(alpha, ScheduleState(epoch=e)) for e in range(10)} == {5.0}


def test_annealed_alpha_grows_exponentially_with_the_epoch():
    alpha = AlphaConfig(mode="annealed", alpha0=2.0, growth=1.5, max_alpha=1000)
    assert soft_alpha(alpha, ScheduleState(epoch=3)) == pytest.approx(2.0 * 1.5**3)


def test_annealed_alpha_is_capped():
    alpha = AlphaConfig(mode="annealed", alpha0=2.0, growth=10.0, max_alpha=50.0)
    assert soft_alpha(alpha, ScheduleState(epoch=40)) == 50.0


def test_k_below_one_is_rejected():
    with pytest.raises(ValueError, match="k must be >= 1"):
        ProcedureConfig(k=0.5)
