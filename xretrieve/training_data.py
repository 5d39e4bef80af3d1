"""Training examples: xretrieve's train.jsonl (Tevatron's layout, v1 and v2 field names), read and written, and
DPR's biencoder JSON read.

Core, beside `formats.py` (which is near its size limit): `train/` reads these files, `convert/` and
`xqg/synthesize.py` write them, and none of those should import another for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from xretrieve.errors import UserError
from xretrieve.formats import Document, _check_id, _check_text, _optional_str, _record_id, _records


@dataclass(frozen=True)
class TrainingExample:
    query_id: str
    query: str
    positives: list[Document]
    negatives: list[Document]
    lang: str = ""  # the query's language; passages carry their own


def document_from_record(record: dict, where: str, lang: str = "") -> Document:
    """A passage from a {docid|_id|id, title?, text, lang?} record; `lang` applies when the record has none."""
    title = _optional_str(record.get("title"), where, "title")
    text = record.get("text")
    if (text is None or (isinstance(text, str) and not text.strip())) and title.strip():
        # Title-only rows exist (e.g. BEIR trec-covid); encoders read title + text, so the input stays the same.
        text, title = title, ""
    return Document(
        id=_record_id(record, where),
        text=_check_text(text, where, "text"),
        title=title,
        lang=_optional_str(record.get("lang"), where, "lang") or lang,
    )


def _passage(
    value: object, where: str, corpus: Mapping[str, Document] | None, keep_ids: bool, lang: str = ""
) -> Document:
    if isinstance(value, dict):
        return document_from_record(value, where, lang)
    doc_id = _check_id(value, where, "docid")
    if keep_ids:
        return Document(doc_id, "")  # written back as a bare id; joined with the corpus when training reads it
    if corpus is None:
        raise UserError(f"{where}: passage given as docid {doc_id!r} but no corpus was given to join it with")
    if doc_id not in corpus:
        raise UserError(f"{where}: unknown docid {doc_id!r} (not in the corpus)")
    return corpus[doc_id]


def _field(record: dict, *names: str) -> str:
    """The first of `names` present in the record (Tevatron v1 and v2 spell the same field differently)."""
    return next((name for name in names if name in record), names[0])


def training_example(
    record: dict, where: str, corpus: Mapping[str, Document] | None, keep_ids: bool = False
) -> TrainingExample:
    passages = {}
    for kind in ("positive", "negative"):
        field = _field(record, f"{kind}_passages", f"{kind}_document_ids")
        values = record.get(field) or []
        if not isinstance(values, list):
            raise UserError(f"{where}: field {field!r} must be a list")
        if kind == "positive" and not values:
            raise UserError(f"{where}: field {field!r} is missing or empty; a training example needs a positive")
        # a row-level `passage_lang` (xretrieve's bible-xling pairs) names the positives' language
        lang = _optional_str(record.get("passage_lang"), where, "passage_lang") if kind == "positive" else ""
        passages[kind] = [_passage(v, f"{where}: {field}[{i}]", corpus, keep_ids, lang) for i, v in enumerate(values)]
    query_field = _field(record, "query", "query_text")
    lang_field = _field(record, "lang", "query_lang")
    return TrainingExample(
        query_id=_check_id(record.get("query_id"), where, "query_id"),
        query=_check_text(record.get(query_field), where, query_field),
        positives=passages["positive"],
        negatives=passages["negative"],
        lang=_optional_str(record.get(lang_field), where, lang_field),
    )


def iter_training(path: str | Path, corpus: Mapping[str, Document] | None = None) -> Iterator[TrainingExample]:
    """Tevatron training jsonl(.gz), also xretrieve's own train.jsonl.

    Rows: {"query_id", "query", "positive_passages": [...], "negative_passages": [...]}, passages as
    {"docid", "title", "text"} or as bare docids joined from `corpus`. Tevatron v2's "query_text",
    "positive_document_ids" and "negative_document_ids" are read too.
    """
    for where, record in _records(Path(path)):
        yield training_example(record, where, corpus)


def iter_dpr_training(path: str | Path) -> Iterator[TrainingExample]:
    """DPR's biencoder training JSON (one array; XOR-TyDi's retriever training data comes in it):
    {"question", "answers", "positive_ctxs", "negative_ctxs", "hard_negative_ctxs"}, contexts as
    {"title", "text", "passage_id"}. Hard negatives come first, then the other negatives."""

    path = Path(path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable DPR training JSON file ({exc})") from None
    if not isinstance(rows, list):
        raise UserError(f"{path}: expected a JSON array of training examples")
    for i, record in enumerate(rows):
        where = f"{path}: example {i}"
        if not isinstance(record, dict):
            raise UserError(f"{where}: expected a JSON object")
        passages = {}
        for field in ("positive_ctxs", "hard_negative_ctxs", "negative_ctxs"):
            values = record.get(field) or []
            if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
                raise UserError(f"{where}: field {field!r} must be a list of objects")
            passages[field] = [
                document_from_record(
                    {"id": str(v.get("passage_id") or v.get("psg_id") or f"{i}-{field}-{j}"), **v},
                    f"{where}: {field}[{j}]",
                )
                for j, v in enumerate(values)
            ]
        if not passages["positive_ctxs"]:
            raise UserError(f"{where}: field 'positive_ctxs' is missing or empty; a training example needs a positive")
        yield TrainingExample(
            query_id=str(record.get("id") or f"dpr-{i}"),
            query=_check_text(record.get("question"), where, "question"),
            positives=passages["positive_ctxs"],
            negatives=passages["hard_negative_ctxs"] + passages["negative_ctxs"],
            lang=_optional_str(record.get("lang"), where, "lang"),
        )


def _passage_json(doc: Document) -> dict | str:
    if not doc.text:
        return doc.id  # a bare docid, as the source gave it
    record = {"docid": doc.id, "title": doc.title, "text": doc.text}
    return record | {"lang": doc.lang} if doc.lang else record


def training_json(example: TrainingExample) -> dict:
    record = {"query_id": example.query_id, "query": example.query}
    if example.lang:
        record["lang"] = example.lang
    record["positive_passages"] = [_passage_json(p) for p in example.positives]
    record["negative_passages"] = [_passage_json(p) for p in example.negatives]
    return record
