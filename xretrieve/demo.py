"""The README's first command: index the bundled mixed-language corpus, answer its sample queries."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from xretrieve.config import IndexConfig
from xretrieve.formats import read_qrels, read_queries
from xretrieve.index import build_index
from xretrieve.manifest import MANIFEST_NAME
from xretrieve.search import Searcher


def demo_data() -> Path:
    return Path(str(resources.files("xretrieve") / "data" / "demo"))


def run_demo(
    out: str = "indexes/demo", model: str | None = None, show: int = 3, progress: bool = True, encoder=None
) -> float:
    """Build (or reuse) the demo index, print ranked hits per query; return the share of queries whose
    top hit is a translation of the query."""
    data = demo_data()
    if (Path(out) / MANIFEST_NAME).is_file():
        print(f"xretrieve: reusing {out} (built earlier; delete it to build it again)")
    else:
        build_index(
            IndexConfig(out=out, corpus=str(data / "corpus.jsonl"), model=model, progress=progress), encoder=encoder
        )
    queries = read_queries(data / "queries.jsonl")
    relevant = {
        qid: {d for d, grade in docs.items() if grade > 0} for qid, docs in read_qrels(data / "qrels.txt").items()
    }
    searcher = Searcher(out, model=model, encoder=encoder)
    results = searcher.search([q.text for q in queries], k=max(show, 1))
    top1 = 0
    for query, hits in zip(queries, results, strict=True):
        answers = relevant.get(query.id, set())
        top1 += bool(hits) and hits[0].docid in answers
        print(f"\n[{query.lang}] {query.text}")
        for rank, hit in enumerate(hits[:show], start=1):
            mark = "+" if hit.docid in answers else " "
            snippet = (searcher.document(hit.docid) or {}).get("text", hit.docid)
            snippet = snippet if len(snippet) <= 90 else snippet[:87] + "..."
            print(f"  {mark} {rank}. {hit.score:.3f} [{hit.lang}] {snippet}")
    share = top1 / len(queries)
    langs = ", ".join(f"{lang} {n}" for lang, n in searcher.langs.items())
    passages = sum(searcher.langs.values())
    print(f"\n{passages} passages ({langs}); {len(queries)} queries, none with an answer in its own language.")
    print(f"Top hit is a translation of the query (+) for {top1}/{len(queries)} queries ({share:.1%}).")
    return share
