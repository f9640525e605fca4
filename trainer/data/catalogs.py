"""German→English message pairs from the German message catalogs (gettext `.mo` files) in Debian packages: the
same kind of text as OPUS's KDE4, GNOME and OpenOffice corpora (user-interface strings, help and error messages),
a second real corpus beside the Ding dictionary's sentences.

Each catalog maps an English message (msgid) to its German translation (msgstr); a pair is (msgstr, msgid).
The packages are a fixed list (`PACKAGES`), downloaded with `apt-get download` (no root needed, nothing
installed), never read from the machine's own locale directory, so the corpus does not depend on what a machine
has installed; `manifest.json` records each package's version and sha256. From each package every `.mo` file of
the German locale (`…/de/LC_MESSAGES/*.mo`, WordPress's `*de_DE.mo`) is read, in the order of the list, files in
path order, messages in catalog order. What is done to each message, and why:

1. The header and untranslated messages are skipped; a message context (msgctxt) is dropped; of a plural
   message, the singular and, where German has its two forms, the plural (msgid_plural → msgstr[1]) are kept.
2. Accelerator marks go: `_`, `&` or `~` before a letter or digit (GTK, KDE/Qt, LibreOffice) is removed
   ("Save _As" / "Speichern _unter" become "Save As" / "Speichern unter"; translators place their own, so the
   sides need not agree: "Positive" / "Po_sitiv"), except inside (not at the start of) a word that both sides
   share, which is an identifier (file_name); `&&` stands for `&`, and an `&` that starts a character entity is none.
3. Markup goes: XML/HTML tags are removed and character entities decoded (`<b>Note:</b> &amp;` → `Note: &`).
4. `%PRODUCTNAME` becomes LibreOffice, what it shows at run time. A message with any other placeholder (printf's
   `%s` `%1$d` `%qs`, Qt's `%1`, `{0}` `{name}`, `%(name)s`, `$(ARG)`, `%VAR`) is dropped: a placeholder is
   not language, and a model would learn to copy markers the references score.
5. Line breaks inside a message become spaces (wrapped paragraphs); a message laid out in columns (a tab, or
   two spaces inside a line, as in `--help` texts) is dropped, since its lines do not translate one by one.
6. Typographic quotes become ASCII, both sides are tokenized with sacrebleu's 13a tokenizer and lowercased
   (the same normalisation as the Ding pairs and the IWSLT14 preparation).
7. A pair is kept when each side has a word of two letters or more, at most 50 tokens (the paper's length limit,
   so dev and test stay decodable), and the German differs from the English (untranslated names, commands and
   labels such as "Name" are copies, not translations).
8. Deduplicated by the German side: the first pair of each German message is kept.

The split is the Ding corpus's rule, a hash of the German line: sha256 mod 100 in 0-4 → test, 5-9 → valid,
10-99 → train. Messages are short and repetitive ("Datei öffnen", "Datei öffnen …"), so near-copies of a test
message occur in training: scores on this corpus's own test split are high and say little about translation
of sentences; they are reported beside Ding's, never instead. Debian bookworm's packages give about 62,000
pairs (manifest.json has the counts of the version fetched).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import struct
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from trainer.data.conll import DataFormatError
from trainer.data.debian import DebianPackage, download_packages, members_of_deb
from trainer.data.ding import normalise, split_of
from trainer.data.fetch import _write_atomically
from trainer.progress import log_line

NAME = "catalogs_de_en"
EXTRACTION_VERSION = 1  # bump when the rules above or PACKAGES change, so cached splits are rebuilt
SPLITS = ("train", "valid", "test")
MAX_TOKENS = 50

# Debian packages whose German catalogs are read; names that Debian bookworm and later carry. Office and desktop
# programs (most of the text), then system tools' messages. About 50 MB to download, once.
PACKAGES = (
    "libreoffice-l10n-de",
    "cinnamon-l10n",
    "vlc-l10n",
    "krita-l10n",
    "k3b-i18n",
    "kdevelop-l10n",
    "kile-l10n",
    "claws-mail-i18n",
    "sylpheed-i18n",
    "wordpress-l10n",
    "libvirt-l10n",
    "util-linux-locales",
    "e2fsprogs-l10n",
    "gnupg-l10n",
    "libc-l10n",
    "rpm-i18n",
    "gcc-12-locales",
    "coreutils",
    "tar",
    "bash",
    "grep",
    "sed",
    "findutils",
    "diffutils",
    "gettext",
    "wget",
    "apt",
    "dpkg",
)

GERMAN_CATALOG = re.compile(r"(^|/)de/LC_MESSAGES/[^/]+\.mo$|(^|[/-])de_DE\.mo$")
NO_APT_HELP = (
    "The message-catalog corpus is read from Debian packages only; train on the Ding pairs (data.dataset: "
    "ding_de_en) or on your own parallel text (data.dataset: files) instead."
)

_PLACEHOLDER = re.compile(
    r"%(\d+\$)?[-+ #0']*(\d+|\*)?(\.(\d+|\*))?(hh|h|ll|l|L|q|j|z|t|I64)*[a-zA-Z%<>@]"  # printf, GCC's %qs and %<, %@
    r"|%\d+|%\(\w+\)|%[A-Z_]{2,}|\{\d*\}|\{\w+\}|\$\(\w+\)|\$\{\w+\}|\$\w+"  # Qt, Python, LibreOffice, shell
)
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9:_-]*(\s[^<>]*)?/?>")
# A mark before a letter or digit; an `&` that starts a character entity (&amp;) is none.
_MARK = r"(?:[_~]|&(?!(?:#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);))(?=[^\W_])"
_ACCELERATOR = re.compile(r"(?<![&_~])" + _MARK)
# At the start of a word ("_Text", "(_640"), a mark is an accelerator even in a word both sides share.
_LEADING_ACCELERATOR = re.compile(r"(?<![\w&_~])" + _MARK)
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);")
_COLUMNS = re.compile(r"\t| {2,}")
_WORD = re.compile(r"[^\W\d_]{2,}")


@dataclass(frozen=True)
class CatalogMessage:
    """One translated message of a catalog (plural forms already split into messages)."""

    english: str
    german: str


def read_mo(content: bytes, source: str) -> Iterator[CatalogMessage]:
    """The messages of a GNU gettext `.mo` file (both byte orders), decoded with its header's charset.
    Raises DataFormatError naming `source` for anything that is not such a file."""
    if len(content) < 20:
        raise DataFormatError(f"{source}: not a GNU message catalog (too short)")
    magic = struct.unpack("<I", content[:4])[0]
    order = {0x950412DE: "<", 0xDE120495: ">"}.get(magic)
    if order is None:
        raise DataFormatError(f"{source}: not a GNU message catalog (bad magic number)")
    try:
        _, count, originals, translations = struct.unpack(order + "4I", content[4:20])

        def strings(table: int) -> list[bytes]:
            entries = [struct.unpack(order + "2I", content[table + 8 * i : table + 8 * i + 8]) for i in range(count)]
            for length, offset in entries:
                if offset + length > len(content):
                    raise DataFormatError(f"{source}: a string runs past the end of the file")
            return [content[offset : offset + length] for length, offset in entries]

        pairs = list(zip(strings(originals), strings(translations), strict=True))
    except struct.error:
        raise DataFormatError(f"{source}: truncated message catalog") from None
    charset = "utf-8"
    for original, translation in pairs:
        if original == b"":  # the header: "Content-Type: text/plain; charset=UTF-8" and others
            found = re.search(rb"charset=([-\w]+)", translation)
            charset = found.group(1).decode("ascii") if found else charset
    for original, translation in pairs:
        if original == b"":
            continue
        try:
            english_forms = original.decode(charset).split("\x04")[-1].split("\x00")  # context\x04msgid\x00plural
            german_forms = translation.decode(charset).split("\x00")
        except (UnicodeDecodeError, LookupError):
            raise DataFormatError(f"{source}: a message is not valid {charset}") from None
        yield CatalogMessage(english_forms[0], german_forms[0])
        if len(english_forms) == 2 and len(german_forms) == 2:  # German: singular, plural
            yield CatalogMessage(english_forms[1], german_forms[1])


def _drop_accelerators(english: str, german: str) -> tuple[str, str]:
    """Rule 2: every mark is an accelerator and goes, except one inside a word both sides share (an identifier
    such as file_name); translators place their own (English "Positive", German "Po_sitiv"), so the sides need
    not agree."""
    shared = set(english.split()) & set(german.split())

    def without_marks(text: str) -> str:
        words = [
            _LEADING_ACCELERATOR.sub("", word) if word in shared else _ACCELERATOR.sub("", word)
            for word in re.split(r"(\s+)", text)
        ]
        return "".join(words).replace("&&", "&")

    return without_marks(english), without_marks(german)


def _plain(text: str) -> str | None:
    """Rules 3-5: line breaks joined, tags removed, entities decoded; None for text in columns or with
    placeholders."""
    text = text.replace("%PRODUCTNAME", "LibreOffice")
    if _PLACEHOLDER.search(text):
        return None
    lines = [line.strip() for line in text.strip().splitlines()]
    if any(_COLUMNS.search(line) for line in lines):
        return None
    text = " ".join(line for line in lines if line)
    if _TAG.search(text) or _ENTITY.search(text):
        text = html.unescape(_TAG.sub(" ", text))
    return " ".join(text.split())


def clean_pair(message: CatalogMessage) -> tuple[str, str] | None:
    """(German, English), normalised like the Ding pairs, or None when the message is not kept (rules 2-7)."""
    if not message.english.strip() or not message.german.strip():
        return None
    english, german = _drop_accelerators(message.english, message.german)
    english, german = _plain(english), _plain(german)
    if english is None or german is None:
        return None
    de, en = normalise(german), normalise(english)
    sides = (de.split(), en.split())
    if de == en or any(len(side) > MAX_TOKENS or not _WORD.search(" ".join(side)) for side in sides):
        return None
    return de, en


def catalog_pairs(messages: Iterable[CatalogMessage]) -> Iterator[tuple[str, str]]:
    """Kept (German, English) pairs, the first pair of each German message only."""
    seen = set()
    for message in messages:
        pair = clean_pair(message)
        if pair is not None and pair[0] not in seen:
            seen.add(pair[0])
            yield pair


def catalogs_dir(data_dir: Path) -> Path:
    return Path(data_dir) / NAME


def catalogs_files(data_dir: Path) -> dict[str, Path]:
    folder = catalogs_dir(data_dir)
    return {f"{split}.{lang}": folder / f"{split}.{lang}" for split in SPLITS for lang in ("de", "en")}


def package_messages(package: DebianPackage) -> tuple[list[CatalogMessage], list[str]]:
    """Every message of the package's German catalogs, and the catalogs' paths inside the package."""
    messages, names = [], []
    with members_of_deb(package.path) as archive:
        members = [m for m in archive.getmembers() if m.isfile() and GERMAN_CATALOG.search(m.name.lstrip("./"))]
        for member in sorted(members, key=lambda m: m.name):
            name = member.name.lstrip("./")
            names.append(name)
            messages += read_mo(archive.extractfile(member).read(), f"{package.path.name}:{name}")
    return messages, names


def extract(packages: list[DebianPackage], folder: Path) -> dict:
    """Writes train/valid/test .de/.en and manifest.json into `folder`; returns the manifest."""
    splits: dict[str, list[tuple[str, str]]] = {split: [] for split in SPLITS}
    seen: set[str] = set()
    described = []
    for package in packages:
        messages, catalogs = package_messages(package)
        kept = [pair for pair in catalog_pairs(messages) if pair[0] not in seen]
        seen.update(de for de, _ in kept)
        for de, en in kept:
            splits[split_of(de)].append((de, en))
        described.append(
            {
                "package": package.name,
                "version": package.version,
                "sha256": hashlib.sha256(package.path.read_bytes()).hexdigest(),
                "catalogs": len(catalogs),
                "messages": len(messages),
                "pairs": len(kept),
            }
        )
    folder.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        _write_atomically(folder / f"{split}.de", "".join(de + "\n" for de, _ in pairs).encode("utf-8"))
        _write_atomically(folder / f"{split}.en", "".join(en + "\n" for _, en in pairs).encode("utf-8"))
    manifest = {
        "extraction_version": EXTRACTION_VERSION,
        "split_rule": "sha256(German line) mod 100: 0-4 test, 5-9 valid, 10-99 train",
        "packages": described,
        "pairs": {split: len(pairs) for split, pairs in splits.items()},
    }
    _write_atomically(folder / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def fetch_catalogs_de_en(data_dir: Path, log=log_line) -> dict[str, Path]:
    """train/valid/test .de/.en files of the message-catalog pairs; downloaded and extracted once."""
    folder = catalogs_dir(data_dir)
    files = catalogs_files(data_dir)
    manifest_path = folder / "manifest.json"
    if manifest_path.exists() and all(p.exists() for p in files.values()):
        if json.loads(manifest_path.read_text()).get("extraction_version") == EXTRACTION_VERSION:
            return files
    with tempfile.TemporaryDirectory() as tmp:
        log(f"Downloading {len(PACKAGES)} Debian packages with German message catalogs (about 50 MB, once) ...")
        packages = download_packages(list(PACKAGES), Path(tmp), NO_APT_HELP)
        log(f"Extracting German-English message pairs into {folder} ...")
        manifest = extract(packages, folder)
    counts = ", ".join(f"{split} {n}" for split, n in manifest["pairs"].items())
    log(f"Message catalogs de-en ready: {counts} pairs")
    return files
