"""German→English translation (paper §5): parallel text, vocabularies, attention seq2seq, BLEU and chrF.

The same methods as `NerTask`, which is all the training loop and `trainer.evaluate` use.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from trainer.batching import SingletonDropout, bucketed_batches, pad
from trainer.config import MtConfig, resolve_data_dir
from trainer.data.ding import ding_dir, fetch_ding_de_en
from trainer.data.parallel import SentencePair, drop_long, read_parallel, split_files
from trainer.metrics import bleu_statistics, corpus_bleu, corpus_chrf
from trainer.model import Seq2Seq, build_mt_model
from trainer.progress import log_line
from trainer.search import beam_search, decode_lengths, greedy_search
from trainer.vocabulary import BOS, EOS, PAD, UNK, Vocabulary

DECODE_BATCH = 64  # sentences per decoding batch (dev/test)


@dataclass
class Batch:
    src: torch.Tensor  # (B, S) source ids, padded with <pad>
    src_lengths: torch.Tensor  # (B,)
    targets: torch.Tensor  # (B, T) target ids followed by </s>, padded with <pad>

    def to(self, device: torch.device) -> Batch:
        return Batch(self.src.to(device), self.src_lengths.to(device), self.targets.to(device))


def data_folder(config: MtConfig, log=log_line) -> Path:
    """Where the train/valid/test files live; extracts the Ding default on first use."""
    if config.data.dataset == "ding_de_en":
        data_dir = resolve_data_dir(config.data_dir)
        fetch_ding_de_en(data_dir, log=log)
        return ding_dir(data_dir)
    return Path(config.data.path).expanduser()


class MtTask:
    metric = "bleu"
    supports_beam = True

    def __init__(self, config: MtConfig, vocabularies: dict[str, list[str]] | None = None, log=log_line):
        self.config = config
        self.folder = data_folder(config, log)
        if vocabularies is None:
            # From the training pairs this run uses: length-filtered, and a max_train_sentences slice too.
            data = config.data
            train = self.read_split("train")
            vocabularies = {
                "source": Vocabulary.build(
                    (p.source for p in train), (PAD, UNK), data.source_vocab_size, data.min_freq
                ).tokens,
                "target": Vocabulary.build(
                    (p.target for p in train), (PAD, UNK, BOS, EOS), data.target_vocab_size, data.min_freq
                ).tokens,
            }
        self.vocabularies = vocabularies
        self.source_vocab = Vocabulary(vocabularies["source"])
        self.target_vocab = Vocabulary(vocabularies["target"])

    def _read(self, split: str) -> list[SentencePair]:
        data = self.config.data
        source, target = split_files(self.folder, split, data.source_lang, data.target_lang)
        pairs = read_parallel(source, target, lowercase=data.lowercase, encoding=data.encoding)
        return drop_long(pairs, data.max_length) if split == "train" else pairs

    def read_split(self, split: str) -> list[SentencePair]:
        pairs = self._read(split)
        limit = {"train": self.config.data.max_train_sentences, "dev": self.config.data.max_dev_sentences}.get(split)
        return pairs[:limit] if limit else pairs

    def build_model(self) -> Seq2Seq:
        return build_mt_model(self.config.model, self.source_vocab, self.target_vocab)

    def _batch(self, pairs: list[SentencePair]) -> Batch:
        eos = self.target_vocab.eos_id
        return Batch(
            src=pad([self.source_vocab.encode(list(p.source)) for p in pairs], self.source_vocab.pad_id),
            src_lengths=torch.tensor([len(p.source) for p in pairs]),
            targets=pad([self.target_vocab.encode(list(p.target)) + [eos] for p in pairs], self.target_vocab.pad_id),
        )

    def batches(self, pairs: list[SentencePair], batch_size: int, shuffle: bool) -> list[Batch]:
        """Length-bucketed: the decoder unrolls over the longest target of a batch."""
        lengths = [max(len(p.source), len(p.target) + 1) for p in pairs]
        return [self._batch([pairs[i] for i in indices]) for indices in bucketed_batches(lengths, batch_size, shuffle)]

    def training_batches(self, pairs: list[SentencePair], batch_size: int) -> list[Batch]:
        """Shuffled batches with source singletons replaced by <unk> afresh on every call (every epoch);
        target words are what the loss scores, so they stay."""
        dropout = SingletonDropout(
            self.source_vocab, (p.source for p in pairs), self.config.data.unk_replace_probability
        )
        return [replace(batch, src=dropout(batch.src)) for batch in self.batches(pairs, batch_size, shuffle=True)]

    @torch.no_grad()
    def translate(
        self, model: Seq2Seq, pairs: list[SentencePair], device: torch.device, beam_size: int = 1
    ) -> list[list[str]]:
        """Greedy (beam_size 1, as in validation and the paper) or beam search; in the order of `pairs`."""
        model.eval()
        translations: list[list[str] | None] = [None] * len(pairs)
        lengths = [len(p.source) for p in pairs]
        for indices in bucketed_batches(lengths, DECODE_BATCH, shuffle=False):
            batch = self._batch([pairs[i] for i in indices]).to(device)
            limits = decode_lengths(batch.src_lengths, self.config.model.max_decode_length)
            if beam_size == 1:
                ids = greedy_search(model, batch.src, batch.src_lengths, limits)
            else:
                ids = beam_search(model, batch.src, batch.src_lengths, limits, beam_size)
            for row, index in enumerate(indices):
                translations[index] = self.target_vocab.decode(ids[row])
        return translations

    def score(
        self, model: Seq2Seq, pairs: list[SentencePair], device: torch.device, beam_size: int = 1
    ) -> dict[str, float]:
        """BLEU (the metric) and chrF against the references as read (tokenized, lowercased)."""
        hypotheses = [" ".join(tokens) for tokens in self.translate(model, pairs, device, beam_size)]
        references = [" ".join(p.target) for p in pairs]
        return {self.metric: corpus_bleu(hypotheses, references), "chrf": corpus_chrf(hypotheses, references)}

    def statistics(self, model: Seq2Seq, pairs: list[SentencePair], device: torch.device) -> np.ndarray:
        """Per-sentence BLEU statistics (metrics.bleu_statistics) of greedy translations."""
        hypotheses = [" ".join(tokens) for tokens in self.translate(model, pairs, device)]
        return bleu_statistics(hypotheses, [" ".join(p.target) for p in pairs])
