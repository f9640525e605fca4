"""LSTM decoder that unrolls step by step, so that what it is fed can be the model's own choice.

The procedures of the paper feed step i-1's output back into step i, so the
decoder runs one LSTM cell step at a time for every procedure (one loop, not
five). Where every input is known in advance (teacher forcing, ε = 1, with an
attention that does not read the decoder state, as NER's fixed attention) the
same LSTM runs over the whole gold sequence in one fused call instead: the same
parameters and the same function, several times faster (issue 10).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from trainer.feedback import FeedbackPolicy
from trainer.unroll import KnownContextUnroll


class StepWeights(NamedTuple):
    """The decoder LSTM's and output layer's parameters split by what they multiply, so that the context's share of
    a step can be computed apart from the fed token (for every step at once where the contexts are known)."""

    token: torch.Tensor  # (4H, E): fed embedding -> gates
    context: torch.Tensor  # (4H, C): context -> gates
    recurrent: torch.Tensor  # (4H, H): previous hidden state -> gates
    gates_bias: torch.Tensor  # (4H,): both LSTM biases
    out_hidden: torch.Tensor  # (V, H): hidden state -> scores, float32
    out_context: torch.Tensor  # (V, C): context -> scores, float32
    out_bias: torch.Tensor  # (V,), float32


class UnrollInputs(NamedTuple):
    """What `LSTMDecoder.unroll_inputs` prepares for every step at once. The context terms, step weights and
    dropout masks only where the contexts are known before decoding."""

    gold: torch.Tensor  # (B, T, E): e(y*_{i-1}), e(<s>) first
    all_gold: bool  # teacher forcing: every step is fed `gold`
    coins: torch.Tensor | None  # (B, T, 1), True where gold is fed; None: the model's choice at every step (ε = 0)
    weights: StepWeights | None = None
    into_gates: torch.Tensor | None = None  # (B, T, 4H)
    into_scores: torch.Tensor | None = None  # (B, T, V)
    fed_masks: torch.Tensor | None = None  # (T, B, E) dropout masks; None: no dropout
    hidden_masks: torch.Tensor | None = None  # (T, B, H)


class LSTMDecoder(nn.Module):
    """One-layer LSTM decoder over [previous-token embedding; attention context]."""

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        context_size: int,
        encoder_final_size: int,
        attention: nn.Module,
        dropout: float,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.attention = attention
        self.bridge = nn.Linear(encoder_final_size, hidden_size)
        # One LSTM layer: `step` runs its cell (torch.lstm_cell on the same weights), `teacher_forced` the whole layer.
        self.lstm = nn.LSTM(embedding_dim + context_size, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_size + context_size, vocab_size)

    def initial_state(self, encoder_final: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = torch.tanh(self.bridge(encoder_final))  # (B, H)
        return hidden, torch.zeros_like(hidden)

    def step(
        self,
        previous: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        keys: torch.Tensor,
        mask: torch.Tensor,
        position: int,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """previous: (B, E) fed embedding; keys: (B, S, C); mask: (B, S) True at real tokens.
        Returns logits (B, V) and the new state."""
        context = self.attention(state[0], keys, mask, position)  # (B, C)
        lstm = self.lstm
        hidden, cell = torch.lstm_cell(
            torch.cat([self.dropout(previous), context], dim=-1),
            state,
            lstm.weight_ih_l0,
            lstm.weight_hh_l0,
            lstm.bias_ih_l0,
            lstm.bias_hh_l0,
        )
        logits = self.scores(self.dropout(torch.cat([hidden, context], dim=-1)))
        return logits, (hidden, cell)

    def step_weights(self) -> StepWeights:
        """`self.lstm`'s and `self.output`'s parameters split by what they multiply (views: gradients reach them)."""
        lstm, embedding_dim, hidden = self.lstm, self.embedding.embedding_dim, self.lstm.hidden_size
        return StepWeights(
            token=lstm.weight_ih_l0[:, :embedding_dim],
            context=lstm.weight_ih_l0[:, embedding_dim:],
            recurrent=lstm.weight_hh_l0,
            gates_bias=lstm.bias_ih_l0 + lstm.bias_hh_l0,
            out_hidden=self.output.weight[:, :hidden].float(),
            out_context=self.output.weight[:, hidden:].float(),
            out_bias=self.output.bias.float(),
        )

    def context_terms(self, contexts: torch.Tensor, weights: StepWeights) -> tuple[torch.Tensor, torch.Tensor]:
        """What the contexts (B, [T,] C) add to the LSTM's gates (B, [T,] 4H) and to the scores (B, [T,] V), biases
        included: the parts of a step that do not depend on the fed token."""
        flat = contexts.flatten(0, -2)
        into_gates = torch.addmm(weights.gates_bias, flat, weights.context.t())
        with torch.autocast(contexts.device.type, enabled=False):  # the output layer in float32, see `scores`
            into_scores = torch.addmm(weights.out_bias, self.dropout(flat).float(), weights.out_context.t())
        shape = contexts.shape[:-1]
        return into_gates.view(*shape, -1), into_scores.view(*shape, -1)

    def step_with_context_terms(
        self,
        previous: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        into_gates: torch.Tensor,
        into_scores: torch.Tensor,
        weights: StepWeights,
        dropout: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """`step` given its context's terms (from `context_terms`) and its dropout masks (fed embedding, hidden
        state; None: no dropout): what `step` computes, the LSTM cell over [fed embedding; context] and the output
        layer over [hidden; context], in two calls instead of six."""
        fed = previous if dropout is None else previous * dropout[0]
        hidden, cell = torch.lstm_cell(fed, state, weights.token, weights.recurrent, into_gates)
        dropped = hidden if dropout is None else hidden * dropout[1]
        with torch.autocast(hidden.device.type, enabled=False):
            logits = torch.addmm(into_scores, dropped.float(), weights.out_hidden.t())  # (B, V)
        return logits, (hidden, cell)

    def dropout_masks(self, batch: int, length: int, size: int, device: torch.device) -> torch.Tensor | None:
        """`self.dropout`'s masks (scaled by 1/(1-p)) for `length` steps of (B, size), (T, B, size), None where it
        drops nothing (evaluation, p = 0): one draw instead of one per step, which on CPU cost more than the step."""
        if not self.training or self.dropout.p == 0:
            return None
        keep = 1.0 - self.dropout.p
        return torch.empty(length, batch, size, device=device).bernoulli_(keep).div_(keep)

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """The output layer, in float32 even under bf16 autocast: the soft procedures multiply these logits by α
        (up to 100), and a bf16 logit of magnitude 8 is off by up to 0.03 (METHOD.md: α·s in float32)."""
        with torch.autocast(features.device.type, enabled=False):
            return self.output(features.float())

    def teacher_forced(
        self, keys: torch.Tensor, encoder_final: torch.Tensor, targets: torch.Tensor, bos_id: int
    ) -> torch.Tensor:
        """The training unroll when every step is fed the gold token and the contexts do not depend on the
        decoder state: one fused LSTM call over (B, T). Equals `unrolled` with ε = 1 (a test checks it)."""
        previous_ids = shifted(targets, bos_id)  # (B, T)
        contexts = self.attention.all_steps(keys, targets.size(1))  # (B, T, C)
        inputs = torch.cat([self.dropout(self.embedding(previous_ids)), contexts], dim=-1)  # (B, T, E + C)
        hidden, cell = self.initial_state(encoder_final)
        states, _ = self.lstm(inputs, (hidden[None], cell[None]))  # (B, T, H)
        return self.scores(self.dropout(torch.cat([states, contexts], dim=-1)))  # (B, T, V)

    def forward(
        self,
        keys: torch.Tensor,
        mask: torch.Tensor,
        encoder_final: torch.Tensor,
        targets: torch.Tensor,
        bos_id: int,
        feedback: FeedbackPolicy,
        gold_probability: float,
        alpha: float,
    ) -> torch.Tensor:
        """Training unroll over gold targets (B, T); returns logits (B, T, V). Teacher forcing with contexts known
        in advance is one fused LSTM call; the model's own choices with contexts known, one autograd node with a
        hand-written backward (trainer/unroll.py), in float32 (not under autocast) and for a policy that only
        chooses (`FeedbackPolicy.fusable`); else the step-by-step unroll."""
        contexts_known = not self.attention.reads_decoder_state
        if feedback.always_gold(gold_probability) and contexts_known:
            return self.teacher_forced(keys, encoder_final, targets, bos_id)
        if contexts_known and feedback.fusable() and not torch.is_autocast_enabled(keys.device.type):
            return self.fused_unroll(keys, encoder_final, targets, bos_id, feedback, gold_probability, alpha)
        return self.unrolled(keys, mask, encoder_final, targets, bos_id, feedback, gold_probability, alpha)

    def unrolled(self, *args) -> torch.Tensor:
        """The step-by-step unroll (see `unroll`), its steps' logits stacked: (B, T, V)."""
        return torch.stack(self.unroll(*args), dim=1)

    def unroll_inputs(self, keys, targets, bos_id, feedback: FeedbackPolicy, gold_probability: float) -> UnrollInputs:
        """Everything of the unroll that does not depend on what is fed, for all steps at once (issue 18), drawn
        in one order (coins, then dropout masks), so that both unrolls consume the random stream alike."""
        batch, length = targets.shape
        gold = self.embedding(shifted(targets, bos_id))  # (B, T, E): gold[:, i] is e(y*_{i-1}), e(<s>) first
        all_gold = feedback.always_gold(gold_probability)
        coins = None if all_gold else feedback.gold_coins((batch, length), gold_probability, targets.device)
        if self.attention.reads_decoder_state:
            return UnrollInputs(gold, all_gold, coins)
        weights = self.step_weights()
        into_gates, into_scores = self.context_terms(self.attention.all_steps(keys, length), weights)
        fed_masks = self.dropout_masks(batch, length, gold.size(-1), targets.device)
        hidden_masks = self.dropout_masks(batch, length, self.lstm.hidden_size, targets.device)
        return UnrollInputs(gold, all_gold, coins, weights, into_gates, into_scores, fed_masks, hidden_masks)

    def unroll(
        self,
        keys: torch.Tensor,
        mask: torch.Tensor,
        encoder_final: torch.Tensor,
        targets: torch.Tensor,
        bos_id: int,
        feedback: FeedbackPolicy,
        gold_probability: float,
        alpha: float,
    ) -> list[torch.Tensor]:
        """The step-by-step unroll through autograd: step i is fed what `feedback` chooses from step i-1's logits;
        a (B, V) per step. Where the contexts are known before decoding (NER's fixed attention), their share of
        every step's gates and scores comes from `unroll_inputs`, one matmul each instead of one per step; where
        the attention reads the decoder state (MT), each step is `step`. The reference for `fused_unroll`, and
        what the diagnostics differentiate step by step."""
        length = targets.size(1)
        inputs = self.unroll_inputs(keys, targets, bos_id, feedback, gold_probability)
        contexts_known = inputs.weights is not None
        if contexts_known:  # per step: views by unbind, whose backward is one stack instead of one scatter per step
            into_gates, into_scores = inputs.into_gates.unbind(1), inputs.into_scores.unbind(1)
            masks = None if inputs.fed_masks is None else list(zip(inputs.fed_masks, inputs.hidden_masks, strict=True))
        gold_steps = inputs.gold.unbind(1)
        coin_steps = None if inputs.coins is None else inputs.coins.unbind(1)
        state = self.initial_state(encoder_final)
        previous = gold_steps[0]
        step_logits = []
        for position in range(length):
            if contexts_known:
                dropout = None if masks is None else masks[position]
                logits, state = self.step_with_context_terms(
                    previous, state, into_gates[position], into_scores[position], inputs.weights, dropout
                )
            else:
                logits, state = self.step(previous, state, keys, mask, position)
            step_logits.append(logits)
            if position + 1 < length and inputs.all_gold:
                previous = gold_steps[position + 1]
            elif position + 1 < length:
                use_gold = None if coin_steps is None else coin_steps[position + 1]
                previous = feedback.next_input(logits, targets[:, position], self.embedding.weight, gold_probability,
                                               alpha, gold_steps[position + 1], use_gold)  # fmt: skip
        return step_logits

    def fused_unroll(self, keys, encoder_final, targets, bos_id, feedback: FeedbackPolicy, gold_probability: float,
                     alpha: float) -> torch.Tensor:  # fmt: skip
        """What `unrolled` computes where the contexts are known, as one autograd node (trainer/unroll.py); the
        model's own choice fed at some positions (ε < 1). (B, T, V)."""
        inputs = self.unroll_inputs(keys, targets, bos_id, feedback, gold_probability)
        h0, c0 = self.initial_state(encoder_final)
        step_major = lambda tensor: None if tensor is None else tensor.transpose(0, 1)  # noqa: E731
        logits = KnownContextUnroll.apply(
            step_major(inputs.into_gates), step_major(inputs.into_scores), step_major(inputs.gold),
            step_major(inputs.coins), inputs.fed_masks, inputs.hidden_masks, h0, c0, inputs.weights.token,
            inputs.weights.recurrent, inputs.weights.out_hidden, self.embedding.weight, feedback, alpha,
        )  # fmt: skip
        return logits.transpose(0, 1)

    @torch.no_grad()
    def greedy(
        self,
        keys: torch.Tensor,
        mask: torch.Tensor,
        encoder_final: torch.Tensor,
        bos_id: int,
        max_length: int,
        excluded_ids: tuple[int, ...] = (),
        eos_id: int | None = None,
    ) -> torch.Tensor:
        """Hard greedy decoding (validation and test, §3.3); returns token ids (B, L), L <= max_length.

        With `eos_id` (MT), a row that has produced it keeps producing it, and decoding
        stops once every row has; without (NER), it runs exactly max_length steps."""
        batch = keys.size(0)
        state = self.initial_state(encoder_final)
        previous_ids = torch.full((batch,), bos_id, dtype=torch.long, device=keys.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=keys.device)
        outputs = []
        for position in range(max_length):
            logits, state = self.step(self.embedding(previous_ids), state, keys, mask, position)
            if excluded_ids:
                logits = logits.index_fill(-1, torch.tensor(excluded_ids, device=logits.device), float("-inf"))
            previous_ids = logits.argmax(dim=-1)
            if eos_id is not None:
                previous_ids = previous_ids.masked_fill(finished, eos_id)
                finished |= previous_ids == eos_id
            outputs.append(previous_ids)
            if eos_id is not None and bool(finished.all()):
                break
        return torch.stack(outputs, dim=1)


def shifted(targets: torch.Tensor, bos_id: int) -> torch.Tensor:
    """The previous token of every target position, (B, T): <s>, then the targets but the last."""
    return torch.cat([targets.new_full((targets.size(0), 1), bos_id), targets[:, :-1]], dim=1)
