"""The training unroll of a decoder whose contexts are known before decoding (NER's fixed attention), as one autograd
node with a hand-written backward (issue 18).

Autograd through the step-by-step unroll records some thirty small operations per decoder step and replays each
backwards; on CPU that bookkeeping, not arithmetic, is most of what the procedures that feed their own choice pay
over teacher forcing. Here the forward pass runs the same steps without recording them, into buffers for all steps
(the fed embedding and the previous hidden state side by side, so that one product gives a step's gates), and
backward runs backpropagation through time by hand: per step only the products that depend on the step after it,
and the weight gradients of all steps at the end, one product each.

It computes what `LSTMDecoder.unroll` computes (tests/test_fused_unroll.py compares logits, loss and every
gradient): the LSTM cell of `torch.lstm_cell` (gates i, f, g, o), the output layer, and what the feedback policy
feeds. The policy stays the one place where procedures differ: its `choice_weights` gives the choice as weights p
over the vocabulary (one-hot for the hard procedures, softmax(α s + noise) for the soft ones), the fed embedding is
p @ E, and the gradient that flows back into the scores is that of the softmax, α p ⊙ (g - <p, g>), for the soft
procedures only.
"""

from __future__ import annotations

import torch

from trainer.feedback import FeedbackPolicy


class KnownContextUnroll(torch.autograd.Function):
    """Logits (T, B, V) of the unroll, from per-step tensors stacked on a leading step axis:

    into_gates (T, B, 4H), into_scores (T, B, V): the contexts' share of gates and scores (biases included);
    gold (T, B, E): e(y*_{i-1}) per step, e(<s>) first; coins (T, B, 1) bool or None (ε = 0: never gold);
    fed_masks (T, B, E), hidden_masks (T, B, H): dropout masks or None; h0, c0 (B, H); the weights token (4H, E),
    recurrent (4H, H), out_hidden (V, H) and the embedding table (V, E)."""

    @staticmethod
    def forward(ctx, into_gates, into_scores, gold, coins, fed_masks, hidden_masks, h0, c0, token, recurrent,
                out_hidden, embedding, feedback: FeedbackPolicy, alpha: float):  # fmt: skip
        steps, batch, embedding_dim = gold.shape
        hidden = recurrent.size(1)
        inputs_weight = torch.cat([token, recurrent], dim=1)  # (4H, E + H): [fed; h_{t-1}] -> gates
        inputs = gold.new_empty(steps, batch, embedding_dim + hidden)  # [fed (dropout applied); h_{t-1}] per step
        fed, previous_h = inputs[..., :embedding_dim], inputs[..., embedding_dim:]
        activations = into_gates.new_empty(into_gates.shape)  # σ(i), σ(f), tanh(g), σ(o)
        cells = c0.new_empty(steps + 1, batch, hidden)  # c0, then each step's cell
        tanh_cells = c0.new_empty(steps, batch, hidden)
        dropped = h0.new_empty(steps, batch, hidden)  # the hidden state the output layer read, dropout applied
        logits = into_scores.new_empty(into_scores.shape)
        weights = into_scores.new_zeros(into_scores.shape)  # p: the choice fed at step t + 1, from logits t
        cells[0], previous_h[0] = c0, h0
        feeding = gold[0]
        for t in range(steps):
            torch.mul(feeding, fed_masks[t], out=fed[t]) if fed_masks is not None else fed[t].copy_(feeding)
            gates = torch.addmm(into_gates[t], inputs[t], inputs_weight.t())
            act = activations[t]
            torch.sigmoid(gates, out=act)
            torch.tanh(gates[:, 2 * hidden : 3 * hidden], out=act[:, 2 * hidden : 3 * hidden])
            act_i, act_f, act_g, act_o = act.chunk(4, dim=1)
            torch.mul(act_f, cells[t], out=cells[t + 1]).addcmul_(act_i, act_g)
            torch.tanh(cells[t + 1], out=tanh_cells[t])
            h = previous_h[t + 1] if t + 1 < steps else dropped[t]
            torch.mul(act_o, tanh_cells[t], out=h)
            if hidden_masks is not None:
                torch.mul(h, hidden_masks[t], out=dropped[t])
            elif t + 1 < steps:
                dropped[t].copy_(h)
            torch.addmm(into_scores[t], dropped[t], out_hidden.t(), out=logits[t])
            if t + 1 < steps:
                weights[t] = feedback.choice_weights(logits[t], alpha)
                choice = weights[t] @ embedding
                feeding = choice if coins is None else torch.where(coins[t + 1], gold[t + 1], choice)
        ctx.save_for_backward(inputs, activations, cells, tanh_cells, dropped, weights, coins, fed_masks,
                              hidden_masks, inputs_weight, out_hidden, embedding)  # fmt: skip
        ctx.embedding_dim = embedding_dim
        ctx.soft_alpha = alpha if feedback.choice.soft else None
        return logits

    @staticmethod
    def backward(ctx, grad_logits):
        (inputs, activations, cells, tanh_cells, dropped, weights, coins, fed_masks, hidden_masks, inputs_weight,
         out_hidden, embedding) = ctx.saved_tensors  # fmt: skip
        steps, embedding_dim = grad_logits.size(0), ctx.embedding_dim
        hidden = cells.size(-1)
        # d(activation)/d(pre-activation) for every gate, from the activations: a(1 - a) for σ, 1 - a² for tanh.
        slopes = activations * (1 - activations)
        act_g = activations[..., 2 * hidden : 3 * hidden]
        torch.mul(act_g, act_g, out=slopes[..., 2 * hidden : 3 * hidden]).neg_().add_(1)
        grad_scores = grad_logits.clone()  # each step's: its own loss, plus what later steps send through feedback
        grad_gates = activations.new_empty(activations.shape)
        grad_gold = inputs.new_zeros(steps, *inputs.shape[1:-1], embedding_dim)
        grad_choice = torch.zeros_like(grad_gold)  # to the choice fed at step t, from the weights of step t - 1
        grad_h = inputs.new_zeros(inputs.shape[1:-1] + (hidden,))
        grad_c = torch.zeros_like(grad_h)
        gold_share = None if coins is None else coins.to(grad_gold.dtype)  # 1 where gold was fed
        for t in reversed(range(steps)):
            grad_dropped = grad_scores[t] @ out_hidden
            if hidden_masks is None:
                grad_h += grad_dropped
            else:
                grad_h.addcmul_(grad_dropped, hidden_masks[t])
            act_i, act_f, act_g, act_o = activations[t].chunk(4, dim=1)
            grad_c.addcmul_(grad_h * act_o, 1 - tanh_cells[t] * tanh_cells[t])
            grad_act = grad_gates[t]  # d loss / d activations of this step, then times their slopes
            gi, gf, gg, go = grad_act.chunk(4, dim=1)
            torch.mul(grad_c, act_g, out=gi), torch.mul(grad_c, cells[t], out=gf)
            torch.mul(grad_c, act_i, out=gg), torch.mul(grad_h, tanh_cells[t], out=go)
            grad_act.mul_(slopes[t])
            grad_c.mul_(act_f)
            grad_inputs = grad_act @ inputs_weight  # (B, E + H): to the fed embedding and h_{t-1}
            grad_fed, grad_h = grad_inputs[:, :embedding_dim], grad_inputs[:, embedding_dim:]
            if fed_masks is not None:
                grad_fed = grad_fed * fed_masks[t]
            if t == 0:
                grad_gold[0] = grad_fed  # step 0 is always fed e(<s>)
                continue
            if coins is None:
                grad_choice[t] = grad_fed
            else:
                torch.mul(grad_fed, gold_share[t], out=grad_gold[t])
                torch.sub(grad_fed, grad_gold[t], out=grad_choice[t])
            if ctx.soft_alpha is not None:  # d(p @ E)/d scores: the softmax's Jacobian, times α
                p = weights[t - 1]
                g = grad_choice[t] @ embedding.t()  # (B, V)
                g -= (p * g).sum(dim=1, keepdim=True)
                grad_scores[t - 1].addcmul_(p, g, value=ctx.soft_alpha)
        grad_h = grad_h.contiguous()
        flat = lambda tensor: tensor.flatten(0, 1)  # noqa: E731 (all steps at once: one product per weight)
        grad_inputs_weight = flat(grad_gates).t() @ flat(inputs)
        grad_token, grad_recurrent = grad_inputs_weight[:, :embedding_dim], grad_inputs_weight[:, embedding_dim:]
        grad_out_hidden = flat(grad_scores).t() @ flat(dropped)
        grad_embedding = flat(weights[:-1]).t() @ flat(grad_choice[1:])
        return (grad_gates, grad_scores, grad_gold, None, None, None, grad_h, grad_c, grad_token, grad_recurrent,
                grad_out_hidden, grad_embedding, None, None)  # fmt: skip
