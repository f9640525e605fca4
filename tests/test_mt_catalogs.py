"""The second real MT corpus: German→English message pairs from Debian's German message catalogs
(trainer/data/catalogs.py): reading .mo files, cleaning messages, the fetch, the split, and training on it."""

import io
import json
import lzma
import os
import re
import struct
import subprocess
import sys
import tarfile

import pytest

from trainer.config import ConfigError, parse_config, resolve_data_dir
from trainer.data import catalogs, debian
from trainer.data.catalogs import CatalogMessage, catalog_pairs, clean_pair, read_mo
from trainer.data.conll import DataFormatError
from trainer.data.ding import fetch_ding_de_en, split_of
from trainer.data.fetch import FetchError
from trainer.mt import MtTask

HEADER = "Content-Type: text/plain; charset=UTF-8\nPlural-Forms: nplurals=2; plural=(n != 1);\n"


def mo_file(messages: dict[str, str], byte_order: str = "<") -> bytes:
    """A GNU .mo file of (msgid → msgstr) written byte by byte as msgfmt lays it out: header, then the two
    tables of (length, offset) and the NUL-terminated strings; keys sorted as msgfmt sorts them."""
    entries = sorted({"": HEADER, **messages}.items(), key=lambda item: item[0].encode())
    originals, translations = [key.encode() for key, _ in entries], [value.encode() for _, value in entries]
    count, start = len(entries), 28
    data_start = start + 16 * count
    blob, tables = b"", []
    for strings in (originals, translations):
        table = []
        for string in strings:
            table.append((len(string), data_start + len(blob)))
            blob += string + b"\0"
        tables.append(table)
    head = struct.pack(byte_order + "7I", 0x950412DE, 0, count, start, start + 8 * count, 0, 0)
    table_bytes = b"".join(struct.pack(byte_order + "2I", *entry) for table in tables for entry in table)
    return head + table_bytes + blob


MESSAGES = {
    "Open File": "Datei öffnen",
    "menu\x04_Save As": "Speichern _unter",
    "%d file deleted\x00%d files deleted": "%d Datei gelöscht\x00%d Dateien gelöscht",
    "One tree\x00Many trees": "Ein Baum\x00Viele Bäume",
}


def messages(**entries) -> list[CatalogMessage]:
    return [CatalogMessage(english, german) for english, german in entries.values()]


# --- reading catalogs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_messages_contexts_and_plural_forms_are_read_from_a_catalog_in_either_byte_order(byte_order):
    read = set(read_mo(mo_file(MESSAGES, byte_order), "test.mo"))
    assert read == {
        CatalogMessage("Open File", "Datei öffnen"),
        CatalogMessage("_Save As", "Speichern _unter"),
        CatalogMessage("%d file deleted", "%d Datei gelöscht"),
        CatalogMessage("%d files deleted", "%d Dateien gelöscht"),
        CatalogMessage("One tree", "Ein Baum"),
        CatalogMessage("Many trees", "Viele Bäume"),
    }


@pytest.mark.parametrize("content", [b"", b"not a catalog at all, just text", mo_file(MESSAGES)[:40]])
def test_a_file_that_is_not_a_whole_catalog_is_refused_naming_it(content):
    with pytest.raises(DataFormatError, match=r"pkg\.deb:usr/share/locale/de/LC_MESSAGES/x\.mo: "):
        list(read_mo(content, "pkg.deb:usr/share/locale/de/LC_MESSAGES/x.mo"))


# --- cleaning messages -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "english, german, expected",
    [
        ("_Save As", "Speichern _unter", ("speichern unter", "save as")),
        ("Positive", "Po_sitiv", ("positiv", "positive")),  # translators place their own marks
        ("&Open", "Ö&ffnen", ("öffnen", "open")),  # KDE / Qt
        ("~Insert", "~Einfügen", ("einfügen", "insert")),  # LibreOffice
        ("_Text only", "Nur _Text", ("nur text", "text only")),  # at a word's start even in a shared word
        ("Set file_name now", "file_name jetzt setzen", ("file _ name jetzt setzen", "set file _ name now")),
        ("Tom && Jerry show", "Tom && Jerry Sendung", ("tom & jerry sendung", "tom & jerry show")),
    ],
)
def test_accelerator_marks_are_removed_and_identifiers_kept(english, german, expected):
    assert clean_pair(CatalogMessage(english, german)) == expected


def test_markup_is_removed_and_entities_decoded():
    message = CatalogMessage("<b>Note:</b> black &amp; white", "<b>Hinweis:</b> schwarz &amp; weiß")
    assert clean_pair(message) == ("hinweis : schwarz & weiß", "note : black & white")


@pytest.mark.parametrize(
    "english, german",
    [
        ("%s not found", "%s nicht gefunden"),
        ("%1$s by %2$s", "%1$s von %2$s"),
        ("type %qs is incomplete", "Typ %qs ist unvollständig"),
        ("Delete %1 files", "%1 Dateien löschen"),
        ("Hello {name}", "Hallo {name}"),
        ("Missing %(file)s here", "%(file)s fehlt hier"),
        ("Press keys for %@", "Tasten für %@ drücken"),
        ("Value of $(ARG1) here", "Wert von $(ARG1) hier"),
    ],
)
def test_messages_with_placeholders_are_dropped(english, german):
    assert clean_pair(CatalogMessage(english, german)) is None


def test_productname_becomes_libreoffice_as_at_run_time():
    message = CatalogMessage("Restart %PRODUCTNAME now", "%PRODUCTNAME jetzt neu starten")
    assert clean_pair(message) == ("libreoffice jetzt neu starten", "restart libreoffice now")


def test_wrapped_lines_are_joined_and_column_layouts_dropped():
    wrapped = CatalogMessage("Writing superblocks and\naccounting information: ", "Superblöcke und\nInformationen: ")
    assert clean_pair(wrapped) == (
        "superblöcke und informationen :",
        "writing superblocks and accounting information :",
    )
    columns = CatalogMessage("  -a, --all     do not ignore entries\n", "  -a, --all     nichts ignorieren\n")
    assert clean_pair(columns) is None


@pytest.mark.parametrize(
    "english, german",
    [("Name", "Name"), ("OK", "OK"), ("42", "42"), ("word " * 51, "Wort " * 51), ("", "Leer"), ("Empty", "")],
)
def test_untranslated_wordless_overlong_and_empty_messages_are_dropped(english, german):
    assert clean_pair(CatalogMessage(english, german)) is None


def test_a_german_message_is_kept_once():
    pairs = list(catalog_pairs(messages(a=("Open file", "Datei öffnen"), b=("_Open File", "Datei öffnen"))))
    assert pairs == [("datei öffnen", "open file")]


# --- the fetch -------------------------------------------------------------------------------------------------


def make_deb(path, files: dict[str, bytes]):
    """A minimal Debian package: ar archive of debian-binary, control.tar.xz and data.tar.xz holding `files`."""

    def tar_xz(members: dict[str, bytes]) -> bytes:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as archive:
            for name, content in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
        return lzma.compress(raw.getvalue())

    members = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", tar_xz({"./control": b"Package: x\nVersion: 1\n"})),
        ("data.tar.xz", tar_xz(files)),
    ]
    blob = b"!<arch>\n"
    for name, content in members:
        blob += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(content):<10}`\n".encode() + content
        blob += b"\n" if len(content) % 2 else b""
    path.write_bytes(blob)


@pytest.fixture
def fake_apt(tmp_path, monkeypatch):
    """An `apt-get` on PATH whose `download` copies hand-made packages of every name in catalogs.PACKAGES into
    the current folder: the first holds German and French catalogs, the second a German one, the rest none."""
    debs = tmp_path / "debs"
    debs.mkdir()
    office, tool, *others = catalogs.PACKAGES
    make_deb(
        debs / f"{office}_1%3a2.0-1_all.deb",
        {
            "./usr/lib/office/resource/de/LC_MESSAGES/ui.mo": mo_file({"Open File": "Datei öffnen", "Red": "Rot"}),
            "./usr/lib/office/resource/fr/LC_MESSAGES/ui.mo": mo_file({"Open File": "Ouvrir le fichier"}),
        },
    )
    make_deb(
        debs / f"{tool}_3.1_amd64.deb",
        {"./usr/share/locale/de/LC_MESSAGES/tool.mo": mo_file({"Where is the station?": "Wo ist der Bahnhof?"})},
    )
    for name in others:
        make_deb(debs / f"{name}_1_all.deb", {"./usr/share/doc/README": b"no catalogs\n"})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(f"#!/bin/sh\ncp {debs}/*.deb .\n")
    (bin_dir / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return tmp_path / "data"


def read_splits(files) -> dict[str, list[tuple[str, str]]]:
    return {
        split: list(
            zip(
                files[f"{split}.de"].read_text().splitlines(),
                files[f"{split}.en"].read_text().splitlines(),
                strict=True,
            )
        )
        for split in ("train", "valid", "test")
    }


def test_fetch_writes_split_files_and_a_manifest_of_package_versions(fake_apt):
    files = catalogs.fetch_catalogs_de_en(fake_apt, log=lambda _: None)
    manifest = json.loads((fake_apt / "catalogs_de_en" / "manifest.json").read_text())
    described = [(p["package"], p["version"], p["catalogs"], p["pairs"]) for p in manifest["packages"]]
    assert described[:3] == [
        (catalogs.PACKAGES[0], "1:2.0-1", 1, 2),
        (catalogs.PACKAGES[1], "3.1", 1, 1),
        (catalogs.PACKAGES[2], "1", 0, 0),
    ]
    assert [name for name, *_ in described] == list(catalogs.PACKAGES)
    assert all(len(p["sha256"]) == 64 for p in manifest["packages"])
    written = read_splits(files)
    assert sorted(pair for pairs in written.values() for pair in pairs) == [
        ("datei öffnen", "open file"),
        ("rot", "red"),
        ("wo ist der bahnhof ?", "where is the station ?"),
    ]
    assert all(split_of(de) == split for split, pairs in written.items() for de, _ in pairs)
    assert written["test"] == [("wo ist der bahnhof ?", "where is the station ?")]  # Ding's split rule, pinned
    assert manifest["pairs"] == {split: len(pairs) for split, pairs in written.items()}


def test_fetch_command_extracts_into_the_data_dir_and_prints_the_files(fake_apt):
    result = subprocess.run(
        [sys.executable, "-m", "trainer.data", "fetch", "catalogs_de_en", "--data-dir", str(fake_apt)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    printed = dict(line.split("\t") for line in result.stdout.splitlines() if "\t" in line)
    assert set(printed) == {f"{s}.{lang}" for s in ("train", "valid", "test") for lang in ("de", "en")}
    assert all(path.startswith(str(fake_apt / "catalogs_de_en")) for path in printed.values())


def test_without_apt_get_the_error_says_what_to_train_on_instead(tmp_path, monkeypatch):
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    with pytest.raises(FetchError, match=r"data\.dataset: ding_de_en"):
        catalogs.fetch_catalogs_de_en(tmp_path / "data", log=lambda _: None)


# --- config ----------------------------------------------------------------------------------------------------


def test_extra_training_with_your_own_files_is_refused():
    with pytest.raises(ConfigError, match=r"data: .*extra_training .*dataset: files"):
        parse_config({"task": "mt", "data": {"dataset": "files", "path": "x", "extra_training": ["catalogs_de_en"]}})


def test_extra_training_naming_the_dataset_itself_is_refused():
    with pytest.raises(ConfigError, match="counts? twice"):
        parse_config({"task": "mt", "data": {"dataset": "catalogs_de_en", "extra_training": ["catalogs_de_en"]}})


# --- the real corpus -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_catalogs():
    return catalogs.fetch_catalogs_de_en(resolve_data_dir(None))


@pytest.mark.slow
def test_real_catalogs_give_tens_of_thousands_of_pairs_split_about_90_5_5(real_catalogs):
    german = {s: real_catalogs[f"{s}.de"].read_text(encoding="utf-8").splitlines() for s in ("train", "valid", "test")}
    total = sum(len(lines) for lines in german.values())
    assert total > 30000 and len(set().union(*german.values())) == total  # deduplicated: no German line twice
    assert 0.03 < len(german["valid"]) / total < 0.07 and 0.03 < len(german["test"]) / total < 0.07
    manifest = json.loads((real_catalogs["train.de"].parent / "manifest.json").read_text())
    assert [p["package"] for p in manifest["packages"]] == list(catalogs.PACKAGES)
    assert all(p["version"] and p["catalogs"] >= 1 for p in manifest["packages"])


@pytest.mark.slow
def test_real_catalog_pairs_hold_no_placeholders_or_accelerators(real_catalogs):
    for lang in ("de", "en"):
        text = real_catalogs[f"train.{lang}"].read_text(encoding="utf-8")
        assert not re.search(r"%[sdiu]|(^| )[_&~][^\W\d_]|<b>|&amp;", text, re.MULTILINE)


@pytest.mark.slow
def test_training_on_ding_with_the_catalogs_adds_their_training_pairs_and_keeps_dings_dev(real_catalogs):
    ding = fetch_ding_de_en(resolve_data_dir(None))
    config = parse_config({"task": "mt", "data": {"extra_training": ["catalogs_de_en"], "max_length": None}})
    task = MtTask(config, log=lambda _: None)
    train_pairs = task.read_split("train")
    ding_train = len(ding["train.de"].read_text(encoding="utf-8").splitlines())
    catalog_train = len(real_catalogs["train.de"].read_text(encoding="utf-8").splitlines())
    assert len(train_pairs) == ding_train + catalog_train
    dev_german = {" ".join(p.source) for p in task.read_split("dev")}
    assert dev_german == set(ding["valid.de"].read_text(encoding="utf-8").splitlines())
    assert not dev_german & {" ".join(p.source) for p in train_pairs}


@pytest.mark.slow
def test_a_checkpoint_trained_on_ding_is_scored_on_the_catalogs_test_split_with_corpus(real_catalogs, tmp_path):
    tiny = [f"{key}=16" for key in ("model.embedding_dim", "model.encoder_hidden", "model.decoder_hidden")]
    overrides = [*tiny, "model.attention_dim=16", "data.max_train_sentences=100", "data.max_dev_sentences=20"]
    sets = [arg for override in [*overrides, "optim.epochs=1"] for arg in ("--set", override)]
    command = [sys.executable, "-m", "trainer", "configs/mt_ding.yaml", "--out", str(tmp_path), "--no-progress"]
    assert subprocess.run([*command, *sets], capture_output=True).returncode == 0
    evaluate = [sys.executable, "-m", "trainer.evaluate", str(tmp_path / "best.pt"), "--split", "test"]
    result = subprocess.run([*evaluate, "--corpus", "catalogs_de_en"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    scored = json.loads(result.stdout)
    assert scored["corpus"] == "catalogs_de_en" and scored["split"] == "test" and 0 <= scored["bleu"] <= 100
