"""Schedules of the gold-mixing probability ε and the soft-argmax temperature α (paper §3.3, §5).

Both are pure functions of counters kept in `ScheduleState`, which lives in the
checkpoint: a resumed run continues the same schedule instead of restarting it
(a pitfall seen in public implementations, METHOD.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from trainer.config import AlphaConfig, ProcedureConfig


@dataclass
class ScheduleState:
    """Counters of completed training: `epoch` epochs and `step` optimizer steps, and `gold_steps`, the steps
    of the all-gold epoch 0, from whose end a per-step ε decay counts (issue 7: counting from step 0 made ε
    jump from 1 to k/(k+exp(N0/k)) at the first step of epoch 1)."""

    epoch: int = 0
    step: int = 0
    gold_steps: int = 0

    def end_epoch(self) -> None:
        if self.epoch == 0:
            self.gold_steps = self.step
        self.epoch += 1

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict) -> ScheduleState:
        # Checkpoints written before gold_steps existed counted per-step decay from step 0: they keep doing so.
        return cls(epoch=int(state["epoch"]), step=int(state["step"]), gold_steps=int(state.get("gold_steps", 0)))


def inverse_sigmoid(t: float, k: float) -> float:
    """Bengio et al. (2015): ε(t) = k / (k + exp(t/k)); larger k decays more gently."""
    exponent = t / k
    if exponent > 700:  # exp overflows float64; ε is 0 to machine precision long before
        return 0.0
    return k / (k + math.exp(exponent))


def gold_probability(procedure: ProcedureConfig, state: ScheduleState) -> float:
    """ε: the chance that a position is fed the gold token. Epoch 0 is all gold (§5); then t is the epoch
    index, or the optimizer steps taken since epoch 0 ended (0 at the first step of epoch 1)."""
    if procedure.name == "ce" or state.epoch == 0:
        return 1.0
    if procedure.k == "always":
        return 0.0
    t = state.epoch if procedure.schedule_unit == "epoch" else state.step - state.gold_steps
    return inverse_sigmoid(t, procedure.k)


def soft_alpha(alpha: AlphaConfig, state: ScheduleState) -> float:
    """α for this epoch: fixed, or α0·γ^epoch capped at max_alpha (§5 'α-soft annealed')."""
    if alpha.mode == "fixed":
        return min(alpha.alpha0, alpha.max_alpha)
    exponent = state.epoch * math.log(alpha.growth)
    if math.log(alpha.alpha0) + exponent >= math.log(alpha.max_alpha):
        return alpha.max_alpha
    return alpha.alpha0 * math.exp(exponent)
