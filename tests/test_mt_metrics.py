"""BLEU and chrF for MT: sacrebleu on tokenized lowercased text (multi-bleu semantics), checked against
sacrebleu's own command line on the same files."""

import json
import shutil
import subprocess

import pytest

from trainer.config import resolve_data_dir
from trainer.data.ding import fetch_ding_de_en
from trainer.metrics import corpus_bleu, corpus_chrf


@pytest.fixture(scope="module")
def references():
    files = fetch_ding_de_en(resolve_data_dir(None))
    return files["valid.en"].read_text(encoding="utf-8").splitlines()


def degrade(lines: list[str]) -> list[str]:
    """Deterministic 'translations': drop a word from every third line, swap two in every fifth, blank one."""
    out = []
    for number, line in enumerate(lines):
        words = line.split()
        if number % 3 == 0 and len(words) > 2:
            del words[1]
        if number % 5 == 0 and len(words) > 3:
            words[0], words[2] = words[2], words[0]
        out.append("" if number == 7 else " ".join(words))
    return out


def sacrebleu_cli(tmp_path, hypotheses, references) -> dict[str, float]:
    (tmp_path / "ref.txt").write_text("\n".join(references) + "\n", encoding="utf-8")
    (tmp_path / "hyp.txt").write_text("\n".join(hypotheses) + "\n", encoding="utf-8")
    command = ["sacrebleu", str(tmp_path / "ref.txt"), "-i", str(tmp_path / "hyp.txt"), "-tok", "none"]
    result = subprocess.run([*command, "-m", "bleu", "chrf", "-w", "6"], capture_output=True, text=True, check=True)
    return {entry["name"]: entry["score"] for entry in json.loads(result.stdout)}


@pytest.mark.skipif(shutil.which("sacrebleu") is None, reason="sacrebleu's command line is not on PATH")
def test_bleu_and_chrf_equal_the_sacrebleu_command_line_on_the_same_files(tmp_path, references):
    hypotheses = degrade(references)
    cli = sacrebleu_cli(tmp_path, hypotheses, references)
    assert corpus_bleu(hypotheses, references) == pytest.approx(cli["BLEU"], abs=1e-6)
    assert corpus_chrf(hypotheses, references) == pytest.approx(cli["chrF2"], abs=1e-6)
    assert 30 < cli["BLEU"] < 100


def test_identical_text_scores_100():
    lines = ["the house is small .", "where is the station ?"]
    assert corpus_bleu(lines, lines) == pytest.approx(100.0)
    assert corpus_chrf(lines, lines) == pytest.approx(100.0)


def test_text_is_not_tokenized_again():
    # multi-bleu semantics: tokens are what the whitespace says; 13a would split "can't" and "." alike.
    assert corpus_bleu(["i can 't go ."], ["i can't go ."]) < 100
    assert corpus_bleu(["i can't go."], ["i can't go ."]) < 100


def test_case_counts_as_written():
    # The data is lowercased on reading; the metric itself does not fold case.
    assert corpus_bleu(["The house is small ."], ["the house is small ."]) < 100
