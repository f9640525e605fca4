"""A small NER model with random weights and a fixed random batch, for tests of what the procedures compute."""

import torch

from trainer.config import NerModelConfig
from trainer.model import build_ner_model
from trainer.ner import Batch
from trainer.vocabulary import BOS, PAD, UNK, Vocabulary

WORDS = Vocabulary([PAD, UNK] + [f"w{i}" for i in range(30)])
TAGS = Vocabulary([PAD, BOS, "O", "B-ORG", "I-ORG", "B-PER", "I-PER"])


def tiny_ner_model_and_batch():
    """The model (seed 0) and a batch of 6 full-length sentences of 9 tokens (seed 3)."""
    torch.manual_seed(0)
    model = build_ner_model(NerModelConfig(), WORDS, TAGS)
    generator = torch.Generator().manual_seed(3)
    src = torch.randint(2, len(WORDS), (6, 9), generator=generator)
    targets = torch.randint(2, len(TAGS), (6, 9), generator=generator)
    return model, Batch(src, torch.full((6,), 9), targets)


def padded_ner_batch():
    """Five sentences of lengths 7, 6, 4, 3 and 1, padded to 7 (seed 3): (src, lengths, targets)."""
    generator = torch.Generator().manual_seed(3)
    src = torch.randint(2, len(WORDS), (5, 7), generator=generator)
    lengths = torch.tensor([7, 6, 4, 3, 1])
    targets = torch.randint(2, len(TAGS), (5, 7), generator=generator)
    for row, length in enumerate(lengths.tolist()):
        src[row, length:] = WORDS.pad_id
        targets[row, length:] = TAGS.pad_id
    return src, lengths, targets
