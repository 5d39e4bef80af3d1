"""What every layout's converter shares: finding files in an official tree, reading jsonl corpora, and writing
xretrieve's corpus, queries and qrels rows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from xretrieve.errors import UserError
from xretrieve.formats import Document, Query, _records
from xretrieve.training_data import document_from_record


def iter_jsonl_corpus(path: str | Path, lang: str = "") -> Iterator[Document]:
    """Passages of a jsonl(.gz) corpus: MIRACL {docid,title,text}, BEIR {_id,title,text}, Tevatron {docid,...}."""
    for where, record in _records(Path(path)):
        yield document_from_record(record, where, lang)


def corpus_json(doc: Document) -> dict:
    return {"id": doc.id, "title": doc.title, "text": doc.text, "lang": doc.lang}


def query_json(query: Query) -> dict:
    return {"id": query.id, "text": query.text, "lang": query.lang}


def qrels_lines(qrels: Iterable[tuple[str, str, int]]) -> Iterator[str]:
    for query_id, doc_id, relevance in qrels:
        yield f"{query_id} 0 {doc_id} {relevance}"


def find_file(root: Path, names: Iterable[str]) -> Path | None:
    """`root/name` or the first match below root, for the first name that exists (official trees nest files)."""
    for name in names:
        if (root / name).is_file():
            return root / name
        if found := sorted(root.rglob(name)):
            return found[0]
    return None


def require_file(root: Path, names: tuple[str, ...], what: str) -> Path:
    path = find_file(root, names)
    if path is None:
        raise UserError(f"{root}: no {what} found (looked for {' or '.join(names)} in it and its subfolders)")
    return path


def jsonl_files(source: Path, recursive: bool, exclude: str = "") -> list[Path]:
    """`source` itself, or the *.jsonl and *.jsonl.gz files in it, in name order."""
    if source.is_file():
        return [source]
    files = sorted(source.rglob("*.jsonl*") if recursive else source.glob("*.jsonl*"))
    return [
        p for p in files if p.name.endswith((".jsonl", ".jsonl.gz")) and not (exclude and p.name.startswith(exclude))
    ]
