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
    assert rows["ce-"][3] == "1.00" and rows["ce-"][5] == "1.00"
    assert all(float(value) > 0 for row in rows.values() for value in row[2:])
