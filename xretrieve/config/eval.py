"""Settings of the evaluation verbs (evaluate, fuse, reproduce, bm25) and of convert."""

from __future__ import annotations

from dataclasses import dataclass

from xretrieve.config.fields import option, parse_list, progress_option
from xretrieve.convert import LAYOUTS
from xretrieve.errors import UserError
from xretrieve.evaluation.evaluate import ANSWER_MEASURES, BREAKDOWNS, DEFAULT_MEASURES
from xretrieve.evaluation.fuse import FUSION_METHODS

BM25_ACTIONS = ("index", "search")


@dataclass
class EvaluateConfig:
    """Score a TREC run against qrels (trec_eval measures) or XOR answers (R@kt)."""

    run: str = option(help="TREC run file", input_file=True)
    qrels: str | None = option(None, "TREC qrels: qid 0 docid relevance", one_of="judgements", input_file=True)
    answers: str | None = option(
        None, "XOR-Retrieve answers jsonl (id, answers, lang); needs --corpus", one_of="judgements", input_file=True
    )
    corpus: str | None = option(
        None, "corpus holding the run's passages (for --answers and --by doc-lang)", input_file=True
    )
    queries: str | None = option(None, "queries file: its languages give the per-language table", input_file=True)
    metrics: list[str] | None = option(
        None,
        "comma-separated trec_eval measures",
        parse=parse_list,
        unset=f"{','.join(DEFAULT_MEASURES)}; with --answers {','.join(ANSWER_MEASURES)}",
    )
    skip_missing: bool = option(
        False, "average over queries in the run only (trec_eval without -c); without it a missing query scores 0"
    )
    by: str = option(
        "query-lang",
        "per language of the queries (with --queries); doc-lang adds one per language of the relevant "
        "documents (with --qrels and --corpus)",
        choices=BREAKDOWNS,
    )
    out: str | None = option(None, "write the scores as JSON", unset="printed only")

    def __post_init__(self) -> None:
        if (self.qrels is None) == (self.answers is None):
            raise UserError("evaluate: give exactly one of --qrels or --answers")


@dataclass
class FuseConfig:
    """Fuse runs: reciprocal rank fusion or score interpolation (pyserini's hybrid)."""

    runs: list[str] = option(help="TREC runs; for interpolation: dense then sparse", many=True, input_file=True)
    out: str = option(help="fused TREC run file")
    method: str = option("rrf", "reciprocal rank fusion, or score interpolation", choices=FUSION_METHODS)
    k: int = option(1000, "hits kept per query")
    rrf_k: int = option(60, "rrf: the constant k in 1 / (k + rank)")
    depth: int = option(1000, "rrf: hits read from each run")
    alpha: float = option(0.1, "interpolation: first + alpha * second")
    normalize: bool = option(False, "interpolation: normalise each run's scores first")
    tag: str = option("fused", "run tag (last TREC column)")


@dataclass
class ReproduceConfig:
    """Run a reproduction file's conditions and check their scores."""

    file: str = option(help="YAML file, e.g. benchmarks/demo.yaml", positional=True, input_file=True)
    condition: list[str] | None = option(None, "run only this condition (repeatable)", repeat=True, unset="all")


@dataclass
class ConvertConfig:
    """Convert a dataset in its official layout (MIRACL, XOR-Retrieve, Tevatron, SWIM-IR, BEIR) into
    xretrieve's corpus, queries, qrels, answers and training files."""

    layout: str = option(help="the dataset's layout", choices=LAYOUTS)
    source: str = option(help="the dataset's folder (or file) as distributed")
    out: str = option(help="folder for the converted files")
    lang: str | None = option(None, "language (MIRACL: required; XOR, SWIM-IR: a filter)", unset="all")
    split: str = option("dev", "train, dev, test (MIRACL: test-a, test-b)")


@dataclass
class Bm25Config:
    """BM25 baseline through pyserini (extra 'bm25', Java 21+): index a corpus, search it."""

    action: str = option(help="index a corpus, or search an index", positional=True, choices=BM25_ACTIONS)
    corpus: str | None = option(None, "index: corpus jsonl", input_file=True)
    index: str | None = option(None, "search: the BM25 index folder")
    queries: str | None = option(None, "search: queries file", input_file=True)
    out: str | None = option(None, "index: new folder; search: TREC run file")
    language: str | None = option(None, "Lucene analyzer language", unset="en; sw, yo, ha, so: whitespace")
    k: int = option(100, "hits per query")
    k1: float = option(0.9, "BM25 k1")
    b: float = option(0.4, "BM25 b")
    threads: int = option(1, "Lucene threads")
    tag: str = option("bm25", "run tag (last TREC column)")
    progress: bool = progress_option()

    def __post_init__(self) -> None:
        if self.action not in BM25_ACTIONS:
            raise UserError(f"bm25 {self.action!r}: choose one of {', '.join(BM25_ACTIONS)}")
        need = ("corpus", "out") if self.action == "index" else ("index", "queries", "out")
        missing = [f"--{name}" for name in need if getattr(self, name) is None]
        if missing:
            raise UserError(f"bm25 {self.action}: {', '.join(missing)} required")
