"""XOR-TyDi's XOR-Retrieve: questions (with answers, except in test) and DPR's English Wikipedia passages."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from xretrieve.convert.common import corpus_json, find_file, query_json, require_file
from xretrieve.errors import UserError
from xretrieve.formats import Document, Query, _check_text, _lines, _record_id, _records, _unique, write_jsonl
from xretrieve.training_data import document_from_record


def iter_dpr_passages(path: str | Path, lang: str = "en") -> Iterator[Document]:
    """DPR's psgs_w100.tsv (XOR-TyDi ships it as enwiki_20190201_w100.tsv): header id<TAB>text<TAB>title.

    DPR wrote it with Python's csv module, so a text with quotes is quoted with inner quotes doubled.
    """
    path = Path(path)
    for lineno, line in _lines(path):
        where = f"{path}:{lineno}"
        fields = next(csv.reader([line], delimiter="\t")) if '"' in line else line.split("\t")
        if lineno == 1 and fields[0] == "id":
            if fields != ["id", "text", "title"]:
                raise UserError(f"{where}: expected the DPR header 'id<TAB>text<TAB>title', found {line!r}")
            continue
        if len(fields) != 3:
            raise UserError(f"{where}: expected 3 tab-separated fields (id, text, title), found {len(fields)}")
        yield document_from_record({"id": fields[0], "text": fields[1], "title": fields[2]}, where, lang)


def read_xor_questions(path: str | Path, lang: str | None = None) -> list[tuple[Query, list[str] | None]]:
    """XOR-Retrieve questions {"id", "question", "lang", "answers"?} (test files have no answers).

    Returns (query, answers or None) in file order; `lang` keeps only that language.
    """
    path = Path(path)
    first_has_answers: bool | None = None

    def parsed() -> Iterator[tuple[str, str, tuple[Query, list[str] | None]]]:
        nonlocal first_has_answers
        for where, record in _records(path):
            has_answers = "answers" in record
            if first_has_answers is None:
                first_has_answers = has_answers
            elif has_answers != first_has_answers:
                # a mix would silently drop questions from evaluation
                state = "present" if has_answers else "missing"
                raise UserError(f"{where}: field 'answers' is {state} here but not in the first question")
            answers = record.get("answers")
            if has_answers and (not isinstance(answers, list) or not all(isinstance(a, str) for a in answers)):
                raise UserError(f"{where}: field 'answers' must be a list of strings")
            query = Query(
                id=_record_id(record, where),
                text=_check_text(record.get("question"), where, "question"),
                lang=_check_text(record.get("lang"), where, "lang").strip(),  # some rows carry stray spaces
            )
            if lang is None or query.lang == lang:
                yield where, query.id, (query, answers)

    rows = list(_unique(parsed()))
    if not rows:
        raise UserError(f"{path}: no questions" + (f" in language {lang!r}" if lang else ""))
    return rows


XOR_QUESTIONS = {
    "train": ("xor_train_retrieve_eng_span.jsonl",),
    "dev": ("xor_dev_retrieve_eng_span_v1_1.jsonl", "xor_dev_retrieve_eng_span.jsonl"),
    "test": ("xor_test_retrieve_eng_span_q_only_v1_1.jsonl", "xor_test_retrieve_eng_span_q_only.jsonl"),
}
XOR_COLLECTION = ("psgs_w100.tsv", "enwiki_20190201_w100.tsv")


def convert(source: Path, out: Path, lang: str | None, split: str) -> dict[str, Path]:
    if source.is_file():
        questions, folder = source, source.parent
    else:
        if split not in XOR_QUESTIONS:
            raise UserError(f"XOR-Retrieve split must be one of {', '.join(XOR_QUESTIONS)}, got {split!r}")
        questions, folder = require_file(source, XOR_QUESTIONS[split], f"XOR-Retrieve {split} questions"), source
    rows = read_xor_questions(questions, lang)
    written = {"queries": out / "queries.jsonl"}
    write_jsonl(written["queries"], (query_json(query) for query, _ in rows))
    if rows[0][1] is not None:
        written["answers"] = out / "answers.jsonl"
        write_jsonl(written["answers"], ({"id": q.id, "answers": a, "lang": q.lang} for q, a in rows))
    collection = find_file(folder, XOR_COLLECTION)
    if collection is not None:  # 13 GB, downloaded apart from the questions; convert it when it is there
        written["corpus"] = out / "corpus.jsonl"
        write_jsonl(written["corpus"], (corpus_json(d) for d in iter_dpr_passages(collection)))
    return written
