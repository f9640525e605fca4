"""Parallel text readers, the MT task's data handling, and the Ding dictionary extraction and split."""

import io
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from trainer.config import parse_config, resolve_data_dir
from trainer.data import debian, ding
from trainer.data.conll import DataFormatError
from trainer.data.fetch import FetchError
from trainer.data.parallel import drop_long, read_parallel
from trainer.mt import MtTask
from trainer.vocabulary import UNK


@pytest.fixture(scope="module")
def ding_files():
    """The real Ding sentence pairs, fetched and split once by the project's own code."""
    return ding.fetch_ding_de_en(resolve_data_dir(None))


def write_pair(tmp_path, source: str, target: str, stem: str = "train"):
    (tmp_path / f"{stem}.de").write_text(source, encoding="utf-8")
    (tmp_path / f"{stem}.en").write_text(target, encoding="utf-8")
    return tmp_path / f"{stem}.de", tmp_path / f"{stem}.en"


# --- parallel text ---------------------------------------------------------------------------------------


def test_reads_aligned_lines_as_token_pairs(tmp_path):
    pairs = read_parallel(*write_pair(tmp_path, "das haus .\nja\n", "the house .\nyes\n"))
    assert [(p.source, p.target, p.line) for p in pairs] == [
        (("das", "haus", "."), ("the", "house", "."), 1),
        (("ja",), ("yes",), 2),
    ]


def test_lowercases_when_asked(tmp_path):
    (pair,) = read_parallel(*write_pair(tmp_path, "Das Haus\n", "The House\n"), lowercase=True)
    assert pair.source == ("das", "haus") and pair.target == ("the", "house")


def test_different_line_counts_name_both_files(tmp_path):
    source, target = write_pair(tmp_path, "a\nb\nc\n", "x\ny\n")
    with pytest.raises(DataFormatError, match=r"train\.de has 3 lines but .*train\.en has 2"):
        read_parallel(source, target)


def test_a_line_empty_on_one_side_names_that_file_and_line(tmp_path):
    source, target = write_pair(tmp_path, "a\nb\nc\n", "x\n\nz\n")
    with pytest.raises(DataFormatError, match=r"train\.en:2: empty line, but line 2 of .*train\.de is not"):
        read_parallel(source, target)


def test_lines_empty_on_both_sides_are_skipped(tmp_path):
    pairs = read_parallel(*write_pair(tmp_path, "a\n\nc\n", "x\n\nz\n"))
    assert [p.line for p in pairs] == [1, 3]


def test_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(DataFormatError, match="no such file"):
        read_parallel(tmp_path / "train.de", tmp_path / "train.en")


def test_text_that_is_not_utf8_is_reported_by_file_and_line_with_the_encoding_field(tmp_path):
    (tmp_path / "train.de").write_bytes("hallo\ngrüße\n".encode("iso-8859-1"))
    (tmp_path / "train.en").write_text("hello\ngreetings\n")
    with pytest.raises(DataFormatError, match=r"train\.de:2: not valid utf-8 text .*; data\.encoding names"):
        read_parallel(tmp_path / "train.de", tmp_path / "train.en")


def test_files_in_another_encoding_are_read_with_it(tmp_path):
    (tmp_path / "train.de").write_bytes("grüße\n".encode("iso-8859-1"))
    (tmp_path / "train.en").write_text("greetings\n")
    (pair,) = read_parallel(tmp_path / "train.de", tmp_path / "train.en", encoding="iso-8859-1")
    assert pair.source == ("grüße",)


def test_a_byte_order_mark_is_not_part_of_the_first_token(tmp_path):
    (pair,) = read_parallel(*write_pair(tmp_path, "\ufeffdas haus\n", "\ufeffthe house\n"))
    assert (pair.source, pair.target) == (("das", "haus"), ("the", "house"))


def test_unicode_line_separators_inside_a_sentence_do_not_shift_the_alignment(tmp_path):
    pairs = read_parallel(*write_pair(tmp_path, "a\u2028b\nc\n", "x\ny\n"))
    assert [p.target for p in pairs] == [("x",), ("y",)]


def test_long_pairs_are_dropped_by_either_side(tmp_path):
    pairs = read_parallel(*write_pair(tmp_path, "a b c\na\na\n", "x\nx y z\nx\n"))
    assert [p.line for p in drop_long(pairs, 2)] == [3]


# --- the MT task on files ----------------------------------------------------------------------------------


@pytest.fixture
def files_task(tmp_path):
    write_pair(tmp_path, "ein haus .\nein baum .\n" + "sehr " * 60 + "lang\n", "a house .\na tree .\n" + "x " * 3)
    write_pair(tmp_path, "ein boot .\n" + "sehr " * 60 + "lang\n", "a boat .\n" + "y " * 60, stem="valid")
    write_pair(tmp_path, "ein haus .\n", "a house .\n", stem="test")
    config = parse_config({"task": "mt", "data": {"dataset": "files", "path": str(tmp_path), "max_length": 50}})
    return MtTask(config, log=lambda _: None)


def test_only_training_pairs_are_length_filtered(files_task):
    assert len(files_task.read_split("train")) == 2
    assert len(files_task.read_split("dev")) == 2


def test_vocabulary_comes_from_the_training_split_only(files_task):
    assert "boat" not in files_task.target_vocab and "house" in files_task.target_vocab
    (boat, _) = files_task.read_split("dev")
    assert files_task.batches([boat], 1, shuffle=False)[0].targets[0, 1] == files_task.target_vocab.index[UNK]


def test_targets_end_with_the_end_of_sentence_symbol(files_task):
    batch = files_task.batches(files_task.read_split("train"), 2, shuffle=False)[0]
    ids = files_task.target_vocab.encode
    assert batch.targets.tolist() == [ids(["a", "house", ".", "</s>"]), ids(["a", "tree", ".", "</s>"])]


def test_the_task_reads_its_files_in_data_encoding(tmp_path):
    for stem in ("train", "valid"):
        (tmp_path / f"{stem}.de").write_bytes("grüße .\n".encode("iso-8859-1"))
        (tmp_path / f"{stem}.en").write_bytes("greetings .\n".encode("iso-8859-1"))
    data = {"dataset": "files", "path": str(tmp_path), "encoding": "iso-8859-1"}
    task = MtTask(parse_config({"task": "mt", "data": data}), log=lambda _: None)
    assert "grüße" in task.source_vocab and task.read_split("dev")[0].source == ("grüße", ".")


def test_vocabulary_keeps_the_most_frequent_tokens_up_to_the_cap(tmp_path):
    write_pair(tmp_path, "a a a b b c\n", "x x x y y z\n")
    config = parse_config(
        {"task": "mt", "data": {"dataset": "files", "path": str(tmp_path), "target_vocab_size": 6, "min_freq": 2}}
    )
    assert MtTask(config, log=lambda _: None).target_vocab.tokens == ["<pad>", "<unk>", "<s>", "</s>", "x", "y"]


# --- Ding extraction -----------------------------------------------------------------------------------------

DICTIONARY = [
    "# Version :: devel 2099-01-01",
    "Aal {m} | Aale {pl} :: eel | eels",
    "Ich kann ihn nicht leiden. [ugs.] :: I can't bear him. [coll.]",
    "leiden {vt} | Ich kann ihn nicht leiden.; Ich mag ihn nicht. :: to suffer | I can’t stand him.",
    "Das hängt von etw. ab. :: That depends on sth.",
    "Guten Morgen! | Guten Tag! :: Good morning!",
    "Wo ist der Bahnhof? :: Where is the station?",
    "Er sagte: „Ja“. | Ja. :: He said: “Yes”. | Yes.",
]


def test_extracts_aligned_sentence_sub_entries_normalised_like_iwslt():
    assert list(ding.sentence_pairs(DICTIONARY)) == [
        ("ich kann ihn nicht leiden .", "i can't bear him ."),
        ("wo ist der bahnhof ?", "where is the station ?"),
        ('er sagte : " ja " .', 'he said : " yes " .'),
    ]


def test_words_placeholders_one_word_answers_and_misaligned_entries_are_skipped():
    germans = {de for de, _ in ding.sentence_pairs(DICTIONARY)}
    assert not germans & {"aal", "das hängt von etw . ab .", "guten morgen !", "ja ."}


def test_a_german_sentence_is_kept_once():
    assert [de for de, _ in ding.sentence_pairs(DICTIONARY)].count("ich kann ihn nicht leiden .") == 1


def test_phrase_pairs_are_the_word_and_phrase_sub_entries_without_sentences_or_placeholders():
    assert list(ding.phrase_pairs(DICTIONARY)) == [("aal", "eel"), ("aale", "eels"), ("leiden", "to suffer")]


def test_a_phrase_that_repeats_the_words_of_a_sentence_is_left_out():
    dictionary = [*DICTIONARY, "Wo ist der Bahnhof :: Where is the station", "Bahnhof {m} :: station"]
    assert [de for de, _ in ding.phrase_pairs(dictionary)][-1] == "bahnhof"
    assert "wo ist der bahnhof" not in {de for de, _ in ding.phrase_pairs(dictionary)}


def test_the_split_is_a_fixed_function_of_the_german_sentence():
    # Pinned: a change here moves sentences between splits and invalidates every published number.
    assert ding.split_of("wo ist der bahnhof ?") == "test"
    assert ding.split_of("er köpfte den abpraller ein .") == "valid"
    assert ding.split_of("ich kann ihn nicht leiden .") == "train"


def make_deb(path, dictionary_text: str):
    """A minimal Debian package: ar archive of debian-binary, control.tar.xz and data.tar.xz."""

    def tar_xz(name: str, content: bytes) -> bytes:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as archive:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        return lzma.compress(raw.getvalue())

    members = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", tar_xz("./control", b"Package: trans-de-en\nVersion: 1\nArchitecture: all\n")),
        ("data.tar.xz", tar_xz("./usr/share/trans/de-en", dictionary_text.encode())),
    ]
    blob = b"!<arch>\n"
    for name, content in members:
        blob += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(content):<10}`\n".encode() + content
        blob += b"\n" if len(content) % 2 else b""
    path.write_bytes(blob)
    return path


@pytest.mark.parametrize("with_dpkg_deb", [False, True])
def test_the_dictionary_is_read_from_a_debian_package(tmp_path, monkeypatch, with_dpkg_deb):
    if with_dpkg_deb and shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb not installed")
    if not with_dpkg_deb:
        monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    deb = make_deb(tmp_path / "trans-de-en_1_all.deb", "\n".join(DICTIONARY) + "\n")
    with debian.members_of_deb(deb) as archive:
        member = next(m for m in archive.getmembers() if m.name.lstrip("./") == ding.DICTIONARY_MEMBER)
        assert archive.extractfile(member).read().decode().startswith("# Version :: devel 2099")


def test_fetch_downloads_the_package_with_apt_get_and_writes_split_files_and_manifest(tmp_path, monkeypatch):
    deb = make_deb(tmp_path / "trans-de-en_1_all.deb", "\n".join(DICTIONARY) + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(f"#!/bin/sh\ncp {deb} .\n")
    (bin_dir / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(ding, "INSTALLED_DICTIONARY", tmp_path / "not-installed")
    files = ding.fetch_ding_de_en(tmp_path / "data", log=lambda _: None)
    manifest = json.loads((tmp_path / "data" / "ding_de_en" / "manifest.json").read_text())
    assert manifest["dictionary_version"] == "devel 2099-01-01"
    assert sum(manifest["pairs"].values()) == 3
    assert sum(len(files[f"{s}.de"].read_text().splitlines()) for s in ("train", "valid", "test")) == 3
    assert files["test.en"].read_text() == "where is the station ?\n"


def test_fetch_command_extracts_into_the_data_dir_and_prints_the_files(tmp_path):
    deb = make_deb(tmp_path / "trans-de-en_1_all.deb", "\n".join(DICTIONARY) + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(f"#!/bin/sh\ncp {deb} .\n")
    (bin_dir / "apt-get").chmod(0o755)
    result = subprocess.run(
        [sys.executable, "-m", "trainer.data", "fetch", "ding_de_en", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    assert result.returncode == 0, result.stderr
    printed = dict(line.split("\t") for line in result.stdout.splitlines() if "\t" in line)
    assert set(printed) == {f"{s}.{lang}" for s in ("train", "valid", "test") for lang in ("de", "en")}
    assert all(path.startswith(str(tmp_path / "data" / "ding_de_en")) for path in printed.values())


def test_without_the_package_or_apt_get_the_error_says_how_to_use_own_files(tmp_path, monkeypatch):
    monkeypatch.setattr(ding, "INSTALLED_DICTIONARY", tmp_path / "not-installed")
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    with pytest.raises(FetchError, match=r"data\.dataset: files and data\.path"):
        ding.fetch_ding_de_en(tmp_path / "data", log=lambda _: None)


# --- the real Ding data ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_ding_split_is_about_90_5_5_with_no_german_sentence_in_two_splits(ding_files):
    german = {s: ding_files[f"{s}.de"].read_text(encoding="utf-8").splitlines() for s in ("train", "valid", "test")}
    total = sum(len(lines) for lines in german.values())
    assert total > 15000
    assert 0.03 < len(german["valid"]) / total < 0.07 and 0.03 < len(german["test"]) / total < 0.07
    assert not set(german["train"]) & set(german["valid"]) and not set(german["train"]) & set(german["test"])
    assert all(ding.split_of(line) == "valid" for line in german["valid"][:200])


@pytest.mark.slow
def test_real_ding_files_read_as_aligned_lowercased_pairs(ding_files):
    pairs = read_parallel(ding_files["valid.de"], ding_files["valid.en"])
    assert len(pairs) > 500
    assert all(" ".join(p.target) == " ".join(p.target).lower() for p in pairs)


@pytest.mark.slow
def test_real_ding_phrases_repeat_no_dev_or_test_sentence(ding_files):
    phrases = ding.fetch_ding_phrases_de_en(resolve_data_dir(None))
    german = phrases["train.de"].read_text(encoding="utf-8").splitlines()
    assert len(german) > 200000 and len(german) == len(phrases["train.en"].read_text(encoding="utf-8").splitlines())
    scored = ding_files["valid.de"].read_text(encoding="utf-8").splitlines()
    scored += ding_files["test.de"].read_text(encoding="utf-8").splitlines()
    assert not {ding.words_only(line) for line in scored} & {ding.words_only(line) for line in german}
