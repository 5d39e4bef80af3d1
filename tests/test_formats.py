import json

import pytest

from xretrieve.errors import UserError
from xretrieve.formats import read_corpus, read_lines, read_queries, trec_lines, write_lines, write_trec_run


def write(path, text: str | bytes):
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def test_reads_jsonl_corpus_in_order_with_optional_fields(tmp_path):
    path = write(
        tmp_path / "c.jsonl",
        '{"id": "b", "text": "Hei maailma", "lang": "fi"}\n\n{"docid": 7, "title": "T", "text": "x"}\n',
    )
    docs = read_corpus(path)
    assert [(d.id, d.text, d.title, d.lang) for d in docs] == [("b", "Hei maailma", "", "fi"), ("7", "x", "T", "")]


def test_reads_tsv_corpus_and_skips_header(tmp_path):
    path = write(tmp_path / "c.tsv", "id\ttext\ttitle\n1\tfirst passage\tA\n2\tsecond\n")
    docs = read_corpus(path)
    assert [(d.id, d.text, d.title) for d in docs] == [("1", "first passage", "A"), ("2", "second", "")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "a", "text": "ok"}\n{"id": "b", "text": "x",}\n', r"c\.jsonl:2: not valid JSON"),
        ('{"text": "no id"}\n', r"c\.jsonl:1: field 'id' is missing or empty"),
        ('{"id": "", "text": "empty id"}\n', r"c\.jsonl:1: field 'id' is missing or empty"),
        ('{"id": "a", "text": "  "}\n', r"c\.jsonl:1: field 'text' is missing or empty"),
        ('{"id": "a"}\n', r"c\.jsonl:1: field 'text' is missing or empty"),
        ('{"id": "a b", "text": "x"}\n', r"c\.jsonl:1: field 'id' contains whitespace .*TREC"),
        (
            '{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n',
            r"c\.jsonl:2: duplicate id 'a' \(first seen at .*:1\)",
        ),
        ('["a", "b"]\n', r"c\.jsonl:1: expected a JSON object"),
        ('{"id": "a", "text": "x", "lang": 5}\n', r"c\.jsonl:1: field 'lang' must be a string"),
        ("", r"c\.jsonl: no documents"),
    ],
)
def test_bad_corpus_lines_name_file_line_and_field(tmp_path, content, message):
    path = write(tmp_path / "c.jsonl", content)
    with pytest.raises(UserError, match=message):
        read_corpus(path)


def test_non_utf8_bytes_name_line_and_column(tmp_path):
    path = write(tmp_path / "c.jsonl", b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(UserError, match=r"c\.jsonl:2: not valid UTF-8 \(byte 0xe9 at column 25\)"):
        read_corpus(path)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_corpus(tmp_path / "absent.jsonl")


def test_tsv_line_without_tab(tmp_path):
    path = write(tmp_path / "q.tsv", "q1\twhat\nq2 no tab here\n")
    with pytest.raises(UserError, match=r"q\.tsv:2: expected 'id<TAB>text"):
        read_queries(path)


def test_queries_jsonl_and_tsv(tmp_path):
    jsonl = write(tmp_path / "q.jsonl", json.dumps({"id": "q1", "text": "Mikä on?", "lang": "fi"}) + "\n")
    tsv = write(tmp_path / "q.tsv", "q1\tMikä on?\n")
    assert read_queries(jsonl)[0].lang == "fi"
    assert read_queries(tsv)[0].text == "Mikä on?"


def test_trec_lines_rank_from_one_and_break_ties_by_docid():
    lines = list(trec_lines("q1", [("d9", 0.5), ("d2", 0.9), ("d3", 0.5), ("d1", 0.5)], "tag"))
    assert lines == [
        "q1 Q0 d2 1 0.900000 tag",
        "q1 Q0 d1 2 0.500000 tag",
        "q1 Q0 d3 3 0.500000 tag",
        "q1 Q0 d9 4 0.500000 tag",
    ]


def test_trec_ties_are_the_scores_as_written():
    # 0.5000001 prints as 0.500000: the file must read as a docid-ordered tie, not as d9 ahead of d1
    lines = list(trec_lines("q", [("d9", 0.5000001), ("d1", 0.5)], "tag"))
    assert [line.split()[2] for line in lines] == ["d1", "d9"]


def test_language_codes_with_whitespace_are_refused(tmp_path):
    path = write(
        tmp_path / "c.jsonl", '{"id": "a", "text": "x", "lang": "en"}\n{"id": "b", "text": "y", "lang": "e\\nn"}\n'
    )
    with pytest.raises(UserError, match=r"c\.jsonl:2: field 'lang'"):
        read_corpus(path)


def test_trec_run_rejects_tag_with_space(tmp_path):
    with pytest.raises(UserError, match="run tag"):
        write_trec_run(tmp_path / "r.trec", [("q", [("d", 1.0)])], tag="my run")
    assert not (tmp_path / "r.trec").exists()


def test_lines_round_trip_keeps_empty_values(tmp_path):
    values = ["en", "", "ja", ""]
    write_lines(tmp_path / "l.txt", values)
    assert read_lines(tmp_path / "l.txt") == values


def test_queries_in_xor_tydi_layout_read_question_as_text(tmp_path):
    path = write(
        tmp_path / "q.jsonl",
        json.dumps({"id": "-7", "question": "Mikä on Suomen pääkaupunki?", "answers": ["Helsinki"], "lang": "fi"})
        + "\n",
    )
    assert read_queries(path)[0].text == "Mikä on Suomen pääkaupunki?"
