"""The only reader and writer of corpus, queries and TREC run files.

Every reader validates as it goes and names the file, line and field of the first problem.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xretrieve.errors import UserError
from xretrieve.manifest import atomic_open, atomic_write_json, sha256_file

ID_FIELDS = ("id", "docid", "_id")  # ours, Tevatron/MIRACL, BEIR
QUERY_TEXT_FIELDS = ("text", "question", "query")  # ours/BEIR, XOR-TyDi/NQ, Tevatron


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str = ""
    lang: str = ""


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    lang: str = ""


def _raw_lines(path: Path) -> Iterator[bytes]:
    """Lines of a file as bytes, gunzipped on the fly when the name ends in .gz (MIRACL, Tevatron ship .jsonl.gz)."""
    if path.suffix != ".gz":
        with open(path, "rb") as f:
            yield from f
        return
    try:
        with gzip.open(path, "rb") as f:
            yield from f
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"{path}: not a readable gzip file ({exc})") from None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, decoded line) without the newline; skip blank lines."""
    if not path.is_file():
        raise UserError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'no such file'}")
    for lineno, raw in enumerate(_raw_lines(path), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(
                f"{path}:{lineno}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
            ) from None
        line = line.rstrip("\r\n")
        if lineno == 1:
            line = line.removeprefix("\ufeff")
        if line.strip():
            yield lineno, line


def _check_id(value: object, where: str, field: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise UserError(f"{where}: field {field!r} is missing or empty")
    if any(c.isspace() for c in value):
        raise UserError(f"{where}: field {field!r} contains whitespace ({value!r}); TREC runs cannot carry it")
    return value


def _check_text(value: object, where: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: field {field!r} is missing or empty")
    return value


def _optional_str(value: object, where: str, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UserError(f"{where}: field {field!r} must be a string, got {type(value).__name__}")
    return value


def _records(path: Path) -> Iterator[tuple[str, dict]]:
    """Yield (location, record) from a jsonl file, or from a TSV file (id, text[, title])."""
    is_tsv = path.suffix.lower() in (".tsv", ".tab")
    for lineno, line in _lines(path):
        where = f"{path}:{lineno}"
        if is_tsv:
            fields = line.split("\t")
            if lineno == 1 and fields[0].strip().lower() in ID_FIELDS:
                continue  # header row, as in DPR's psgs_w100.tsv
            if len(fields) < 2:
                raise UserError(f"{where}: expected 'id<TAB>text[<TAB>title]', found no tab")
            record = {"id": fields[0].strip(), "text": fields[1]}
            if len(fields) > 2:
                record["title"] = fields[2]
            yield where, record
            continue
        yield where, _json_object(line, where)


_JSON_ARRAY = "expected a JSON object per line (JSON Lines), found a JSON array; convert it with: jq -c '.[]' FILE"


def _json_object(line: str, where: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        if line.lstrip().startswith("["):  # the start of a JSON array (or a whole one over many lines)
            raise UserError(f"{where}: {_JSON_ARRAY}") from None
        raise UserError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if isinstance(record, list):
        raise UserError(f"{where}: {_JSON_ARRAY}")
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def passage_text(doc: Document) -> str:
    """What passage encoders and BM25 read: 'title text' when there is a title."""
    return f"{doc.title} {doc.text}" if doc.title else doc.text


def _lang(record: dict, where: str) -> str:
    lang = _optional_str(record.get("lang"), where, "lang")
    if any(c.isspace() for c in lang):
        raise UserError(f"{where}: field 'lang' is {lang!r}; a language code has no spaces or line breaks")
    return lang


def _record_id(record: dict, where: str) -> str:
    field = next((f for f in ID_FIELDS if f in record), "id")
    return _check_id(record.get(field), where, field)


def _unique(items: Iterable[tuple[str, str, object]]) -> Iterator[object]:
    seen: dict[str, str] = {}
    for where, item_id, item in items:
        if item_id in seen:
            raise UserError(f"{where}: duplicate id {item_id!r} (first seen at {seen[item_id]})")
        seen[item_id] = where
        yield item


def document_of(record: dict, where: str) -> Document:
    """A corpus row (id, text, title?, lang?) checked field by field; `where` names it in errors."""
    return Document(
        id=_record_id(record, where),
        text=_check_text(record.get("text"), where, "text"),
        title=_optional_str(record.get("title"), where, "title"),
        lang=_lang(record, where),
    )


def iter_corpus(path: str | Path) -> Iterator[Document]:
    """Documents in file order (the canonical shard order). jsonl: id, text, title?, lang?."""
    path = Path(path)

    def parsed() -> Iterator[tuple[str, str, Document]]:
        for where, record in _records(path):
            doc = document_of(record, where)
            yield where, doc.id, doc

    count = 0
    for doc in _unique(parsed()):
        count += 1
        yield doc
    if count == 0:
        raise UserError(f"{path}: no documents")


def read_corpus(path: str | Path) -> list[Document]:
    return list(iter_corpus(path))


def read_queries(path: str | Path) -> list[Query]:
    """Queries from jsonl (id, text, lang?; `question` or `query` also name the text) or TSV (id<TAB>text)."""
    path = Path(path)

    def parsed() -> Iterator[tuple[str, str, Query]]:
        for where, record in _records(path):
            query_id = _record_id(record, where)
            field = next((f for f in QUERY_TEXT_FIELDS if f in record), "text")
            query = Query(
                id=query_id,
                text=_check_text(record.get(field), where, field),
                lang=_lang(record, where),
            )
            yield where, query_id, query

    queries = list(_unique(parsed()))
    if not queries:
        raise UserError(f"{path}: no queries")
    return queries


def read_lines(path: str | Path) -> list[str]:
    """Lines as `write_lines` wrote them (split on newline only: an empty line is an empty value)."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def write_lines(path: str | Path, lines: Iterable[str]) -> None:
    with atomic_open(path) as f:
        for line in lines:
            f.write(line + "\n")


def write_jsonl(path: str | Path, records: Iterable[dict]) -> None:
    with atomic_open(path) as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def trec_lines(query_id: str, hits: Iterable[tuple[str, float]], tag: str) -> Iterator[str]:
    """TREC run lines for one query: ranks from 1, ordered by (-score, docid) so ties are deterministic."""
    # ordered by the score as written, so a reader re-sorting the file gets the same order
    ordered = sorted(hits, key=lambda hit: (-round(hit[1], 6), hit[0]))
    for rank, (doc_id, score) in enumerate(ordered, start=1):
        yield f"{query_id} Q0 {doc_id} {rank} {score:.6f} {tag}"


def check_tag(tag: str) -> None:
    """A TREC run tag is one whitespace-free field; checked before the work whose run it names."""
    if any(c.isspace() for c in tag) or not tag:
        raise UserError(f"run tag {tag!r} must be non-empty and contain no whitespace")


def write_trec_run(path: str | Path, results: Iterable[tuple[str, Iterable[tuple[str, float]]]], tag: str) -> None:
    """Write `(query id, [(docid, score), ...])` pairs as one TREC run file, atomically."""
    check_tag(tag)
    write_lines(path, (line for query_id, hits in results for line in trec_lines(query_id, hits, tag)))


def write_run(
    path: str | Path,
    results: Iterable[tuple[str, Iterable[tuple[str, float]]]],
    tag: str,
    index: str | Path,
    queries: str | Path,
    **settings: Any,
) -> None:
    """A TREC run and, beside it in `RUN.json`, what made it: index, queries (with checksums) and settings."""
    write_trec_run(path, results, tag)
    atomic_write_json(
        f"{path}.json",
        {
            "index": str(Path(index).resolve()),
            "index_manifest_sha256": sha256_file(Path(index) / "manifest.json"),
            "queries": str(Path(queries).resolve()),
            "queries_sha256": sha256_file(queries),
            **settings,
            "tag": tag,
        },
    )


def _columns(path: Path, layout: str) -> Iterator[tuple[str, list[str]]]:
    """Whitespace-separated rows with exactly as many fields as `layout` names."""
    expected = len(layout.split())
    for lineno, line in _lines(path):
        fields = line.split()
        if len(fields) != expected:
            raise UserError(f"{path}:{lineno}: expected {expected} fields '{layout}', found {len(fields)}")
        yield f"{path}:{lineno}", fields


@dataclass(frozen=True)
class RunEntry:
    docid: str
    rank: int
    score: float


def read_trec_run(path: str | Path) -> dict[str, list[RunEntry]]:
    """TREC run `qid Q0 docid rank score tag`, entries per query in rank order."""
    run: dict[str, list[RunEntry]] = {}
    for where, fields in _columns(Path(path), "qid Q0 docid rank score tag"):
        try:
            entry = RunEntry(fields[2], int(fields[3]), float(fields[4]))
        except ValueError:
            raise UserError(f"{where}: rank must be an integer and score a number") from None
        run.setdefault(fields[0], []).append(entry)
    for entries in run.values():
        entries.sort(key=lambda e: (e.rank, -e.score, e.docid))
    return run


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """TREC qrels `qid iteration docid relevance` (space or tab separated)."""
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    for where, fields in _columns(path, "qid 0 docid relevance"):
        try:
            qrels.setdefault(fields[0], {})[fields[2]] = int(fields[3])
        except ValueError:
            raise UserError(f"{where}: relevance {fields[3]!r} is not an integer") from None
    if not qrels:
        raise UserError(f"{path}: no judgments")
    return qrels


@dataclass(frozen=True)
class Answers:
    id: str
    answers: tuple[str, ...]
    lang: str = ""


def read_answers(path: str | Path) -> list[Answers]:
    """XOR-Retrieve style answers: jsonl `{"id", "answers": [str], "lang"}`."""
    path = Path(path)

    def parsed() -> Iterator[tuple[str, str, Answers]]:
        for where, record in _records(path):
            query_id = _record_id(record, where)
            answers = record.get("answers")
            if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
                raise UserError(f"{where}: field 'answers' must be a list of strings")
            lang = _lang(record, where)
            yield where, query_id, Answers(query_id, tuple(answers), lang)

    items = list(_unique(parsed()))
    if not items:
        raise UserError(f"{path}: no answers")
    return items


def read_parallel(path: str | Path) -> list[tuple[str, str]]:
    """(source, translation) pairs for distillation: jsonl {"source", "translation"} or TSV
    `source<TAB>translation[<TAB>another translation ...]` (sentence-transformers' parallel-sentences files)."""
    path = Path(path)
    pairs = []
    is_tsv = path.name.lower().removesuffix(".gz").endswith((".tsv", ".tab", ".txt"))
    for lineno, line in _lines(path):
        where = f"{path}:{lineno}"
        if is_tsv:
            fields = [f.strip() for f in line.split("\t")]
            if len(fields) < 2 or not all(fields):
                raise UserError(f"{where}: expected 'source<TAB>translation', with no empty field")
            pairs.extend((fields[0], translation) for translation in fields[1:])
            continue
        record = _json_object(line, where)
        pairs.append(
            (
                _check_text(record.get("source"), where, "source"),
                _check_text(record.get("translation"), where, "translation"),
            )
        )
    if not pairs:
        raise UserError(f"{path}: no sentence pairs")
    return pairs


@dataclass(frozen=True)
class GeneratedQuery:
    """A query generated for a passage (xQG): which passage, in which language, and what made it."""

    docid: str
    lang: str
    text: str
    generator: str = ""
    seed: int | None = None


def iter_generated(path: str | Path) -> Iterator[GeneratedQuery]:
    """Generated queries, jsonl `{"docid", "lang", "text", "generator"?, "seed"?}`, streamed in file order."""
    for where, record in _records(Path(path)):
        seed = record.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise UserError(f"{where}: field 'seed' must be an integer")
        yield GeneratedQuery(
            docid=_check_id(record.get("docid"), where, "docid"),
            lang=_check_text(record.get("lang"), where, "lang").strip(),
            text=_check_text(record.get("text"), where, "text"),
            generator=_optional_str(record.get("generator"), where, "generator"),
            seed=seed,
        )


def generated_json(query: GeneratedQuery) -> dict:
    record = {"docid": query.docid, "lang": query.lang, "text": query.text, "generator": query.generator}
    return record | {"seed": query.seed} if query.seed is not None else record


def write_generated(path: str | Path, queries: Iterable[GeneratedQuery]) -> None:
    write_jsonl(path, (generated_json(q) for q in queries))
