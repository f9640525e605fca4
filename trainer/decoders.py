"""LSTM decoder that unrolls step by step, so that what it is fed can be the model's own choice.

The procedures of the paper feed step i-1's output back into step i, so the
decoder runs one LSTM cell step at a time for every procedure (one loop, not
five). Where every input is known in advance (teacher forcing, ε = 1, with an
attention that does not read the decoder state, as NER's fixed attention) the
same LSTM runs over the whole gold sequence in one fused call instead: the same
parameters and the same function, several times faster (issue 10).
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.feedback import FeedbackPolicy


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
        previous_ids = torch.cat([targets.new_full((targets.size(0), 1), bos_id), targets[:, :-1]], dim=1)  # (B, T)
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
        """Training unroll over gold targets (B, T); returns logits (B, T, V)."""
        if feedback.always_gold(gold_probability) and not self.attention.reads_decoder_state:
            return self.teacher_forced(keys, encoder_final, targets, bos_id)
        return self.unrolled(keys, mask, encoder_final, targets, bos_id, feedback, gold_probability, alpha)

    def unrolled(
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
        """The step-by-step unroll: step i is fed what `feedback` chooses from step i-1's logits; (B, T, V)."""
        batch, length = targets.shape
        state = self.initial_state(encoder_final)
        previous = self.embedding(torch.full((batch,), bos_id, dtype=torch.long, device=targets.device))
        step_logits = []
        for position in range(length):
            logits, state = self.step(previous, state, keys, mask, position)
            step_logits.append(logits)
            if position + 1 < length:
                previous = feedback.next_input(
                    logits, targets[:, position], self.embedding.weight, gold_probability, alpha
                )
        return torch.stack(step_logits, dim=1)

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
