"""Decoding searches for translation: greedy (what validation and the paper use, §3.3) and beam search,
an option for final test scoring (`python -m trainer.evaluate --beam N`).

Both return, per sentence, the output token ids without </s>, cut at `max_lengths`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.model import Seq2Seq


def cut(ids: list[int], eos_id: int, max_length: int) -> list[int]:
    """Ids before the first </s>, at most max_length of them."""
    ids = ids[:max_length]
    return ids[: ids.index(eos_id)] if eos_id in ids else ids


def decode_lengths(src_lengths: torch.Tensor, cap: int) -> torch.Tensor:
    """How many tokens a translation may have: 2·(source length) + 10, at most `cap`."""
    return (2 * src_lengths + 10).clamp(max=cap)


@torch.no_grad()
def greedy_search(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, max_lengths: torch.Tensor):
    """src: (B, S), src_lengths: (B,), max_lengths: (B,) -> list of B id lists."""
    ids = model.greedy_decode(src, src_lengths, max_length=int(max_lengths.max()))  # (B, L)
    return [cut(row, model.eos_id, int(limit)) for row, limit in zip(ids.tolist(), max_lengths.tolist(), strict=True)]


@torch.no_grad()
def beam_search(
    model: Seq2Seq,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_lengths: torch.Tensor,
    beam_size: int,
    length_penalty: float = 1.0,
) -> list[list[int]]:
    """Keeps the `beam_size` best partial translations by summed log-probability.

    A hypothesis ends at </s> or at its sentence's max length and then stays in the
    beam with its score frozen. The answer is the best ended hypothesis by
    score / length**length_penalty (length counts </s>; 1.0 is the usual length
    normalisation, 0 ranks by raw log-probability). With beam_size 1 this is greedy search.
    """
    if model.eos_id is None:
        raise ValueError("beam search needs a target vocabulary with </s>")
    batch, beams = src.size(0), beam_size
    keys, mask, final = model.encode(src, src_lengths)
    keys, mask, final = (t.repeat_interleave(beams, dim=0) for t in (keys, mask, final))  # (B·K, ...)
    decoder = model.decoder
    state = decoder.initial_state(final)
    limits = max_lengths.to(src.device).repeat_interleave(beams)  # (B·K,)
    vocab = decoder.output.out_features
    scores = torch.full((batch, beams), float("-inf"), device=src.device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    previous = torch.full((batch * beams,), model.bos_id, dtype=torch.long, device=src.device)
    finished = torch.zeros(batch * beams, dtype=torch.bool, device=src.device)
    lengths = torch.zeros(batch * beams, dtype=torch.long, device=src.device)
    ended_row = torch.full((vocab,), float("-inf"), device=src.device)
    ended_row[model.eos_id] = 0.0  # an ended hypothesis continues with </s> at no cost
    row_offsets = (torch.arange(batch, device=src.device) * beams)[:, None]  # (B, 1)
    history: list[tuple[torch.Tensor, torch.Tensor]] = []  # per step: token (B·K,), parent (B·K,)

    for position in range(int(max_lengths.max())):
        logits, state = decoder.step(decoder.embedding(previous), state, keys, mask, position)
        log_probs = F.log_softmax(logits.float(), dim=-1)  # (B·K, V)
        log_probs[:, list(model.excluded_ids)] = float("-inf")
        log_probs = torch.where(finished[:, None], ended_row, log_probs)
        candidates = (scores.reshape(-1, 1) + log_probs).reshape(batch, beams * vocab)
        scores, flat = candidates.topk(beams, dim=-1)  # (B, K)
        parent = (flat // vocab + row_offsets).reshape(-1)  # (B·K,) index into the previous beams
        token = (flat % vocab).reshape(-1)
        state = (state[0][parent], state[1][parent])
        finished, lengths = finished[parent], lengths[parent]
        lengths = lengths + (~finished).long()
        finished = finished | (token == model.eos_id) | (lengths >= limits)
        history.append((token, parent))
        previous = token
        if bool(finished.all()):
            break

    normalised = scores / lengths.reshape(batch, beams).clamp(min=1).float() ** length_penalty
    best = normalised.argmax(dim=-1) + row_offsets.squeeze(1)  # (B,) flat index of each sentence's best
    tokens = []
    for token, parent in reversed(history):
        tokens.append(token[best])
        best = parent[best]
    ids = torch.stack(tokens[::-1], dim=1).tolist()  # (B, steps)
    return [cut(row, model.eos_id, int(limit)) for row, limit in zip(ids, max_lengths.tolist(), strict=True)]
