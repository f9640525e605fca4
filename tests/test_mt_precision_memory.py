"""Scale: bf16 mixed precision keeps the logits, α·logits and the loss in float32; the soft path's memory and its
top-k remedy; the memory benchmark's command line; a CUDA training step where a GPU is at hand."""

import subprocess
import sys

import pytest
import torch

from trainer.benchmark import measure_step
from trainer.config import MtModelConfig
from trainer.feedback import FeedbackPolicy
from trainer.model import build_mt_model
from trainer.vocabulary import BOS, EOS, PAD, UNK, Vocabulary

SIZES = MtModelConfig(embedding_dim=8, encoder_hidden=8, decoder_hidden=8, attention_dim=8)


def small_model_and_batch(device="cpu"):
    torch.manual_seed(0)
    words = Vocabulary([PAD, UNK, BOS, EOS] + [f"w{i}" for i in range(50)])
    model = build_mt_model(SIZES, words, words).to(device)
    src, targets = torch.randint(4, 54, (3, 5), device=device), torch.randint(4, 54, (3, 6), device=device)
    return model, (src, torch.tensor([5, 4, 2]), targets)


def test_under_bf16_autocast_the_logits_alpha_times_logits_and_the_loss_stay_float32():
    # CPU autocast runs the same dtype rules as CUDA's for these ops, so this holds without a GPU.
    model, batch = small_model_and_batch()
    policy = FeedbackPolicy("soft_sample", model.excluded_ids)
    seen = []
    scores_of = policy._choice_scores
    policy._choice_scores = lambda logits, alpha: seen.append((logits.dtype, scores_of(logits, alpha))) or seen[-1][1]
    # oneDNN's fused LSTM (the encoder's) has no bf16 kernel on CPUs without AVX512-BF16; torch's own LSTM does.
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.backends.mkldnn.flags(enabled=False):
        logits, loss = model(*batch, policy, gold_probability=0.0, alpha=2.0)
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32
    assert seen and all(handed == torch.float32 and scores.dtype == torch.float32 for handed, scores in seen)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


SIZE = {"vocab": 3000, "batch": 4, "length": 6, "hidden": 16, "device": torch.device("cpu")}


def test_the_soft_path_keeps_more_for_backward_than_ce_and_top_k_cuts_it():
    ce = measure_step("ce", None, **SIZE)["saved_bytes"]
    soft = measure_step("soft_greedy", None, **SIZE)["saved_bytes"]
    truncated = measure_step("soft_greedy", 10, **SIZE)["saved_bytes"]
    # About one (B, V) float32 softmax per fed-back step: B·(T-1)·V·4 bytes.
    assert soft - ce >= 4 * 5 * 3000 * 4
    assert ce < truncated < soft


def test_hard_scheduled_sampling_keeps_about_what_ce_keeps():
    ce = measure_step("ce", None, **SIZE)["saved_bytes"]
    assert measure_step("ss_greedy", None, **SIZE)["saved_bytes"] < 1.2 * ce


@pytest.mark.slow
def test_memory_benchmark_smoke_prints_every_procedure_as_a_ratio_to_ce():
    result = subprocess.run(
        [sys.executable, "-m", "trainer.benchmark", "memory", "--smoke"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if not line.startswith(("#", "procedure"))]
    assert [r[0] for r in rows] == ["ce", "ss_greedy", "ss_sample", "soft_greedy", "soft_sample"] * 1 + [
        "soft_greedy",
        "soft_sample",
    ]
    assert rows[0][3] == "1.00"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("procedure", ["ce", "soft_sample"])
def test_a_bf16_training_step_on_cuda_is_finite(procedure):
    model, batch = small_model_and_batch("cuda")
    batch = (batch[0], batch[1], batch[2])
    optimizer = torch.optim.Adam(model.parameters())
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, loss = model(*batch, FeedbackPolicy(procedure, model.excluded_ids), gold_probability=0.0, alpha=2.0)
    loss.backward()
    optimizer.step()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())
