"""One Searcher over all shards of an index (xretrieve/shard_search.py searches each): merged top-k, language
filters, a live index's changes, batch search; `run_search` for a queries file."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xretrieve.config import SearchConfig
from xretrieve.docstore import DocStore
from xretrieve.errors import UserError
from xretrieve.formats import read_queries, write_run
from xretrieve.index import read_index_manifest
from xretrieve.live import Changes, generation_folder, live_settings, read_log, replay, wal_path
from xretrieve.manifest import check_writable_file, verify_files
from xretrieve.shard_search import Hit, IndexShard, merge_hits, read_docids

__all__ = ["Hit", "IndexShard", "Searcher", "merge_hits", "read_docids", "run_search"]


@dataclass(frozen=True)
class _View:
    """What one search reads, replaced whole when a live index changes (so a search sees a batch of changes
    whole or not at all): the base shards with their deleted rows, the documents added since the base as one
    more exact shard, and the documents per language."""

    shards: tuple[IndexShard, ...]
    langs: dict[str, int]
    changes: Changes


class Searcher:
    """Loads an index folder and the query encoder it names, and answers queries. A live index's changes
    (`xretrieve add` / `delete`, `serve --writable`) are replayed from its log at load.

    `manifest`: the folder's manifest, when the caller has read it already. `shards`: the index's shards
    opened elsewhere (xretrieve.ray passes Ray Serve deployments), each answering `hits(vectors, k, langs)`
    through `shard_hits`; by default each shard's files are opened here."""

    def __init__(
        self,
        index_dir: str | Path,
        model: str | None = None,
        encoder=None,
        device: str | None = None,
        verify: bool = True,
        search_params: str | None = None,
        translate: bool = True,
        translator=None,
        docs_in_memory: bool = False,
        load_model: bool = True,
        manifest: dict | None = None,
        shards: list | None = None,
    ):
        self.folder = Path(index_dir)
        self.manifest = read_index_manifest(self.folder) if manifest is None else manifest
        live = live_settings(self.manifest)
        self.generation = live["generation"]
        self.data = self.folder / generation_folder(self.generation)  # where this generation's files are
        docs = self.manifest.get("docs")
        if verify and docs and not docs_in_memory:  # else checked as it is read into memory
            verify_files(self.data, docs["files"])
        params = self.manifest.get("search_params", "")
        if search_params:
            params = f"{params},{search_params}" if params else search_params
        self.search_params = params
        if shards is None:
            self.shards = [IndexShard.load(self.data, entry, params, verify) for entry in self.manifest["shards"]]
            self._base_ids = [docid for shard in self.shards for docid in shard.docids]
        else:
            self.shards = list(shards)  # each verifies and opens its own files
            self._base_ids = read_docids(self.data, self.manifest)
        self.docs = DocStore(self.data, self._base_ids, docs["files"] if docs_in_memory else None) if docs else None
        self._base_rows: dict[str, int] | None = None
        log = wal_path(self.folder, self.generation)
        records, self.log_end = read_log(log)
        for record in records:
            if record.vectors is not None and record.vectors.shape[1] != self.manifest["dim"]:
                raise UserError(
                    f"{log}: change {record.seq} holds {record.vectors.shape[1]}-dimensional vectors, the index "
                    f"{self.manifest['dim']}-dimensional ones"
                )
        empty = _View(tuple(self.shards), dict(self.manifest.get("langs", {})), Changes(seq=live["wal_seq"]))
        self._view = self._next_view(empty, replay(records, live["wal_seq"], self.in_base))
        self.translate = self._translate_test(translator) if translate else None  # before the model: fail fast
        self.encoder = None  # `load_model=False`: deleting documents needs no model
        if encoder is None and load_model:
            from xretrieve.model import BiEncoder

            encoder = BiEncoder(model or self._model_location(), device=device)
        if encoder is not None:
            from xretrieve.model import check_compatible

            check_compatible(self.manifest["model"], encoder, str(self.folder))
            self.encoder = encoder

    def frozen(self) -> Searcher:
        """This searcher as it is now: later writes to this one do not reach the copy (they replace its view)."""
        return copy.copy(self)

    @property
    def base_shards(self) -> tuple[IndexShard, ...]:
        """The base generation's shards, the rows that live changes removed marked deleted."""
        return self._view.shards[: len(self.shards)]

    @property
    def changes(self) -> Changes:
        """The changes since the base generation that searches see now."""
        return self._view.changes

    def in_base(self, docid: str) -> bool:
        """Whether the base shards hold `docid` (deleted or not)."""
        return docid in self._rows_of_base()

    def apply(self, record) -> None:
        """Make an acknowledged batch of changes visible to the searches that start from now on."""
        self._view = self._next_view(self._view, self._view.changes.apply(record, self.in_base))

    def _rows_of_base(self) -> dict[str, int]:
        if self._base_rows is None:
            self._base_rows = self.docs.rows if self.docs else {d: i for i, d in enumerate(self._base_ids)}
        return self._base_rows

    def _next_view(self, view: _View, changes: Changes) -> _View:
        """`view` with `changes` (a superset of its own) in place of its own."""
        if changes is view.changes:
            return view
        if not changes.added and not changes.removed:  # nothing logged since the base (nor in `view`)
            return _View(view.shards, view.langs, changes)
        base = self.shards
        offsets = np.cumsum([0] + [len(shard.docids) for shard in base])
        langs = dict(self.manifest.get("langs", {}))
        deleted: dict[int, list[int]] = {}
        for docid in changes.removed:
            row = self._rows_of_base()[docid]
            i = int(np.searchsorted(offsets, row, side="right")) - 1
            deleted.setdefault(i, []).append(row - int(offsets[i]))
            lang = base[i].langs[row - offsets[i]]
            langs[lang] -= 1
        shards = list(view.shards[: len(base)])
        for i, rows in deleted.items():
            if len(rows) != (0 if shards[i].deleted is None else int(shards[i].deleted.sum())):
                mask = np.zeros(len(base[i].docids), bool)
                mask[rows] = True
                shards[i] = base[i].with_deleted(mask)
        added = list(changes.added.values())
        if added:
            vectors = np.stack([entry.vector for entry in added])
            shards.append(IndexShard.of_vectors(vectors, [e.doc.id for e in added], [e.doc.lang for e in added]))
        for entry in added:
            langs[entry.doc.lang] = langs.get(entry.doc.lang, 0) + 1
        return _View(tuple(shards), {lang: n for lang, n in sorted(langs.items()) if n > 0}, changes)

    def _model_location(self) -> str:
        """The model the index names; a model that `adapt` trained into the index folder travels with it."""
        inside = ((self.manifest.get("adapt") or {}).get("artifacts") or {}).get("model")
        if inside and (self.folder / inside).is_dir():
            return str(self.folder / inside)
        return self.manifest["model"]["name"]

    def _translate_test(self, translator):
        """The query translation the index records (`index --translate`), or None."""
        settings = self.manifest.get("translate")
        if not settings:
            return None
        from xretrieve.translate import TranslateTest, apertium_available, check_translate_settings

        check_translate_settings(settings)
        if translator is None and not apertium_available():
            raise UserError(
                f"{self.folder}: this index searches with queries translated by Apertium, which is not installed "
                "here (apt-get install apertium apertium-eng-spa ...); pass --no-translate to search without"
            )
        return TranslateTest(settings, dict(self.langs), translator=translator)

    def query_vectors(
        self,
        texts: list[str],
        query_langs: list[str | None] | None = None,
        langs: list[str] | None = None,
        batch_size: int = 32,
    ) -> np.ndarray:
        """The vectors to search with: each query encoded, and combined with its translations when the index
        records translate-test (`query_langs` name the queries' languages; None or "" are guessed)."""
        if self.translate is None:
            return self.encoder.encode_queries(list(texts), batch_size=batch_size)
        return self.translate.query_vectors(self.encoder, list(texts), query_langs, langs, batch_size=batch_size)

    def close(self) -> None:
        if self.translate is not None:
            self.translate.close()

    def document(self, docid: str) -> dict | None:
        """{"id", "title", "text", "lang"} of a document, None if unknown or the index has no texts."""
        changes = self._view.changes
        entry = changes.added.get(docid)
        if entry is not None:
            doc = entry.doc
            return {"id": doc.id, "title": doc.title, "text": doc.text, "lang": doc.lang}
        if docid in changes.removed or self.docs is None:
            return None
        return self.docs.get(docid)

    def exists(self, docid: str) -> bool:
        return self._view.changes.exists(docid, self.in_base)

    @property
    def langs(self) -> dict[str, int]:
        """Documents per language, the live changes included."""
        return self._view.langs

    @property
    def rows(self) -> int:
        """Documents the index holds now."""
        return sum(self._view.langs.values())

    def search(
        self,
        queries: list[str],
        k: int = 10,
        langs: list[str] | None = None,
        batch_size: int = 32,
        query_langs: list[str | None] | None = None,
    ) -> list[list[Hit]]:
        self._check_langs(langs)
        vectors = self.query_vectors(list(queries), query_langs, langs, batch_size=batch_size)
        return self.search_vectors(vectors, k=k, langs=langs)

    def search_vectors(self, vectors: np.ndarray, k: int = 10, langs: list[str] | None = None) -> list[list[Hit]]:
        """Top-k over all shards: each shard's top-k, merged by (-score, docid)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        wanted = self._check_langs(langs)
        return merge_hits(self.shard_hits(vectors, k, wanted), len(vectors), k)

    def shard_hits(self, vectors: np.ndarray, k: int, langs: frozenset[str] | None) -> list[list[list[Hit]]]:
        """Every shard's candidates (`IndexShard.hits`), one shard after another (the base shards with their
        deletions, then the documents added since); a subclass whose shards are remote asks them all at once."""
        return [shard.hits(vectors, k, langs) for shard in self._view.shards]

    def _check_langs(self, langs: list[str] | None) -> frozenset[str] | None:
        if not langs:
            return None
        unknown = sorted(set(langs) - set(self.langs))
        if unknown:
            have = ", ".join(f"{lang or '(none)'}" for lang in self.langs) or "no language labels"
            raise UserError(f"lang: no documents in {', '.join(unknown)} in this index (it has: {have})")
        return frozenset(langs)


def run_search(config: SearchConfig, encoder=None) -> Path:
    """Search a queries file and write a TREC run plus its provenance (`RUN.json`)."""
    from tqdm import tqdm

    queries = read_queries(config.queries)
    check_writable_file(config.out)
    searcher = Searcher(
        config.index,
        model=config.model,
        encoder=encoder,
        device=config.device,
        search_params=config.search_params,
        translate=config.translate,
    )
    texts = [q.text for q in queries]
    query_langs = [q.lang or None for q in queries]
    searcher._check_langs(config.langs)  # an unknown language fails before the queries are encoded
    # encoding is most of the time: a bar over it (queries/s); the search runs once, on all vectors together
    vectors = np.empty((len(texts), searcher.encoder.dim), np.float32)
    try:
        with tqdm(total=len(texts), desc="search: encode queries", unit="query", disable=not config.progress) as bar:
            for start in range(0, len(texts), config.batch_size):
                end = start + config.batch_size
                vectors[start:end] = searcher.query_vectors(
                    texts[start:end], query_langs[start:end], config.langs, batch_size=config.batch_size
                )
                bar.update(len(texts[start:end]))
    finally:
        searcher.close()
    results = searcher.search_vectors(vectors, k=config.k, langs=config.langs)
    write_run(
        config.out,
        ((q.id, [(h.docid, h.score) for h in hits]) for q, hits in zip(queries, results, strict=True)),
        config.tag,
        config.index,
        config.queries,
        model=searcher.encoder.identity,
        k=config.k,
        langs=config.langs,
        search_params=searcher.search_params,
        translate=searcher.translate.stats if searcher.translate else None,
    )
    return Path(config.out)
