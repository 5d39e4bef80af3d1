"""Hybrid fusion of runs, with pyserini's semantics: reciprocal rank fusion and score interpolation."""

from __future__ import annotations

from xretrieve.errors import UserError
from xretrieve.formats import RunEntry, check_tag, read_trec_run, write_trec_run

FUSION_METHODS = ("rrf", "interpolation")


def reciprocal_rank_fusion(
    runs: list[dict[str, list[RunEntry]]], rrf_k: int = 60, depth: int = 1000, k: int = 1000
) -> dict[str, list[tuple[str, float]]]:
    """score(d) = sum over runs of 1 / (rrf_k + rank of d), over each run's top `depth` (ranks from 1)."""
    fused: dict[str, dict[str, float]] = {}
    for run in runs:
        for query_id, entries in run.items():
            scores = fused.setdefault(query_id, {})
            for entry in entries[:depth]:
                scores[entry.docid] = scores.get(entry.docid, 0.0) + 1.0 / (rrf_k + entry.rank)
    return {q: _top(scores, k) for q, scores in fused.items()}


def interpolate(
    first: dict[str, list[RunEntry]],
    second: dict[str, list[RunEntry]],
    alpha: float = 0.1,
    normalize: bool = False,
    k: int = 1000,
) -> dict[str, list[tuple[str, float]]]:
    """score(d) = first(d) + alpha * second(d), as pyserini's hybrid search (first = dense, second = sparse).

    A document missing from one run takes that run's lowest score for the query; with `normalize`, each
    run's scores are centred on the middle of their range and divided by the range first.
    """
    fused = {}
    for query_id in sorted(first.keys() | second.keys()):
        a = {e.docid: e.score for e in first.get(query_id, [])}
        b = {e.docid: e.score for e in second.get(query_id, [])}
        a_low, a_high = (min(a.values()), max(a.values())) if a else (0.0, 1.0)
        b_low, b_high = (min(b.values()), max(b.values())) if b else (0.0, 1.0)
        scores = {}
        for doc in a.keys() | b.keys():
            x, y = a.get(doc, a_low), b.get(doc, b_low)
            if normalize:
                x = _centre(x, a_low, a_high)
                y = _centre(y, b_low, b_high)
            scores[doc] = x + alpha * y
        fused[query_id] = _top(scores, k)
    return fused


def _centre(score: float, low: float, high: float) -> float:
    return (score - (low + high) / 2) / (high - low) if high > low else 0.0


def _top(scores: dict[str, float], k: int) -> list[tuple[str, float]]:
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]


def fuse_runs(
    runs: list[str],
    out: str,
    method: str = "rrf",
    k: int = 1000,
    rrf_k: int = 60,
    depth: int = 1000,
    alpha: float = 0.1,
    normalize: bool = False,
    tag: str = "fused",
) -> str:
    if method not in FUSION_METHODS:
        raise UserError(f"--method {method!r}: choose one of {', '.join(FUSION_METHODS)}")
    if len(runs) < 2 or (method == "interpolation" and len(runs) != 2):
        raise UserError(
            f"fuse --method {method}: needs {'exactly 2' if method == 'interpolation' else '2 or more'} runs"
        )
    if rrf_k < 0 or depth < 1 or k < 1:
        raise UserError(f"fuse: --rrf-k must be >= 0 (got {rrf_k}), --depth and --k >= 1 (got {depth}, {k})")
    check_tag(tag)
    loaded = [read_trec_run(path) for path in runs]
    if method == "rrf":
        fused = reciprocal_rank_fusion(loaded, rrf_k=rrf_k, depth=depth, k=k)
    else:
        fused = interpolate(loaded[0], loaded[1], alpha=alpha, normalize=normalize, k=k)
    write_trec_run(out, sorted(fused.items()), tag=tag)
    return out
