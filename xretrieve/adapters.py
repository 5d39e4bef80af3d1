"""Readers for the official layouts of MIRACL, XOR-TyDi (XOR-Retrieve), Tevatron, SWIM-IR and BEIR.

Each reader streams its source and names the file, line and field of the first problem. `convert_dataset`
writes them out as xretrieve's own files (corpus.jsonl, queries.jsonl, qrels.txt, answers.jsonl, train.jsonl),
so the rest of the pipeline reads one format only. Corpora are streamed row by row, never held in memory.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from xretrieve.errors import UserError
from xretrieve.formats import (
    Document,
    Query,
    _check_id,
    _check_text,
    _lines,
    _optional_str,
    _record_id,
    _records,
    _unique,
    read_qrels,
    read_queries,
    write_jsonl,
    write_lines,
)

LAYOUTS = ("miracl", "xor-retrieve", "tevatron", "swim-ir", "beir")


@dataclass(frozen=True)
class TrainingExample:
    query_id: str
    query: str
    positives: list[Document]
    negatives: list[Document]
    lang: str = ""  # the query's language; passages carry their own


# --- corpora ---------------------------------------------------------------------------------------------------


def _document(record: dict, where: str, lang: str = "") -> Document:
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


def iter_jsonl_corpus(path: str | Path, lang: str = "") -> Iterator[Document]:
    """Passages of a jsonl(.gz) corpus: MIRACL {docid,title,text}, BEIR {_id,title,text}, Tevatron {docid,...}."""
    for where, record in _records(Path(path)):
        yield _document(record, where, lang)


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
        yield _document({"id": fields[0], "text": fields[1], "title": fields[2]}, where, lang)


def _numbered(paths: Iterable[Path]) -> list[Path]:
    """MIRACL shards in numeric order (docs-2 before docs-10): corpus row order is the canonical shard order."""
    return sorted(paths, key=lambda p: (int(m.group(1)) if (m := re.search(r"(\d+)", p.name)) else -1, p.name))


# --- queries, qrels, answers -------------------------------------------------------------------------------------


def read_miracl_topics(path: str | Path, lang: str) -> list[Query]:
    """MIRACL topics: `qid<TAB>query` per line, no header."""
    return [dataclasses.replace(query, lang=lang) for query in read_queries(path)]


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


# --- training data -----------------------------------------------------------------------------------------------


def _passage(
    value: object, where: str, corpus: Mapping[str, Document] | None, keep_ids: bool, lang: str = ""
) -> Document:
    if isinstance(value, dict):
        return _document(value, where, lang)
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


def _training_example(
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
        yield _training_example(record, where, corpus)


def iter_dpr_training(path: str | Path) -> Iterator[TrainingExample]:
    """DPR's biencoder training JSON (one array; XOR-TyDi's retriever training data comes in it):
    {"question", "answers", "positive_ctxs", "negative_ctxs", "hard_negative_ctxs"}, contexts as
    {"title", "text", "passage_id"}. Hard negatives come first, then the other negatives."""
    import json

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
                _document(
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


# --- writers -----------------------------------------------------------------------------------------------------


def _corpus_json(doc: Document) -> dict:
    return {"id": doc.id, "title": doc.title, "text": doc.text, "lang": doc.lang}


def _query_json(query: Query) -> dict:
    return {"id": query.id, "text": query.text, "lang": query.lang}


def _passage_json(doc: Document) -> dict | str:
    if not doc.text:
        return doc.id  # a bare docid, as the source gave it
    record = {"docid": doc.id, "title": doc.title, "text": doc.text}
    return record | {"lang": doc.lang} if doc.lang else record


def _training_json(example: TrainingExample) -> dict:
    record = {"query_id": example.query_id, "query": example.query}
    if example.lang:
        record["lang"] = example.lang
    record["positive_passages"] = [_passage_json(p) for p in example.positives]
    record["negative_passages"] = [_passage_json(p) for p in example.negatives]
    return record


def _qrels_lines(qrels: Iterable[tuple[str, str, int]]) -> Iterator[str]:
    for query_id, doc_id, relevance in qrels:
        yield f"{query_id} 0 {doc_id} {relevance}"


# --- finding the files of a layout -------------------------------------------------------------------------------


def _find(root: Path, names: Iterable[str]) -> Path | None:
    """`root/name` or the first match below root, for the first name that exists (official trees nest files)."""
    for name in names:
        if (root / name).is_file():
            return root / name
        if found := sorted(root.rglob(name)):
            return found[0]
    return None


def _require(root: Path, names: tuple[str, ...], what: str) -> Path:
    path = _find(root, names)
    if path is None:
        raise UserError(f"{root}: no {what} found (looked for {' or '.join(names)} in it and its subfolders)")
    return path


def _jsonl_files(source: Path, recursive: bool, exclude: str = "") -> list[Path]:
    """`source` itself, or the *.jsonl and *.jsonl.gz files in it, in name order."""
    if source.is_file():
        return [source]
    files = sorted(source.rglob("*.jsonl*") if recursive else source.glob("*.jsonl*"))
    return [
        p for p in files if p.name.endswith((".jsonl", ".jsonl.gz")) and not (exclude and p.name.startswith(exclude))
    ]


# --- one converter per layout ------------------------------------------------------------------------------------

MIRACL_SPLITS = {"testA": "test-a", "testB": "test-b"}  # the HF loader's names for the files' test-a/test-b


def _convert_miracl(source: Path, out: Path, lang: str | None, split: str) -> dict[str, Path]:
    if not lang:
        found = sorted(p.name.removeprefix("miracl-v1.0-") for p in source.rglob("miracl-v1.0-*") if p.is_dir())
        raise UserError(f"MIRACL needs a language (found in {source}: {', '.join(found) or 'none'})")
    split = MIRACL_SPLITS.get(split, split)
    base = f"miracl-v1.0-{lang}-{split}.tsv"
    written = {}
    topics = _require(source, (f"topics.{base}",), f"MIRACL {lang} {split} topics")
    written["queries"] = out / "queries.jsonl"
    queries = read_miracl_topics(topics, lang)
    write_jsonl(written["queries"], (_query_json(q) for q in queries))
    qrels_path = _find(source, (f"qrels.{base}",))
    if qrels_path is None and not split.startswith("test"):  # test-a/test-b are released without qrels
        raise UserError(f"{source}: no MIRACL {lang} {split} qrels found (looked for qrels.{base})")
    if qrels_path is not None:
        qrels = read_qrels(qrels_path)
        written["qrels"] = out / "qrels.txt"
        write_lines(written["qrels"], _qrels_lines((q, d, r) for q, docs in qrels.items() for d, r in docs.items()))
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
        docs = (_corpus_json(d) for shard in shards for d in iter_jsonl_corpus(shard, lang))
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
            yield _training_json(
                TrainingExample(
                    query.id,
                    query.text,
                    [Document(d, "") for d in positives],
                    [Document(d, "") for d in negatives],
                    query.lang,
                )
            )


XOR_QUESTIONS = {
    "train": ("xor_train_retrieve_eng_span.jsonl",),
    "dev": ("xor_dev_retrieve_eng_span_v1_1.jsonl", "xor_dev_retrieve_eng_span.jsonl"),
    "test": ("xor_test_retrieve_eng_span_q_only_v1_1.jsonl", "xor_test_retrieve_eng_span_q_only.jsonl"),
}
XOR_COLLECTION = ("psgs_w100.tsv", "enwiki_20190201_w100.tsv")


def _convert_xor(source: Path, out: Path, lang: str | None, split: str) -> dict[str, Path]:
    if source.is_file():
        questions, folder = source, source.parent
    else:
        if split not in XOR_QUESTIONS:
            raise UserError(f"XOR-Retrieve split must be one of {', '.join(XOR_QUESTIONS)}, got {split!r}")
        questions, folder = _require(source, XOR_QUESTIONS[split], f"XOR-Retrieve {split} questions"), source
    rows = read_xor_questions(questions, lang)
    written = {"queries": out / "queries.jsonl"}
    write_jsonl(written["queries"], (_query_json(query) for query, _ in rows))
    if rows[0][1] is not None:
        written["answers"] = out / "answers.jsonl"
        write_jsonl(written["answers"], ({"id": q.id, "answers": a, "lang": q.lang} for q, a in rows))
    collection = _find(folder, XOR_COLLECTION)
    if collection is not None:  # 13 GB, downloaded apart from the questions; convert it when it is there
        written["corpus"] = out / "corpus.jsonl"
        write_jsonl(written["corpus"], (_corpus_json(d) for d in iter_dpr_passages(collection)))
    return written


TEVATRON_CORPUS = ("corpus.jsonl", "corpus.jsonl.gz")


def _convert_tevatron(source: Path, out: Path, lang: str | None, split: str) -> dict[str, Path]:
    if lang:
        raise UserError("the tevatron layout takes no language: its rows mix languages and carry no language field")
    files = _jsonl_files(source, recursive=False, exclude="corpus.")
    if not files:
        raise UserError(f"{source}: no Tevatron training files (*.jsonl or *.jsonl.gz)")
    folder = source if source.is_dir() else source.parent
    corpus = next((folder / name for name in TEVATRON_CORPUS if (folder / name).is_file()), None)

    def examples() -> Iterator[dict]:
        for path in files:
            for where, record in _records(path):
                example = _training_example(record, where, None, keep_ids=True)
                if corpus is None and any(not p.text for p in example.positives + example.negatives):
                    raise UserError(
                        f"{where}: passages given as docids need {' or '.join(TEVATRON_CORPUS)} in {folder}"
                    )
                yield _training_json(example)

    written = {"train": out / "train.jsonl"}
    write_jsonl(written["train"], examples())
    if corpus is not None:
        written["corpus"] = out / "corpus.jsonl"
        write_jsonl(written["corpus"], (_corpus_json(d) for d in iter_jsonl_corpus(corpus)))
    return written


def _convert_swim_ir(source: Path, out: Path, lang: str | None, split: str) -> dict[str, Path]:
    files = _jsonl_files(source, recursive=True)
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
                    yield _training_json(example)
        if count == 0:
            raise UserError(f"{source}: no SWIM-IR pairs" + (f" with code {lang!r}" if lang else ""))

    written = {"train": out / "train.jsonl"}
    write_jsonl(written["train"], examples())
    return written


def _convert_beir(source: Path, out: Path, lang: str | None, split: str) -> dict[str, Path]:
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
    write_jsonl(written["queries"], (_query_json(q) for q in kept))
    write_lines(written["qrels"], _qrels_lines((q, d, s) for _, q, d, s in qrels))
    write_jsonl(written["corpus"], (_corpus_json(d) for d in iter_jsonl_corpus(corpus, lang or "")))
    return written


CONVERTERS = {
    "miracl": _convert_miracl,
    "xor-retrieve": _convert_xor,
    "tevatron": _convert_tevatron,
    "swim-ir": _convert_swim_ir,
    "beir": _convert_beir,
}


def convert_dataset(layout: str, source: str, out: str, lang: str | None = None, split: str = "dev") -> dict[str, str]:
    """Convert a dataset in its official layout into xretrieve files in folder `out`; returns {kind: path}.

    Kinds: corpus, queries, qrels, answers, train (whichever the layout has). `lang` picks the MIRACL
    language (required), keeps only that language's XOR-Retrieve questions and SWIM-IR pairs, and labels
    BEIR rows. `split` picks MIRACL (train, dev, test-a, test-b), XOR-Retrieve (train, dev, test) and BEIR
    (qrels/{split}.tsv) files; Tevatron and SWIM-IR read every jsonl file given. Optional parts (MIRACL
    corpus, XOR collection, Tevatron corpus.jsonl[.gz]) are converted when present in `source`.
    """
    if layout not in CONVERTERS:
        raise UserError(f"unknown dataset layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    source_path = Path(source)
    if not source_path.exists():
        raise UserError(f"{source}: no such file or folder")
    if layout in ("miracl", "beir") and not source_path.is_dir():
        raise UserError(f"{source}: the {layout} layout is a folder; give the folder, not a file")
    written = CONVERTERS[layout](source_path, Path(out), lang, split)
    return {kind: str(path) for kind, path in written.items()}
