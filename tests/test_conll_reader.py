"""The CoNLL column reader: layouts, IOB1 -> IOB2, and errors that name the file and line."""

import pytest

from trainer.config import parse_config
from trainer.data.conll import DataFormatError, check_known_tags, iob1_to_iob2, read_conll
from trainer.ner import NerTask

ENGLISH = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""

# CoNLL-2003 German layout: token lemma POS chunk NER, with IOB1 tags as originally released.
GERMAN_IOB1 = """-DOCSTART- -X- -X- -X- O

Ereignis Ereignis NN I-NC O
und und KON O O
Erzählung Erzählung NN I-NC O

Hans Hans NE I-NC I-PER
Meier Meier NE I-NC I-PER
in in APPR I-PC O
Berlin Berlin NE I-NC I-LOC
"""


def write(tmp_path, text, name="split.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_english_four_column_file_and_skips_docstart(tmp_path):
    sentences = read_conll(write(tmp_path, ENGLISH))
    assert [s.tokens for s in sentences] == [("EU", "rejects", "German"), ("Peter", "Blackburn")]
    assert sentences[1].tags == ("B-PER", "I-PER")


def test_reads_german_five_column_file_with_tag_in_last_column(tmp_path):
    sentences = read_conll(write(tmp_path, GERMAN_IOB1))
    assert sentences[1].tokens == ("Hans", "Meier", "in", "Berlin")


def test_iob1_input_is_converted_to_iob2(tmp_path):
    sentences = read_conll(write(tmp_path, GERMAN_IOB1))
    assert sentences[1].tags == ("B-PER", "I-PER", "O", "B-LOC")


def test_iob1_to_iob2_starts_a_new_chunk_on_a_type_change():
    assert iob1_to_iob2(["I-ORG", "I-ORG", "I-PER", "O", "I-LOC"]) == ["B-ORG", "I-ORG", "B-PER", "O", "B-LOC"]


def test_iob2_input_is_unchanged():
    tags = ["B-ORG", "I-ORG", "B-ORG", "O"]
    assert iob1_to_iob2(tags) == tags


def test_wrong_column_count_names_file_and_line(tmp_path):
    path = write(tmp_path, "EU NNP B-NP B-ORG\nrejects VBZ O\n")
    with pytest.raises(DataFormatError, match=rf"{path}:2: expected 4 columns"):
        read_conll(path)


def test_empty_file_is_an_error(tmp_path):
    path = write(tmp_path, "\n\n")
    with pytest.raises(DataFormatError, match="no sentences"):
        read_conll(path)


def test_single_column_is_an_error(tmp_path):
    path = write(tmp_path, "EU\n")
    with pytest.raises(DataFormatError, match=rf"{path}:1: expected a token and a tag"):
        read_conll(path)


def test_malformed_tag_names_file_and_line(tmp_path):
    path = write(tmp_path, "EU NNP B-NP B-ORG\nrejects VBZ B-VP X-FOO\n")
    with pytest.raises(DataFormatError, match=rf"{path}:2: tag 'X-FOO'"):
        read_conll(path)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(DataFormatError, match="no such file"):
        read_conll(tmp_path / "absent.txt")


def test_tag_unknown_to_training_split_in_dev_names_file_and_line(tmp_path):
    dev = write(tmp_path, "\nParis NNP B-NP B-LOC\nis VBZ B-VP O\n\nAcme NNP B-NP B-COMPANY\n", "dev.txt")
    with pytest.raises(DataFormatError, match=rf"{dev}:5: tag 'B-COMPANY' does not occur in the training split"):
        check_known_tags(read_conll(dev), {"O", "B-LOC"}, dev)


def test_a_byte_order_mark_does_not_turn_docstart_into_a_sentence(tmp_path):
    sentences = read_conll(write(tmp_path, "\ufeff" + ENGLISH))
    assert [s.tokens for s in sentences] == [("EU", "rejects", "German"), ("Peter", "Blackburn")]


def test_text_that_is_not_utf8_is_reported_by_line_with_the_encoding_field(tmp_path):
    path = tmp_path / "deu.train"
    path.write_bytes(GERMAN_IOB1.encode("iso-8859-1"))
    with pytest.raises(DataFormatError, match=rf"^{path}:5: not valid utf-8 text .*; data\.encoding names"):
        read_conll(path)


def test_german_as_released_in_iso_8859_1_is_read_with_its_encoding(tmp_path):
    path = tmp_path / "deu.train"
    path.write_bytes(GERMAN_IOB1.encode("iso-8859-1"))
    assert read_conll(path, encoding="iso-8859-1")[0].tokens == ("Ereignis", "und", "Erzählung")


def test_the_ner_task_reads_its_files_in_data_encoding(tmp_path):
    path = tmp_path / "deu.train"
    path.write_bytes(GERMAN_IOB1.encode("iso-8859-1"))
    data = {"dataset": "files", "train_path": str(path), "dev_path": str(path), "encoding": "iso-8859-1"}
    task = NerTask(parse_config({"data": data}), log=lambda _: None)
    assert "Erzählung" in task.source_vocab and task.read_split("dev")[0].tokens[2] == "Erzählung"


def test_an_unchanged_file_is_parsed_once_per_process(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(ENGLISH)
    first, second = read_conll(path), read_conll(path)
    assert all(a is b for a, b in zip(first, second, strict=True))  # a second parse would build new sentences


def test_a_rewritten_file_is_read_again(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(ENGLISH)
    read_conll(path)
    path.write_text(ENGLISH.replace("Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n", ""))
    assert [s.tokens for s in read_conll(path)] == [("EU", "rejects", "German")]


def test_changing_the_returned_list_leaves_the_next_read_whole(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(ENGLISH)
    read_conll(path).clear()
    assert len(read_conll(path)) == 2
