"""Shared fixtures: the real CoNLL-2003 English data, fetched once by the project's own code."""

import pytest

from trainer.config import resolve_data_dir
from trainer.data.fetch import conll2003_en_dir, fetch_conll2003_en


@pytest.fixture(scope="session")
def conll2003_en():
    """Paths of the real splits (train/dev/test) and of the official conlleval scorer."""
    data_dir = resolve_data_dir(None)
    paths = fetch_conll2003_en(data_dir)
    return {**paths, "conlleval": conll2003_en_dir(data_dir) / "conlleval"}
