"""German→English sentence pairs from the Ding dictionary (Debian package `trans-de-en`), the real
MT data this project trains on by default (the paper's IWSLT14 cannot be downloaded here; METHOD.md).

The dictionary (`/usr/share/trans/de-en`) has one entry per line,

    DE sub-entry | DE sub-entry :: EN sub-entry | EN sub-entry

sub-entries aligned by " | ", alternatives within one separated by "; ", with
annotations such as {f}, [ugs.], [coll.]. Most entries are words or phrases; a
few tens of thousands of sub-entries are example sentences. The extraction:

1. For every aligned sub-entry, take the first alternative of each side and drop
   the {...} and [...] annotations.
2. Keep it as a sentence pair when both sides end in . ! or ? (a closing quote may
   follow), both start with an upper-case letter, both have at least two words,
   and neither holds a dictionary placeholder (etw. jdm. jdn. jds. jd. sth. sb.).
3. Normalise typographic quotes to ASCII, tokenize both sides with sacrebleu's 13a
   tokenizer (mteval-v13a, close to the Moses tokenizer of the IWSLT14 scripts),
   and lowercase: the same form as the paper's data.
4. Keep the first pair of each German sentence.

The split is by a hash of the German side as written, so it never depends on the
machine, on Python's hash seed or on the order of the file: sha256(German line)
mod 100 in 0-4 -> test, 5-9 -> valid, 10-99 -> train (about 5/5/90 %). A sentence
keeps its split across dictionary versions; the set of sentences follows the
version, which `manifest.json` records. Debian bookworm's trans-de-en 1.9-6
(dictionary "devel 2023-01-30") gives 17,940 / 949 / 1,032 pairs (train / valid / test).

The dictionary's other sub-entries, words and phrases ("das A und O" → "the nuts and bolts"), are a second,
training-only corpus (`ding_phrases_de_en`, `phrase_pairs`): what a sentence uses once or never is often an
entry of its own. Kept are sub-entries whose sides both hold a letter, neither ends like a sentence (. ! ?) nor
holds a placeholder, at most 50 tokens a side, normalised as above, first pair per German phrase; a phrase
whose words (punctuation aside) are those of one of the extracted sentences is left out, so no dev or test
sentence returns as a phrase. It has no dev or test split of its own. Bookworm's 1.9-6: 300,975 pairs.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from trainer.data.debian import download_packages, members_of_deb
from trainer.data.fetch import FetchError, _write_atomically
from trainer.progress import log_line

PACKAGE = "trans-de-en"
INSTALLED_DICTIONARY = Path("/usr/share/trans/de-en")
DICTIONARY_MEMBER = "usr/share/trans/de-en"
EXTRACTION_VERSION = 1  # bump when the rules above change, so cached splits are rebuilt
SPLITS = ("train", "valid", "test")

NO_PACKAGE_HELP = (
    "Without the package, train on your own parallel text: set data.dataset: files and data.path: a folder "
    "with train.de, train.en, valid.de, valid.en, test.de, test.en (tokenized, one sentence per line). "
    "Or copy the Ding dictionary file (de-en, https://dict.tu-chemnitz.de/) to {cached} and fetch again."
)

_ANNOTATION = re.compile(r"\s*(\{[^}]*\}|\[[^\]]*\])")
_SENTENCE_END = re.compile(r"[.!?][\"'“”»«]*$")
_PLACEHOLDER = re.compile(r"\b(etw|jdm|jdn|jds|jd|sth|sb)\.(?!\w)")
_QUOTES = str.maketrans({"’": "'", "‘": "'", "‚": "'", "“": '"', "”": '"', "„": '"', "»": '"', "«": '"'})
_LETTER = re.compile(r"[^\W\d_]")
_tokenize = Tokenizer13a()


def ding_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "ding_de_en"


def ding_files(data_dir: Path) -> dict[str, Path]:
    folder = ding_dir(data_dir)
    return {f"{split}.{lang}": folder / f"{split}.{lang}" for split in SPLITS for lang in ("de", "en")}


def _clean(alternatives: str) -> str:
    first = alternatives.split("; ")[0]
    return re.sub(r"\s+", " ", _ANNOTATION.sub("", first)).strip()


def _starts_upper(text: str) -> bool:
    letter = re.search(r"\w", text)
    return letter is not None and letter.group().isupper()


def _is_sentence(text: str) -> bool:
    return (
        _SENTENCE_END.search(text) is not None
        and _starts_upper(text)
        and len(text.split()) >= 2
        and _PLACEHOLDER.search(text) is None
    )


def normalise(text: str) -> str:
    """Tokenized, lowercased, as the IWSLT14 preparation leaves text."""
    return _tokenize(text.translate(_QUOTES)).lower()


def aligned_sub_entries(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(German, English) of every aligned sub-entry: the first alternative of each side, annotations dropped
    (rule 1); entries whose sides have different numbers of sub-entries are skipped."""
    for line in lines:
        line = line.rstrip("\n")
        if line.startswith("#") or " :: " not in line:
            continue
        german, english = line.split(" :: ", 1)
        german_subs, english_subs = german.split(" | "), english.split(" | ")
        if len(german_subs) != len(english_subs):
            continue
        for german_sub, english_sub in zip(german_subs, english_subs, strict=True):
            yield _clean(german_sub), _clean(english_sub)


def sentence_pairs(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(German, English) sentence pairs of a Ding dictionary, normalised, first pair per German sentence."""
    seen = set()
    for de, en in aligned_sub_entries(lines):
        if not (_is_sentence(de) and _is_sentence(en)):
            continue
        de, en = normalise(de), normalise(en)
        if de not in seen:
            seen.add(de)
            yield de, en


def words_only(normalised: str) -> str:
    """The tokens that are not punctuation: "ich mag dich nicht ." and "ich mag dich nicht" agree."""
    return " ".join(token for token in normalised.split() if re.search(r"\w", token))


def phrase_pairs(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(German, English) word and phrase pairs of a Ding dictionary (trainer.data.ding_phrases), normalised,
    first pair per German phrase: sub-entries where neither side ends like a sentence and neither holds a
    dictionary placeholder, at most 50 tokens a side, minus any whose words repeat a sentence pair's German."""
    lines = list(lines)
    sentences = {words_only(de) for de, _ in sentence_pairs(lines)}
    seen = set()
    for de, en in aligned_sub_entries(lines):
        if any(
            not _LETTER.search(side) or _SENTENCE_END.search(side) or _PLACEHOLDER.search(side) for side in (de, en)
        ):
            continue
        de, en = normalise(de), normalise(en)
        if de in seen or words_only(de) in sentences or max(len(de.split()), len(en.split())) > 50:
            continue
        seen.add(de)
        yield de, en


def split_of(german: str) -> str:
    """test / valid / train from sha256 of the German line: fixed across machines and runs."""
    bucket = int(hashlib.sha256(german.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "test" if bucket < 5 else "valid" if bucket < 10 else "train"


def _dictionary_version(path: Path) -> str:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            if line.startswith("# Version ::"):
                return line.split("::", 1)[1].strip()
    return "unknown"


def _download_dictionary(cached: Path, log) -> None:
    """`apt-get download trans-de-en` (no root needed, nothing installed) and unpack the dictionary file."""
    with tempfile.TemporaryDirectory() as tmp:
        log(f"Downloading the Debian package {PACKAGE} (about 6 MB, once) ...")
        (package,) = download_packages([PACKAGE], Path(tmp), NO_PACKAGE_HELP.format(cached=cached))
        with members_of_deb(package.path) as archive:
            member = next((m for m in archive.getmembers() if m.name.lstrip("./") == DICTIONARY_MEMBER), None)
            if member is None:
                raise FetchError(f"{package.path.name} holds no {DICTIONARY_MEMBER}")
            cached.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(cached, archive.extractfile(member).read())


def locate_dictionary(data_dir: Path, log=log_line) -> Path:
    """The installed package's file, else a copy in the data directory, else download the package."""
    if INSTALLED_DICTIONARY.exists():
        return INSTALLED_DICTIONARY
    cached = ding_dir(data_dir) / "source" / "de-en"
    if not cached.exists():
        _download_dictionary(cached, log)
    return cached


def extract(dictionary: Path, folder: Path) -> dict:
    """Writes train/valid/test .de/.en and manifest.json into `folder`; returns the manifest."""
    splits: dict[str, list[tuple[str, str]]] = {split: [] for split in SPLITS}
    with dictionary.open(encoding="utf-8") as handle:
        for de, en in sentence_pairs(handle):
            splits[split_of(de)].append((de, en))
    folder.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        _write_atomically(folder / f"{split}.de", "".join(de + "\n" for de, _ in pairs).encode("utf-8"))
        _write_atomically(folder / f"{split}.en", "".join(en + "\n" for _, en in pairs).encode("utf-8"))
    manifest = {
        "source": str(dictionary),
        "dictionary_version": _dictionary_version(dictionary),
        "dictionary_sha256": hashlib.sha256(dictionary.read_bytes()).hexdigest(),
        "extraction_version": EXTRACTION_VERSION,
        "split_rule": "sha256(German line) mod 100: 0-4 test, 5-9 valid, 10-99 train",
        "pairs": {split: len(pairs) for split, pairs in splits.items()},
    }
    _write_atomically(folder / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def fetch_ding_de_en(data_dir: Path, log=log_line) -> dict[str, Path]:
    """train/valid/test .de/.en files of the Ding sentence pairs; extracted once into the data directory."""
    folder = ding_dir(data_dir)
    files = ding_files(data_dir)
    manifest_path = folder / "manifest.json"
    if manifest_path.exists() and all(p.exists() for p in files.values()):
        if json.loads(manifest_path.read_text()).get("extraction_version") == EXTRACTION_VERSION:
            return files
    dictionary = locate_dictionary(data_dir, log)
    log(f"Extracting German-English sentence pairs from {dictionary} into {folder} ...")
    manifest = extract(dictionary, folder)
    counts = ", ".join(f"{split} {n}" for split, n in manifest["pairs"].items())
    log(f"Ding de-en (dictionary {manifest['dictionary_version']}) ready: {counts} pairs")
    return files


PHRASES = "ding_phrases_de_en"
PHRASES_EXTRACTION_VERSION = 1


def phrases_dir(data_dir: Path) -> Path:
    return Path(data_dir) / PHRASES


def fetch_ding_phrases_de_en(data_dir: Path, log=log_line) -> dict[str, Path]:
    """train.de/train.en of the Ding dictionary's word and phrase pairs (`phrase_pairs`): a training-only corpus
    (data.extra_training) that teaches the words the sentence pairs use once or never. No dev or test: every
    phrase that repeats the words of one of the dictionary's sentences is left out, so no dev or test sentence
    of ding_de_en comes back as a phrase. Extracted once into the data directory."""
    folder = phrases_dir(data_dir)
    files = {f"train.{lang}": folder / f"train.{lang}" for lang in ("de", "en")}
    manifest_path = folder / "manifest.json"
    if manifest_path.exists() and all(p.exists() for p in files.values()):
        if json.loads(manifest_path.read_text()).get("extraction_version") == PHRASES_EXTRACTION_VERSION:
            return files
    dictionary = locate_dictionary(data_dir, log)
    log(f"Extracting German-English word and phrase pairs from {dictionary} into {folder} ...")
    with dictionary.open(encoding="utf-8") as handle:
        pairs = list(phrase_pairs(handle))
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(files["train.de"], "".join(de + "\n" for de, _ in pairs).encode("utf-8"))
    _write_atomically(files["train.en"], "".join(en + "\n" for _, en in pairs).encode("utf-8"))
    manifest = {
        "source": str(dictionary),
        "dictionary_version": _dictionary_version(dictionary),
        "dictionary_sha256": hashlib.sha256(dictionary.read_bytes()).hexdigest(),
        "extraction_version": PHRASES_EXTRACTION_VERSION,
        "pairs": {"train": len(pairs)},
    }
    _write_atomically(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode())
    log(f"Ding de-en word and phrase pairs ready: train {len(pairs)} pairs")
    return files
