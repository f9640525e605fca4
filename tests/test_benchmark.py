"""The speed benchmark prints every procedure's step time and kept memory as ratios to ce timed in the same run."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("task", ["ner", "mt"])
def test_speed_benchmark_smoke_prints_every_procedure_as_a_ratio_to_ce(task):
    result = subprocess.run(
        [sys.executable, "-m", "trainer.benchmark", "speed", "--smoke", "--task", task],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    rows = {line.split()[0] + line.split()[1]: line.split() for line in lines[1:]}
    assert set(rows) == {"ce-", "ce_unrolled-", "ss_greedy-", "ss_sample-", "soft_greedy-", "soft_sample-",
                         "soft_greedy10", "soft_sample10"}  # fmt: skip
    assert rows["ce-"][3] == "1.00" and rows["ce-"][8] == "1.00"  # time and memory kept, as ratios to ce
    figures = [2, 3, 7, 8] + ([4, 5, 6] if task == "ner" else [])  # the floor is measured for NER
    assert all(float(row[column]) > 0 for row in rows.values() for column in figures)


def test_the_ner_step_counts_the_products_of_the_paper_model_forward_and_backward():
    from trainer.benchmark import ner_matmuls
    from trainer.config import NerModelConfig

    batch, length, tags, e, h = 64, 20, 11, 64, 64  # every size 64 (§5), CoNLL-2003's 9 tags + 2 specials
    encoder = 2 * (2 * batch * length * e * 4 * h + 2 * batch * length * h * 4 * h)
    decoder = 2 * batch * 2 * h * h + 2 * batch * length * (e + 2 * h) * 4 * h + 2 * batch * length * h * 4 * h
    output = 2 * batch * length * (h + 2 * h) * tags
    forward = encoder + decoder + output
    assert sum(p.flops for p in ner_matmuls(NerModelConfig(), batch, length, tags, soft=False)) == 3 * forward
    soft = sum(p.flops for p in ner_matmuls(NerModelConfig(), batch, length, tags, soft=True))
    assert soft == 3 * (forward + 2 * batch * length * tags * e)
