"""Bad input to `python -m orchestrator.sweep` is refused before anything starts: one clear message naming the
file, field or URI, exit status 2, no traceback, and nothing written (no output folder, no stores).

Every case here is refused before Ray, Optuna or MLflow would start, so no test starts them."""

from __future__ import annotations

import pytest
from sweep_helpers import SMOKE

from orchestrator import sweep


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-concurrent", "0", "argument --max-concurrent: must be at least 1, not 0"),
        ("--max-concurrent", "-3", "argument --max-concurrent: must be at least 1, not -3"),
        ("--max-failures", "-2", "argument --max-failures: must be at least -1, not -2"),
    ],
)
def test_option_out_of_range_is_an_argparse_error(option, value, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        sweep.main([str(SMOKE), option, value, "--out", str(tmp_path / "out")])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
