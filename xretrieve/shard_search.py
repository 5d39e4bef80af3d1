"""One shard of an index, searched: its top-k candidates with ties, within language filters and without the
rows a live index has deleted (FAISS ID selectors), and the merge of every shard's candidates."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xretrieve.errors import UserError
from xretrieve.formats import read_lines
from xretrieve.index_shard import index_layers
from xretrieve.manifest import verify_files


@dataclass(frozen=True)
class Hit:
    docid: str
    score: float
    lang: str


def _search_parameters(index, selector):
    """faiss per-call parameters carrying a selector, keeping the index's own nprobe/efSearch/k_factor."""
    import faiss

    def build(layers):
        layer, rest = layers[0], layers[1:]
        if isinstance(layer, faiss.IndexPreTransform):
            return faiss.SearchParametersPreTransform(index_params=build(rest))
        if isinstance(layer, faiss.IndexRefine):
            return faiss.IndexRefineSearchParameters(k_factor=layer.k_factor, base_index_params=build(rest))
        if isinstance(layer, faiss.IndexIVF):
            return faiss.SearchParametersIVF(sel=selector, nprobe=layer.nprobe, max_codes=layer.max_codes)
        if isinstance(layer, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW(sel=selector, efSearch=layer.hnsw.efSearch)
        return faiss.SearchParameters(sel=selector)

    return build(list(index_layers(index)))


class IndexShard:
    """One shard of an index (its faiss index, docids and languages), answering `hits` for `merge_hits`: what
    a `Searcher` holds per shard, and what xretrieve.ray serves as one deployment. `deleted` marks the rows a
    live index has removed since its base generation."""

    def __init__(self, index, docids: list[str], langs: np.ndarray, deleted: np.ndarray | None = None):
        self.index, self.docids, self.langs, self.deleted = index, docids, langs, deleted
        self._filters: dict[frozenset[str] | None, _Filter | None] = {}

    @classmethod
    def load(cls, folder: Path, entry: dict, params: str, verify: bool = True) -> IndexShard:
        import faiss

        name = entry["name"]
        if verify:
            verify_files(folder, entry["files"])
        index = faiss.read_index(str(folder / f"{name}.faiss"))
        if params:
            try:
                faiss.ParameterSpace().set_index_parameters(index, params)
            except RuntimeError as exc:
                raise UserError(f"search parameters {params!r}: {str(exc).strip().splitlines()[-1]}") from None
        docids = read_lines(folder / f"{name}.docids.txt")
        langs = np.array(read_lines(folder / f"{name}.langs.txt"), dtype=object)
        if not len(docids) == len(langs) == index.ntotal:
            raise UserError(f"{folder}/{name}: index, docids and langs disagree on the number of rows")
        return cls(index, docids, langs)

    @classmethod
    def of_vectors(cls, vectors: np.ndarray, docids: list[str], langs: list[str]) -> IndexShard:
        """An exact (Flat) shard over vectors in memory: a live index's documents added since its base."""
        import faiss

        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(index, docids, np.array(langs, dtype=object))

    def with_deleted(self, deleted: np.ndarray | None) -> IndexShard:
        """This shard with other rows deleted (the index is shared, the filters are not)."""
        return IndexShard(
            self.index, self.docids, self.langs, deleted if deleted is not None and deleted.any() else None
        )

    def hits(self, vectors: np.ndarray, k: int, langs: frozenset[str] | None) -> list[list[Hit]]:
        """This shard's candidates per query for `merge_hits`: its top k and every row tied with the k-th."""
        restricted = langs is not None or self.deleted is not None
        if self.index.ntotal == 0 or (restricted and self.filter(langs) is None):
            return [[] for _ in range(len(vectors))]
        scores, rows = self._top(vectors, k, langs)
        return [
            [Hit(self.docids[r], float(s), self.langs[r]) for s, r in zip(score_row, id_row, strict=True) if r >= 0]
            for score_row, id_row in zip(scores, rows, strict=True)
        ]

    def _top(self, vectors: np.ndarray, k: int, langs: frozenset[str] | None) -> tuple[list, list]:
        """Per query, scores and rows of at least its top k (-1 where fewer qualify) and of every row tied
        with the k-th: which of the tied rows makes the merged top-k is then decided by docid, so k=1 heads
        k=3. Queries that searched again have longer arrays than the rest."""
        wanted = self.filter(langs) if langs is not None or self.deleted is not None else None
        total = self.index.ntotal
        fetch = min(k + 1, total)
        scores, rows = self._search(vectors, fetch, wanted)
        found_scores, found_rows = list(scores), list(rows)
        todo = np.arange(len(vectors))
        while fetch < total:
            found = (rows >= 0).sum(axis=1)
            last = scores[np.arange(len(rows)), np.maximum(found - 1, 0)]
            again = (found > k) & (last == scores[:, k - 1])  # the k-th ties with the last row fetched
            if wanted is not None and wanted.mask is not None:
                again |= found <= k  # filtered out after the search: look further
            todo = todo[again]
            if not len(todo):
                break
            # only the queries that need it search again: one tie must not double a whole batch's time
            fetch = min(2 * fetch, total)
            scores, rows = self._search(vectors[todo], fetch, wanted)
            for i, query in enumerate(todo):
                found_scores[query], found_rows[query] = scores[i], rows[i]
        return found_scores, found_rows

    def _search(self, vectors: np.ndarray, fetch: int, wanted: _Filter | None) -> tuple[np.ndarray, np.ndarray]:
        if wanted is None:
            return self.index.search(vectors, fetch)
        if wanted.mask is not None:
            return _keep_rows(*self.index.search(vectors, fetch), wanted.mask)
        if wanted.params is None:  # few rows selected: scanning their codes costs less than the search
            return wanted.scan.search(vectors, fetch, params=wanted.scan_params)
        scores, rows = self.index.search(vectors, fetch, params=wanted.params)
        if wanted.scan is not None:
            # the search can stop before it meets `fetch` selected rows: scan for those queries
            short = np.flatnonzero((rows >= 0).sum(axis=1) < min(fetch, wanted.rows))
            if len(short):
                scores[short], rows[short] = wanted.scan.search(vectors[short], fetch, params=wanted.scan_params)
        return scores, rows

    def filter(self, langs: frozenset[str] | None) -> _Filter | None:
        """How this shard searches within `langs` (None: all) and its rows not deleted; None when no row is left."""
        if langs not in self._filters:
            mask = np.ones(len(self.docids), bool) if langs is None else np.isin(self.langs, list(langs))
            if self.deleted is not None:
                mask &= ~self.deleted
            self._filters[langs] = _Filter.of(self.index, mask) if mask.any() else None
        return self._filters[langs]


@dataclass
class _Filter:
    """Search within a subset of one shard's rows.

    Graphs (HNSW) and IVF take a faiss ID selector, but their search stops after a set amount of work
    (efSearch candidates, nprobe lists) whether or not it met k selected rows. So a graph walks wider, by
    the share of rows left out; a query that still comes back short, or a subset small enough that scanning
    it costs less than the search, gets an exact scan of the selected rows' stored codes instead. Other
    indexes take the selector as they are (Flat is exact), or, where they reject it (flat and fast-scan
    PQ), are filtered with a mask after searching."""

    rows: int  # rows selected
    params: Any = None  # faiss search parameters with the selector; None: always scan
    mask: np.ndarray | None = None  # post-filter mask, for indexes that take no selector
    scan: Any = None  # the index whose search with scan_params is exact over the selected rows' codes
    scan_params: Any = None
    keep: tuple = ()  # the bitmap and selector must outlive every search that uses them

    @classmethod
    def of(cls, index, mask: np.ndarray) -> _Filter:
        import faiss

        rows, total = int(mask.sum()), len(mask)
        bitmap = np.packbits(mask, bitorder="little")
        selector = faiss.IDSelectorBitmap(total, faiss.swig_ptr(bitmap))
        keep = (bitmap, selector)
        top = faiss.downcast_index(index)
        if isinstance(top, faiss.IndexHNSW):
            widened = math.ceil(top.hnsw.efSearch * total / rows)
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=widened)
            if widened * top.hnsw.nb_neighbors(0) >= rows:  # the walk would compute more distances than a scan
                params = None
            scan = faiss.downcast_index(top.storage)  # owned by the index, which the shard keeps
            return cls(rows, params, scan=scan, scan_params=faiss.SearchParameters(sel=selector), keep=keep)
        if isinstance(top, faiss.IndexIVF) and not isinstance(top, faiss.IndexIVFFastScan):
            params = faiss.SearchParametersIVF(sel=selector, nprobe=top.nprobe, max_codes=top.max_codes)
            if rows <= total * top.nprobe / top.nlist:  # fewer rows than the probed lists hold
                params = None
            scan_params = faiss.SearchParametersIVF(sel=selector, nprobe=top.nlist)
            return cls(rows, params, scan=top, scan_params=scan_params, keep=keep)
        params = _search_parameters(index, selector)
        try:
            index.search(np.zeros((1, index.d), np.float32), 1, params=params)
        except RuntimeError:
            return cls(rows, mask=mask)
        return cls(rows, params, keep=keep)


def read_docids(folder: Path, manifest: dict) -> list[str]:
    """Every document id of an index in index order (the order of its document store), from its files."""
    return [docid for entry in manifest["shards"] for docid in read_lines(folder / f"{entry['name']}.docids.txt")]


def merge_hits(per_shard: list[list[list[Hit]]], queries: int, k: int) -> list[list[Hit]]:
    """The top k per query over every shard's candidates, ordered by (-score, docid)."""
    merged: list[list[Hit]] = [[] for _ in range(queries)]
    for shard_hits in per_shard:
        for hits, found in zip(merged, shard_hits, strict=True):
            hits.extend(found)
    return [sorted(hits, key=lambda h: (-h.score, h.docid))[:k] for hits in merged]


def _keep_rows(scores: np.ndarray, rows: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop rows outside `mask`, keeping the order of the rest and padding with -1 at the end."""
    keep = (rows >= 0) & mask[np.maximum(rows, 0)]
    order = np.argsort(~keep, axis=1, kind="stable")
    rows = np.where(np.take_along_axis(keep, order, axis=1), np.take_along_axis(rows, order, axis=1), -1)
    return np.take_along_axis(scores, order, axis=1), rows
