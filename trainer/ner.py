"""NER as seq2seq tagging (paper §5): reads the splits, builds vocabularies, tensors, model, and scores F1.

A task object is what the training loop and `trainer.evaluate` need from a task;
the MT task offers the same methods.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from trainer.batching import SingletonDropout, bucketed_batches, pad
from trainer.config import NerConfig, resolve_data_dir
from trainer.data.conll import TaggedSentence, check_known_tags, read_conll
from trainer.data.fetch import fetch_conll2003_en
from trainer.metrics import span_f1, span_statistics
from trainer.model import Seq2Seq, build_ner_model
from trainer.progress import log_line
from trainer.vocabulary import BOS, PAD, UNK, Vocabulary


@dataclass
class Batch:
    src: torch.Tensor  # (B, S) word ids
    src_lengths: torch.Tensor  # (B,)
    targets: torch.Tensor  # (B, T) tag ids, T == S, padded with <pad>

    def to(self, device: torch.device) -> Batch:
        return Batch(self.src.to(device), self.src_lengths.to(device), self.targets.to(device))


def split_paths(config: NerConfig, log=log_line) -> dict[str, Path | None]:
    """Where each split lives; fetches the default data set on first use."""
    if config.data.dataset == "conll2003_en":
        return fetch_conll2003_en(resolve_data_dir(config.data_dir), log=log)
    return {"train": config.data.train_path, "dev": config.data.dev_path, "test": config.data.test_path}


class NerTask:
    metric = "f1"

    def __init__(self, config: NerConfig, vocabularies: dict[str, list[str]] | None = None, log=log_line):
        self.config = config
        self.paths = split_paths(config, log)
        if vocabularies is None:
            # Words from the training sentences this run uses (a max_train_sentences slice too): words seen only
            # elsewhere map to the trained <unk>, not to vectors that never trained. Tags from the whole training
            # split: they are the data set's label set (the first 30 CoNLL-2003 English sentences lack I-LOC),
            # and every output row trains.
            train = read_conll(self.paths["train"], config.data.encoding)
            used = train[: config.data.max_train_sentences]
            vocabularies = {
                "source": Vocabulary.build((s.tokens for s in used), specials=(PAD, UNK)).tokens,
                "target": Vocabulary.build((s.tags for s in train), specials=(PAD, BOS)).tokens,
            }
        self.vocabularies = vocabularies
        self.source_vocab = Vocabulary(vocabularies["source"])
        self.tag_vocab = Vocabulary(vocabularies["target"])

    def read_split(self, split: str) -> list[TaggedSentence]:
        path = self.paths.get(split)
        if path is None:
            raise FileNotFoundError(f"no {split} split configured (data.{split}_path)")
        sentences = read_conll(path, self.config.data.encoding)
        if split != "train":
            check_known_tags(sentences, set(self.tag_vocab.tokens), path)
        limit = {"train": self.config.data.max_train_sentences, "dev": self.config.data.max_dev_sentences}.get(split)
        return sentences[:limit] if limit else sentences

    def build_model(self) -> Seq2Seq:
        return build_ner_model(self.config.model, self.source_vocab, self.tag_vocab)

    def batches(self, sentences: list[TaggedSentence], batch_size: int, shuffle: bool) -> list[Batch]:
        lengths = [len(s.tokens) for s in sentences]
        result = []
        for indices in bucketed_batches(lengths, batch_size, shuffle):
            chosen = [sentences[i] for i in indices]
            result.append(
                Batch(
                    src=pad([self.source_vocab.encode(list(s.tokens)) for s in chosen], self.source_vocab.pad_id),
                    src_lengths=torch.tensor([len(s.tokens) for s in chosen]),
                    targets=pad([self.tag_vocab.encode(list(s.tags)) for s in chosen], self.tag_vocab.pad_id),
                )
            )
        return result

    def training_batches(self, sentences: list[TaggedSentence], batch_size: int) -> list[Batch]:
        """Shuffled batches with training singletons replaced by <unk> afresh on every call (every epoch)."""
        dropout = SingletonDropout(
            self.source_vocab, (s.tokens for s in sentences), self.config.data.unk_replace_probability
        )
        return [replace(batch, src=dropout(batch.src)) for batch in self.batches(sentences, batch_size, shuffle=True)]

    @torch.no_grad()
    def predict(self, model: Seq2Seq, sentences: list[TaggedSentence], device: torch.device) -> list[list[str]]:
        """Hard greedy decoding, one tag per source token, in the order of `sentences`."""
        model.eval()
        predictions: list[list[str] | None] = [None] * len(sentences)
        lengths = [len(s.tokens) for s in sentences]
        for indices in bucketed_batches(lengths, 256, shuffle=False):
            batch = self.batches([sentences[i] for i in indices], len(indices), shuffle=False)[0].to(device)
            ids = model.greedy_decode(batch.src, batch.src_lengths, max_length=batch.src.size(1))
            for row, index in enumerate(indices):
                predictions[index] = self.tag_vocab.decode(ids[row, : lengths[index]].tolist())
        return predictions

    def score(self, model: Seq2Seq, sentences: list[TaggedSentence], device: torch.device) -> dict[str, float]:
        predicted = self.predict(model, sentences, device)
        return {self.metric: span_f1([list(s.tags) for s in sentences], predicted)}

    def statistics(self, model: Seq2Seq, sentences: list[TaggedSentence], device: torch.device) -> np.ndarray:
        """Per-sentence span counts (metrics.span_statistics), from which F1 on any resample follows."""
        return span_statistics([list(s.tags) for s in sentences], self.predict(model, sentences, device))
