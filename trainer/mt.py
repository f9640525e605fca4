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
from trainer.data.catalogs import catalogs_dir, fetch_catalogs_de_en
from trainer.data.conll import DataFormatError
from trainer.data.ding import ding_dir, fetch_ding_de_en, fetch_ding_phrases_de_en, phrases_dir
from trainer.data.parallel import SentencePair, drop_long, read_parallel, split_files
from trainer.metrics import bleu_statistics, corpus_bleu, corpus_chrf
from trainer.model import Seq2Seq, build_mt_model
from trainer.progress import log_line
from trainer.search import beam_search, decode_lengths, greedy_search
from trainer.subwords import Segmenters, learn_segmenters
from trainer.vocabulary import BOS, EOS, PAD, UNK, Vocabulary

DECODE_BATCH = 64  # sentences per decoding batch (dev/test)


@dataclass
class Batch:
    src: torch.Tensor  # (B, S) source ids, padded with <pad>
    src_lengths: torch.Tensor  # (B,)
    targets: torch.Tensor  # (B, T) target ids followed by </s>, padded with <pad>

    def to(self, device: torch.device) -> Batch:
        return Batch(self.src.to(device), self.src_lengths.to(device), self.targets.to(device))


FETCHED = {
    "ding_de_en": (fetch_ding_de_en, ding_dir),
    "catalogs_de_en": (fetch_catalogs_de_en, catalogs_dir),
    "ding_phrases_de_en": (fetch_ding_phrases_de_en, phrases_dir),  # training split only (data.extra_training)
}


def corpus_folder(name: str, config: MtConfig, log=log_line) -> Path:
    """Where the train/valid/test files of corpus `name` (a fetched data set, or 'files') live; a fetched one is
    fetched and extracted on first use."""
    if name in FETCHED:
        fetch, folder = FETCHED[name]
        data_dir = resolve_data_dir(config.data_dir)
        fetch(data_dir, log=log)
        return folder(data_dir)
    return Path(config.data.path).expanduser()


def data_folder(config: MtConfig, log=log_line) -> Path:
    """Where the dataset's train/valid/test files live; extracts a fetched one on first use."""
    return corpus_folder(config.data.dataset, config, log)


def refuse_bpe_pieces(pairs: list[SentencePair], target_path: Path) -> None:
    """Text that subword-nmt has already split ("ver@@ stehen", as in the files fairseq's prepare-iwslt14.sh
    leaves) would be trained and scored on pieces, not words: BLEU would not be the paper's. It is refused."""
    for pair in pairs[:1000]:
        if any(token.endswith("@@") for token in pair.target):
            raise DataFormatError(
                f"{target_path}:{pair.line}: holds subword-nmt's '@@' pieces ({' '.join(pair.target)[:80]}): BLEU "
                "would count pieces, not words. Point data.path at the text before BPE (prepare-iwslt14.sh leaves it "
                "in iwslt14.tokenized.de-en/tmp/) and set data.subwords to split it (configs/mt_iwslt14.yaml)"
            )


class MtTask:
    metric = "bleu"
    supports_beam = True

    def __init__(self, config: MtConfig, vocabularies: dict | None = None, log=log_line):
        self.config = config
        self.folder = data_folder(config, log)
        self._extra_folders = [corpus_folder(name, config, log) for name in config.data.extra_training]
        self._splits: dict[str, list[SentencePair]] = {}
        subwords = config.data.subwords
        self.segmenters: Segmenters | None = None
        if vocabularies is None:
            # From the training pairs this run uses: length-filtered, and a max_train_sentences slice too.
            data = config.data
            if subwords is not None:
                words = self._words("train")
                lines = {side: [" ".join(getattr(p, side)) for p in words] for side in ("source", "target")}
                self.segmenters = learn_segmenters(lines, subwords, resolve_data_dir(config.data_dir), log)
            train = self.read_split("train")
            vocabularies = {
                "source": Vocabulary.build(
                    (p.source for p in train), (PAD, UNK), data.source_vocab_size, data.min_freq
                ).tokens,
                "target": Vocabulary.build(
                    (p.target for p in train), (PAD, UNK, BOS, EOS), data.target_vocab_size, data.min_freq
                ).tokens,
            }
            if self.segmenters is not None:
                vocabularies["subwords"] = self.segmenters.state()  # best.pt then segments without the cache
        elif subwords is not None:
            self.segmenters = Segmenters.from_state(vocabularies["subwords"])
        self.vocabularies = vocabularies
        self.source_vocab = Vocabulary(vocabularies["source"])
        self.target_vocab = Vocabulary(vocabularies["target"])

    def _read(self, folder: Path, split: str) -> list[SentencePair]:
        data = self.config.data
        source, target = split_files(folder, split, data.source_lang, data.target_lang)
        pairs = read_parallel(source, target, lowercase=data.lowercase, encoding=data.encoding)
        refuse_bpe_pieces(pairs, target)
        return pairs

    def _words(self, split: str) -> list[SentencePair]:
        """The split's pairs as read (words); training pairs include the extra corpora's, length-filtered and
        sliced to max_train_sentences."""
        pairs = self._read(self.folder, split)
        if split == "train":
            for folder in self._extra_folders:
                pairs += self._read(folder, "train")
            pairs = drop_long(pairs, self.config.data.max_length)
        limit = {"train": self.config.data.max_train_sentences, "dev": self.config.data.max_dev_sentences}.get(split)
        return pairs[:limit] if limit else pairs

    def read_split(self, split: str) -> list[SentencePair]:
        """The split's pairs in the model's units: words, or subword pieces that keep the words as the reference.
        Read and segmented once per task."""
        if split not in self._splits:
            pairs = self._words(split)
            if self.segmenters is not None:
                source, target = self.segmenters.source, self.segmenters.target
                pairs = [
                    SentencePair(source.encode(p.source), target.encode(p.target), p.line, p.target) for p in pairs
                ]
            self._splits[split] = pairs
        return self._splits[split]

    def build_model(self) -> Seq2Seq:
        return build_mt_model(self.config.model, self.source_vocab, self.target_vocab)

    def _batch(self, pairs: list[SentencePair]) -> Batch:
        eos = self.target_vocab.eos_id
        return Batch(
            src=pad([self.source_vocab.encode(list(p.source)) for p in pairs], self.source_vocab.pad_id),
            src_lengths=torch.tensor([len(p.source) for p in pairs]),
            targets=pad([self.target_vocab.encode(list(p.target)) + [eos] for p in pairs], self.target_vocab.pad_id),
        )

    def batches(
        self, pairs: list[SentencePair], batch_size: int, shuffle: bool, max_tokens: int | None = None
    ) -> list[Batch]:
        """Length-bucketed: the decoder unrolls over the longest target of a batch."""
        lengths = [max(len(p.source), len(p.target) + 1) for p in pairs]
        indices = bucketed_batches(lengths, batch_size, shuffle, max_tokens)
        return [self._batch([pairs[i] for i in batch]) for batch in indices]

    def training_batches(self, pairs: list[SentencePair], batch_size: int) -> list[Batch]:
        """Shuffled batches (of `batch_size` pairs, or filled to data.batch_tokens) with source singletons
        replaced by <unk> afresh on every call (every epoch); target words are what the loss scores, so they
        stay."""
        dropout = SingletonDropout(
            self.source_vocab, (p.source for p in pairs), self.config.data.unk_replace_probability
        )
        batches = self.batches(pairs, batch_size, shuffle=True, max_tokens=self.config.data.batch_tokens)
        return [replace(batch, src=dropout(batch.src)) for batch in batches]

    @torch.no_grad()
    def translate(
        self, model: Seq2Seq, pairs: list[SentencePair], device: torch.device, beam_size: int = 1
    ) -> list[list[str]]:
        """Greedy (beam_size 1, as in validation and the paper) or beam search; words (subword pieces decoded),
        in the order of `pairs`."""
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
                translations[index] = self.words(self.target_vocab.decode(ids[row]))
        return translations

    def words(self, units: list[str]) -> list[str]:
        """What the model wrote (target units) as words: subword pieces decoded, words as they are."""
        return units if self.segmenters is None else self.segmenters.target.decode(units)

    def score_translations(self, translations: list[list[str]], pairs: list[SentencePair]) -> dict[str, float]:
        """BLEU (the metric) and chrF of translations (words) against the references as read (tokenized,
        lowercased; never re-segmented), so subword and word-level runs are scored on the same words."""
        hypotheses = [" ".join(words) for words in translations]
        references = [" ".join(p.reference) for p in pairs]
        return {self.metric: corpus_bleu(hypotheses, references), "chrf": corpus_chrf(hypotheses, references)}

    def score(
        self, model: Seq2Seq, pairs: list[SentencePair], device: torch.device, beam_size: int = 1
    ) -> dict[str, float]:
        """Translates (greedy, or beam search) and scores the translations (score_translations)."""
        return self.score_translations(self.translate(model, pairs, device, beam_size), pairs)

    def statistics(self, model: Seq2Seq, pairs: list[SentencePair], device: torch.device) -> np.ndarray:
        """Per-sentence BLEU statistics (metrics.bleu_statistics) of greedy translations."""
        hypotheses = [" ".join(words) for words in self.translate(model, pairs, device)]
        return bleu_statistics(hypotheses, [" ".join(p.reference) for p in pairs])
