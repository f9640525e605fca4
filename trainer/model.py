"""The seq2seq model: encoder, attention, decoder. It owns its loss and knows nothing of schedules."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.attention import BahdanauAttention, FixedAttention
from trainer.config import MtModelConfig, NerModelConfig
from trainer.decoders import LSTMDecoder
from trainer.encoders import BiLSTMEncoder
from trainer.feedback import FeedbackPolicy
from trainer.vocabulary import EOS, Vocabulary


class Seq2Seq(nn.Module):
    def __init__(self, encoder: BiLSTMEncoder, decoder: LSTMDecoder, target_vocab: Vocabulary):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.bos_id = target_vocab.bos_id
        self.pad_id = target_vocab.pad_id
        # Never chosen on the fed-back path nor by greedy decoding (METHOD.md: mask padding and start).
        self.excluded_ids = (target_vocab.pad_id, target_vocab.bos_id)
        self.eos_id = target_vocab.index.get(EOS)  # MT: decoding stops at </s>; NER's tag set has none

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor):
        keys, final = self.encoder(src, src_lengths)  # (B, S, C), (B, 2H)
        mask = torch.arange(src.size(1), device=src.device)[None, :] < src_lengths[:, None]  # (B, S)
        return keys, mask, final

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        targets: torch.Tensor,
        feedback: FeedbackPolicy,
        gold_probability: float = 1.0,
        alpha: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """src: (B, S) ids, src_lengths: (B,), targets: (B, T) ids padded with pad_id.
        Returns logits (B, T, V) and the mean token cross-entropy against the gold targets."""
        keys, mask, final = self.encode(src, src_lengths)
        logits = self.decoder(keys, mask, final, targets, self.bos_id, feedback, gold_probability, alpha)
        return logits, self.loss(logits, targets)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean token cross-entropy of logits (B, T, V) against the gold targets (B, T), padding left out."""
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=self.pad_id)

    def greedy_decode(self, src: torch.Tensor, src_lengths: torch.Tensor, max_length: int) -> torch.Tensor:
        """Token ids (B, L), L <= max_length; with an </s> in the vocabulary, rows end with it (or are cut)."""
        keys, mask, final = self.encode(src, src_lengths)
        return self.decoder.greedy(keys, mask, final, self.bos_id, max_length, self.excluded_ids, self.eos_id)


def build_ner_model(config: NerModelConfig, source_vocab: Vocabulary, tag_vocab: Vocabulary) -> Seq2Seq:
    """§5: BiLSTM encoder, LSTM decoder, fixed attention (decoder step i reads encoder state i)."""
    encoder = BiLSTMEncoder(
        len(source_vocab), config.embedding_dim, config.encoder_hidden, config.dropout, source_vocab.pad_id
    )
    decoder = LSTMDecoder(
        vocab_size=len(tag_vocab),
        embedding_dim=config.embedding_dim,
        hidden_size=config.decoder_hidden,
        context_size=encoder.output_size,
        encoder_final_size=encoder.output_size,
        attention=FixedAttention(),
        dropout=config.dropout,
    )
    return Seq2Seq(encoder, decoder, tag_vocab)


def build_mt_model(config: MtModelConfig, source_vocab: Vocabulary, target_vocab: Vocabulary) -> Seq2Seq:
    """§5: BiLSTM encoder (1 layer, 256 per direction), LSTM decoder (1 layer, 256), additive attention over
    the encoder states, output layer over the target vocabulary (paper: 32000)."""
    encoder = BiLSTMEncoder(
        len(source_vocab), config.embedding_dim, config.encoder_hidden, config.dropout, source_vocab.pad_id
    )
    attention = BahdanauAttention(config.decoder_hidden, encoder.output_size, config.attention_dim)
    decoder = LSTMDecoder(
        vocab_size=len(target_vocab),
        embedding_dim=config.embedding_dim,
        hidden_size=config.decoder_hidden,
        context_size=encoder.output_size,
        encoder_final_size=encoder.output_size,
        attention=attention,
        dropout=config.dropout,
    )
    return Seq2Seq(encoder, decoder, target_vocab)
