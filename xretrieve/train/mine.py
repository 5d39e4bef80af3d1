"""`xretrieve mine-negatives`: hard negatives for training queries from our own index."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict

from xretrieve.config import MineConfig
from xretrieve.encode import passage_text
from xretrieve.formats import Document, iter_corpus, write_jsonl
from xretrieve.manifest import atomic_write_json
from xretrieve.text import shingles
from xretrieve.train.data import load_examples
from xretrieve.training_data import TrainingExample, training_json

_MINE_SEARCH_BLOCK = (
    1024  # training queries searched per call: big enough for batched search, small enough to show progress
)


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def mine_negatives(config: MineConfig) -> dict[str, int]:
    """Hard negatives for each training query from an index: candidates ranked in [min_rank, max_rank], never
    a positive, nor a near-duplicate of one (character 3-gram Jaccard), nor scored within `margin` of the
    positive (likely an unjudged positive); hardest first. Writes the training file with those negatives."""
    from tqdm import tqdm

    from xretrieve.search import Searcher

    examples = load_examples(config.train_data, config.corpus)
    searcher = Searcher(config.index, model=config.model, device=config.device)
    encoder = searcher.encoder
    query_vectors = encoder.encode_queries(
        [e.query for e in examples], batch_size=config.batch_size, progress=config.progress
    )
    positive_texts = [passage_text(p) for e in examples for p in e.positives]
    positive_vectors = encoder.encode_passages(positive_texts, batch_size=config.batch_size, progress=config.progress)
    corpus_docs: Mapping[str, Document] = {}
    if config.corpus:
        corpus_docs = {doc.id: doc for doc in iter_corpus(config.corpus)}
    results = _search(searcher, query_vectors, config)
    counts = {
        "examples": len(examples),
        "negatives": 0,
        "short": 0,
        "excluded_positive": 0,
        "excluded_duplicate": 0,
        "excluded_margin": 0,
    }
    mined: list[TrainingExample] = []
    row = 0
    for example, vector, hits in tqdm(
        list(zip(examples, query_vectors, results, strict=True)), desc="mining", disable=not config.progress
    ):
        n = len(example.positives)
        positive_scores = positive_vectors[row : row + n] @ vector
        row += n
        threshold = float(positive_scores.min()) - config.margin
        chosen = _choose(example, hits, threshold, searcher, corpus_docs, config, counts)
        counts["negatives"] += len(chosen)
        counts["short"] += len(chosen) < config.negatives
        mined.append(TrainingExample(example.query_id, example.query, example.positives, chosen, example.lang))
    write_jsonl(config.out, (training_json(e) for e in mined))
    atomic_write_json(
        f"{config.out}.json",
        {"settings": {k: v for k, v in asdict(config).items() if k != "progress"}, "counts": counts},
    )
    return counts


def _candidate(hit, searcher, corpus_docs: Mapping[str, Document]) -> Document:
    """The candidate's text from the index's document store or the corpus; a bare id when neither has it."""
    stored = searcher.document(hit.docid)
    if stored:
        return Document(stored["id"], stored["text"], stored.get("title", ""), stored.get("lang", ""))
    if hit.docid in corpus_docs:
        return corpus_docs[hit.docid]
    return Document(hit.docid, "", "", hit.lang)


def _search(searcher, query_vectors, config: MineConfig) -> list:
    """Each training query's top `max_rank` hits, searched in blocks so that the progress bar moves."""
    from tqdm import tqdm

    results = []
    with tqdm(
        total=len(query_vectors), desc="mine-negatives: search", unit="query", disable=not config.progress
    ) as bar:
        for start in range(0, len(query_vectors), _MINE_SEARCH_BLOCK):
            block = query_vectors[start : start + _MINE_SEARCH_BLOCK]
            results += searcher.search_vectors(block, k=config.max_rank, langs=config.langs)
            bar.update(len(block))
    return results


def _choose(
    example: TrainingExample, hits, threshold: float, searcher, corpus_docs, config: MineConfig, counts: dict
) -> list[Document]:
    """Up to `negatives` of the hits from `min_rank` on, hardest first, counting what each filter excluded."""
    positive_ids = {p.id for p in example.positives}
    positive_grams = [shingles(passage_text(p)) for p in example.positives]
    chosen: list[Document] = []
    for hit in hits[config.min_rank - 1 :]:
        if len(chosen) == config.negatives:
            break
        if hit.docid in positive_ids:
            counts["excluded_positive"] += 1
            continue
        doc = _candidate(hit, searcher, corpus_docs)
        if doc.text and any(
            jaccard(shingles(passage_text(doc)), grams) >= config.duplicate_threshold for grams in positive_grams
        ):
            counts["excluded_duplicate"] += 1
            continue
        if hit.score > threshold:
            counts["excluded_margin"] += 1
            continue
        chosen.append(doc)
    return chosen
