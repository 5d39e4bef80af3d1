"""BEIR: corpus.jsonl, queries.jsonl (every split's queries) and qrels/{split}.tsv."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

from xretrieve.convert.common import corpus_json, iter_jsonl_corpus, qrels_lines, query_json
from xretrieve.errors import UserError
from xretrieve.formats import _check_id, _lines, read_queries, write_jsonl, write_lines


def iter_beir_qrels(path: str | Path) -> Iterator[tuple[str, str, str, int]]:
    """BEIR qrels/{split}.tsv: header `query-id<TAB>corpus-id<TAB>score`. Yields (where, qid, docid, score)."""
    path = Path(path)
    for lineno, line in _lines(path):
        where = f"{path}:{lineno}"
        fields = line.split("\t")
        if lineno == 1 and fields[0].strip() == "query-id":
            continue
        if len(fields) != 3:
            raise UserError(f"{where}: expected 'query-id<TAB>corpus-id<TAB>score', found {len(fields)} fields")
        try:
            score = int(fields[2])
        except ValueError:
            raise UserError(f"{where}: field 'score' must be an integer, got {fields[2]!r}") from None
        yield (
            where,
            _check_id(fields[0].strip(), where, "query-id"),
            _check_id(fields[1].strip(), where, "corpus-id"),
            score,
        )


def convert(source: Path, out: Path, lang: str | None, split: str) -> dict[str, Path]:
    corpus, queries, qrels_path = source / "corpus.jsonl", source / "queries.jsonl", source / "qrels" / f"{split}.tsv"
    for path in (corpus, queries):
        if not path.is_file():
            raise UserError(f"{source}: no {path.name}; not a BEIR folder")
    if not qrels_path.is_file():
        found = sorted(p.stem for p in (source / "qrels").glob("*.tsv"))
        raise UserError(f"{source}: no qrels/{split}.tsv (splits found: {', '.join(found) or 'none'})")
    qrels = list(iter_beir_qrels(qrels_path))
    first_seen = {}
    for where, query_id, _, _ in qrels:
        first_seen.setdefault(query_id, where)
    # like BEIR's loader: queries.jsonl holds every split's queries; keep the ones this split judges
    kept = [dataclasses.replace(q, lang=q.lang or lang or "") for q in read_queries(queries) if q.id in first_seen]
    known = {q.id for q in kept}
    if missing := [q for q in first_seen if q not in known]:
        raise UserError(f"{first_seen[missing[0]]}: query {missing[0]!r} is not in {queries}")
    written = {"queries": out / "queries.jsonl", "qrels": out / "qrels.txt", "corpus": out / "corpus.jsonl"}
    write_jsonl(written["queries"], (query_json(q) for q in kept))
    write_lines(written["qrels"], qrels_lines((q, d, s) for _, q, d, s in qrels))
    write_jsonl(written["corpus"], (corpus_json(d) for d in iter_jsonl_corpus(corpus, lang or "")))
    return written
