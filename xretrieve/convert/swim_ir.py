"""SWIM-IR (Thakur et al., NAACL 2024): synthetic (query, passage) pairs, cross-lingual and monolingual."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from xretrieve.convert.common import jsonl_files
from xretrieve.errors import UserError
from xretrieve.formats import Document, _check_id, _check_text, _optional_str, _records, write_jsonl
from xretrieve.training_data import TrainingExample, training_json


def iter_swim_ir(path: str | Path, cross_lingual: bool = True) -> Iterator[TrainingExample]:
    """SWIM-IR rows {"_id", "lang", "code", "query", "title", "text"}: one (query, positive passage) pair each.

    The query's language is `code` (`lang` is its English name, e.g. "Chinese"). Cross-lingual passages are
    English Wikipedia (the README's example pairs a Chinese query with an English passage); monolingual
    passages share the query's language.
    """
    for where, record in _records(Path(path)):
        doc_id = _check_id(record.get("_id"), where, "_id")
        code = _check_id(record.get("code"), where, "code")
        passage = Document(
            id=doc_id,
            text=_check_text(record.get("text"), where, "text"),
            title=_optional_str(record.get("title"), where, "title"),
            lang="en" if cross_lingual else code,
        )
        query = _check_text(record.get("query"), where, "query")
        # _id names the pair's passage; the same passage can be paired with queries in several languages
        yield TrainingExample(f"{code}-{doc_id}", query, [passage], [], lang=code)


def convert(source: Path, out: Path, lang: str | None, split: str) -> dict[str, Path]:
    files = jsonl_files(source, recursive=True)
    if not files:
        raise UserError(f"{source}: no SWIM-IR *.jsonl or *.jsonl.gz files")
    count = 0

    def examples() -> Iterator[dict]:
        nonlocal count
        for path in files:
            # the release's sections are cross_lingual, cross_lingual_ext and monolingual (HF: swim-ir-monolingual)
            cross_lingual = not any("monolingual" in part for part in path.resolve().parts)
            for example in iter_swim_ir(path, cross_lingual):
                if lang is None or example.lang == lang:
                    count += 1
                    yield training_json(example)
        if count == 0:
            raise UserError(f"{source}: no SWIM-IR pairs" + (f" with code {lang!r}" if lang else ""))

    written = {"train": out / "train.jsonl"}
    write_jsonl(written["train"], examples())
    return written
