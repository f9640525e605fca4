"""The speed benchmark prints every procedure's step time as a ratio to ce timed in the same run."""

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
    rows = {line.split()[0] + line.split()[1]: line.split() for line in result.stdout.splitlines()[2:]}
    assert set(rows) == {"ce-", "ss_greedy-", "ss_sample-", "soft_greedy-", "soft_sample-", "soft_greedy10",
                         "soft_sample10"}  # fmt: skip
    assert rows["ce-"][3] == "1.00"
    assert all(float(row[2]) > 0 and float(row[3]) > 0 for row in rows.values())
