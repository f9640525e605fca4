"""Subword units for translation: SentencePiece BPE or unigram models learnt from the training pairs a run uses.

Why: on the Ding pairs a word-level model keeps a long tail of word types it sees once or twice (14k English and
20k German types in 18k pairs), memorises them and writes `<unk>` for the rest; subword units (Sennrich et al.
2016; fairseq's IWSLT14 recipe learns a joint BPE of 10,000 merges) let rare words and German compounds be built
from frequent pieces. The paper's IWSLT14 preparation is meant to use them too (configs/mt_iwslt14.yaml).

What is done, and why each choice:

- The models are learnt from the training pairs the run trains on (after length filtering and any
  `max_train_sentences` slice, like the vocabularies), never from dev or test.
- Text arrives tokenized and lowercased (words separated by single spaces); SentencePiece keeps word boundaries
  as its "▁" marker, so decoding the pieces gives back exactly those words. Normalisation is off
  (`identity`, not SentencePiece's default NFKC, which would rewrite characters such as "…" and "ﬁ") and every
  training character is covered (`character_coverage` 1.0 by default), so encoding then decoding any training
  line is lossless; a dev or test character never seen in training becomes `<unk>`.
- Hypotheses are decoded back to words before scoring, and BLEU and chrF compare them with the references as
  read (never re-encoded), so scores are on the same words as word-level runs' and comparable with them.
- A learnt model is cached in the data directory under a key of the training text and the settings (and the
  sentencepiece version), so reruns and the restarts of a sweep reuse it; another text or setting gets another
  key. Concurrent trials that need the same model learn it once (a file lock). The model also travels inside
  every checkpoint, so `best.pt` is scored by its own segmentation even where the cache is gone.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from trainer.config import ConfigError, SubwordConfig
from trainer.data.fetch import _write_atomically
from trainer.progress import log_line
from trainer.vocabulary import UNK

SUBWORD_VERSION = 1  # bump when the training options below change, so cached models are relearnt
SIDES = ("source", "target")


def _sentencepiece():
    # Imported here: only runs with data.subwords set need it, and every command line would pay the import.
    import sentencepiece

    return sentencepiece


@dataclass
class Segmenter:
    """One side's SentencePiece model: words -> pieces for the model, pieces -> words for scoring."""

    model: bytes  # the serialized SentencePiece model, as cached and as stored in checkpoints

    def __post_init__(self) -> None:
        self._processor = _sentencepiece().SentencePieceProcessor(model_proto=self.model)

    def encode(self, words: Sequence[str]) -> tuple[str, ...]:
        return tuple(self._processor.encode(" ".join(words), out_type=str))

    def decode(self, pieces: Sequence[str]) -> list[str]:
        """The words the pieces spell; our vocabulary's `<unk>` is SentencePiece's unknown piece, and shows
        as `<unk>` (the model's unk_surface) inside whatever word it falls in."""
        return self._processor.decode_pieces([UNK if piece == UNK else piece for piece in pieces]).split()

    @property
    def size(self) -> int:
        return self._processor.get_piece_size()


@dataclass
class Segmenters:
    """The source and target segmenters of a run (one shared model when the config is joint)."""

    source: Segmenter
    target: Segmenter

    def state(self) -> dict[str, bytes]:
        """What checkpoints keep (beside the vocabularies) to rebuild the segmentation without the cache."""
        return {"source": self.source.model, "target": self.target.model}

    @classmethod
    def from_state(cls, state: dict[str, bytes]) -> Segmenters:
        return cls(Segmenter(state["source"]), Segmenter(state["target"]))


def cache_key(lines: dict[str, list[str]], settings: SubwordConfig) -> str:
    """sha256 of the settings, the sentencepiece version, the options' version and every training line."""
    digest = hashlib.sha256()
    described = {"settings": settings.model_dump(mode="json"), "sentencepiece": _sentencepiece().__version__}
    digest.update(json.dumps({**described, "version": SUBWORD_VERSION}, sort_keys=True).encode())
    for side in SIDES:
        digest.update(f"\n--{side}: {len(lines[side])} lines\n".encode())
        for line in lines[side]:
            digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def _learn(lines: Iterable[str], settings: SubwordConfig) -> bytes:
    writer = io.BytesIO()
    try:
        _sentencepiece().SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=writer,
            model_type=settings.model,
            vocab_size=settings.vocab_size,
            character_coverage=settings.character_coverage,
            normalization_rule_name="identity",  # lossless: the text is already normalised by its preparation
            hard_vocab_limit=False,  # vocab_size is a ceiling: a small corpus may not yield that many pieces
            num_threads=1,  # deterministic, and a trial's other CPUs are not its own
            bos_id=-1,
            eos_id=-1,  # the seq2seq vocabulary has its own <s> and </s>
            unk_surface=UNK,
            minloglevel=2,  # SentencePiece's progress log would flood a run's output
        )
    except RuntimeError as error:  # e.g. vocab_size below the number of distinct characters
        reason = str(error).split("] ")[-1]  # SentencePiece prefixes its source file and the failed check
        raise ConfigError(
            f"data.subwords: SentencePiece could not learn a model with these settings: {reason}"
        ) from None
    return writer.getvalue()


def learn_segmenters(lines: dict[str, list[str]], settings: SubwordConfig, data_dir: Path, log=log_line) -> Segmenters:
    """The segmenters for these training lines (one per side, or one joint model), from the cache under
    `data_dir/subwords/KEY/` or learnt and cached there."""
    key = cache_key(lines, settings)
    folder = Path(data_dir) / "subwords" / key[:24]
    folder.mkdir(parents=True, exist_ok=True)
    names = {"source": "joint", "target": "joint"} if settings.joint else {side: side for side in SIDES}
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the restarts of a sweep start at once: one learns, the others wait
        models: dict[str, bytes] = {}
        for name in sorted(set(names.values())):
            path = folder / f"{name}.model"
            if path.exists():
                models[name] = path.read_bytes()
                continue
            text = [*lines["source"], *lines["target"]] if name == "joint" else lines[name]
            log(f"Learning a {settings.model} subword model of {settings.vocab_size} pieces ({name}) on "
                f"{len(text)} training lines into {path} ...")  # fmt: skip
            models[name] = _learn(text, settings)
            _write_atomically(path, models[name])
        settings_file = folder / "settings.json"
        if not settings_file.exists():
            counts = {side: len(lines[side]) for side in SIDES}
            described = {"settings": settings.model_dump(mode="json"), "key": key, "lines": counts}
            _write_atomically(settings_file, (json.dumps(described, indent=2) + "\n").encode())
    return Segmenters(Segmenter(models[names["source"]]), Segmenter(models[names["target"]]))
