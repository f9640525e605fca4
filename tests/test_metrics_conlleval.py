"""seqeval's span F1 agrees with the official conlleval Perl scorer shipped beside the data."""

import random
import re
import shutil
import subprocess

import pytest

from trainer.data.conll import read_conll
from trainer.metrics import span_f1

pytestmark = pytest.mark.skipif(shutil.which("perl") is None, reason="conlleval needs perl")


def corrupt(tags: list[str], rng: random.Random) -> list[str]:
    """Plausible tagging errors, including I- tags that start a chunk (where IOB semantics matter)."""
    choices = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
    return [rng.choice(choices) if rng.random() < 0.15 else tag for tag in tags]


def conlleval_f1(script, sentences, predictions) -> float:
    lines = []
    for sentence, predicted in zip(sentences, predictions, strict=True):
        lines += [f"{t} {g} {p}" for t, g, p in zip(sentence.tokens, sentence.tags, predicted, strict=True)]
        lines.append("")
    result = subprocess.run(["perl", str(script)], input="\n".join(lines), capture_output=True, text=True, check=True)
    return float(re.search(r"FB1:\s+([\d.]+)", result.stdout).group(1))


@pytest.mark.parametrize("seed", [0, 1])
def test_seqeval_f1_equals_conlleval_f1_on_real_dev_predictions(conll2003_en, seed):
    sentences = read_conll(conll2003_en["dev"])
    rng = random.Random(seed)
    predictions = [corrupt(list(s.tags), rng) for s in sentences]
    ours = span_f1([list(s.tags) for s in sentences], predictions)
    assert ours == pytest.approx(conlleval_f1(conll2003_en["conlleval"], sentences, predictions), abs=0.01)
    assert 20 < ours < 95  # the corruption is neither trivial nor total
