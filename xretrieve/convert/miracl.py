"""MIRACL (miracl/miracl and miracl/miracl-corpus): topics, qrels, judged training rows and the corpus shards."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from xretrieve.convert.common import corpus_json, find_file, iter_jsonl_corpus, qrels_lines, query_json, require_file
from xretrieve.errors import UserError
from xretrieve.formats import Document, Query, read_qrels, read_queries, write_jsonl, write_lines
from xretrieve.training_data import TrainingExample, training_json


def _numbered(paths: Iterable[Path]) -> list[Path]:
    """MIRACL shards in numeric order (docs-2 before docs-10): corpus row order is the canonical shard order."""
    return sorted(paths, key=lambda p: (int(m.group(1)) if (m := re.search(r"(\d+)", p.name)) else -1, p.name))


def read_miracl_topics(path: str | Path, lang: str) -> list[Query]:
    """MIRACL topics: `qid<TAB>query` per line, no header."""
    return [dataclasses.replace(query, lang=lang) for query in read_queries(path)]


MIRACL_SPLITS = {"testA": "test-a", "testB": "test-b"}  # the HF loader's names for the files' test-a/test-b


def convert(source: Path, out: Path, lang: str | None, split: str) -> dict[str, Path]:
    if not lang:
        found = sorted(p.name.removeprefix("miracl-v1.0-") for p in source.rglob("miracl-v1.0-*") if p.is_dir())
        raise UserError(f"MIRACL needs a language (found in {source}: {', '.join(found) or 'none'})")
    split = MIRACL_SPLITS.get(split, split)
    base = f"miracl-v1.0-{lang}-{split}.tsv"
    written = {}
    topics = require_file(source, (f"topics.{base}",), f"MIRACL {lang} {split} topics")
    written["queries"] = out / "queries.jsonl"
    queries = read_miracl_topics(topics, lang)
    write_jsonl(written["queries"], (query_json(q) for q in queries))
    qrels_path = find_file(source, (f"qrels.{base}",))
    if qrels_path is None and not split.startswith("test"):  # test-a/test-b are released without qrels
        raise UserError(f"{source}: no MIRACL {lang} {split} qrels found (looked for qrels.{base})")
    if qrels_path is not None:
        qrels = read_qrels(qrels_path)
        written["qrels"] = out / "qrels.txt"
        write_lines(written["qrels"], qrels_lines((q, d, r) for q, docs in qrels.items() for d, r in docs.items()))
        if split == "train":
            written["train"] = out / "train.jsonl"
            write_jsonl(written["train"], _miracl_training(queries, qrels))
    corpus_dirs = [source] if source.name == f"miracl-corpus-v1.0-{lang}" else []
    corpus_dirs += sorted(p for p in source.rglob(f"miracl-corpus-v1.0-{lang}") if p.is_dir())
    if corpus_dirs:  # the corpus is a separate download (miracl/miracl-corpus); convert it when it is there
        shards = _numbered(p for p in corpus_dirs[0].glob("docs-*") if p.name.endswith((".jsonl", ".jsonl.gz")))
        if not shards:
            raise UserError(f"{corpus_dirs[0]}: no docs-*.jsonl.gz files")
        written["corpus"] = out / "corpus.jsonl"
        docs = (corpus_json(d) for shard in shards for d in iter_jsonl_corpus(shard, lang))
        write_jsonl(written["corpus"], docs)
    return written


def _miracl_training(queries: list[Query], qrels: dict[str, dict[str, int]]) -> Iterator[dict]:
    """Training rows with docids, joined with the corpus when training reads them: MIRACL's judged
    passages, relevant ones as positives and the annotators' non-relevant ones as hard negatives (as
    Tevatron's MIRACL release does). Queries with no relevant passage are left out."""
    for query in queries:
        judged = qrels.get(query.id, {})
        positives = [docid for docid, relevance in judged.items() if relevance > 0]
        if positives:
            negatives = [docid for docid, relevance in judged.items() if relevance <= 0]
            yield training_json(
                TrainingExample(
                    query.id,
                    query.text,
                    [Document(d, "") for d in positives],
                    [Document(d, "") for d in negatives],
                    query.lang,
                )
            )
