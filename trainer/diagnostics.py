"""Credit-assignment diagnostics: what the paper's relaxation changes, measured on the model being trained.

On a fixed batch of dev sentences, every step fed the model's own choice (ε = 0) at the epoch's α, dropout off:

credit_norm        the norm of the gradient that the loss sends to each step's scores *through what later
                   steps were fed*, i.e. the credit later decisions pass back to earlier ones: the gradient
                   with respect to the per-step scores, less the part that reaches them directly from their
                   own step's loss. Exactly 0 for the hard procedures, whose choice carries no gradient (§3).
gradient_variance  the variance of the parameter gradient over repeated draws of the procedure's noise
                   (the sample of ss_sample, the Gumbel noise of soft_sample), averaged over coordinates;
                   0 for the deterministic procedures.
"""

from __future__ import annotations

import torch

from trainer.feedback import FeedbackPolicy


def credit_norm(model, batch, feedback: FeedbackPolicy, alpha: float) -> float:
    """‖∂L/∂s − ∂L/∂s|direct‖ over every step's scores s (B, V), with L the batch's training loss at ε = 0."""
    if feedback.always_gold(0.0):
        return 0.0  # ce: no step is ever fed a choice
    keys, mask, final = model.encode(batch.src, batch.src_lengths)
    step_scores = model.decoder.unroll(keys, mask, final, batch.targets, model.bos_id, feedback, 0.0, alpha)
    logits = torch.stack(step_scores, dim=1)
    loss = model.loss(logits, batch.targets)
    # `logits` stacks the steps' scores: the loss reaches it only directly, each step's scores also through feedback.
    total = torch.autograd.grad(loss, step_scores, retain_graph=True)
    direct = torch.autograd.grad(loss, logits)[0]
    return float((torch.stack(total, dim=1) - direct).norm())


def gradient_variance(model, batch, feedback: FeedbackPolicy, alpha: float, draws: int) -> float:
    """Mean over parameters of the variance, across `draws` noise draws, of the loss gradient at ε = 0."""
    gradients = []
    for _ in range(draws):
        model.zero_grad(set_to_none=True)
        model(batch.src, batch.src_lengths, batch.targets, feedback, 0.0, alpha)[1].backward()
        gradients.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    model.zero_grad(set_to_none=True)
    return float(torch.stack(gradients).var(dim=0).mean())


def measure(model, batch, feedback: FeedbackPolicy, alpha: float, draws: int) -> dict[str, float]:
    """Both diagnostics, with dropout off and the random streams put back as they were, so that training goes on
    exactly as it would have without them."""
    was_training = model.training
    model.eval()
    device = batch.src.device
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            return {
                "credit_norm": credit_norm(model, batch, feedback, alpha),
                "gradient_variance": gradient_variance(model, batch, feedback, alpha, draws),
            }
    finally:
        model.train(was_training)
