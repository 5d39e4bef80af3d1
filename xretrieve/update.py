"""`xretrieve add` and `delete`, and the writer `serve --writable` uses: changes to a built index, logged
durably before they are acknowledged (xretrieve/live.py) and visible to its searches at once."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np

from xretrieve.config import AddConfig, DeleteConfig
from xretrieve.errors import UserError
from xretrieve.formats import Document, passage_text, read_corpus
from xretrieve.live import LogWriter, Record, WriterLock, wal_path


def check_batch(docs: list[Document]) -> None:
    """A batch of upserts names each id once: which of two would win is not the user's to guess."""
    seen: set[str] = set()
    for doc in docs:
        if doc.id in seen:
            raise UserError(f"documents: id {doc.id!r} appears twice in one batch")
        seen.add(doc.id)


def augment_recipe(manifest: dict) -> dict | None:
    """How the index's own passages were augmented (xQG), when new ones can be treated the same way here: an
    `adapt` index whose queries came from Apertium. None for other indexes."""
    adapt = manifest.get("adapt") or {}
    if adapt.get("backend") != {"mt": "apertium"}:
        return None
    # adapt's stages: one translation per passage and language, folded in with `augment --mode mean`
    return {"langs": adapt["langs"], "alpha": adapt["alpha"], "mode": "mean", "renormalize": False, "max_words": 32}


def is_augmented(manifest: dict) -> bool:
    """Whether the index's passages carry folded-in queries (`adapt`, or built from `augment`'s embeddings)."""
    return bool(manifest.get("adapt") or manifest.get("augment"))


class LiveWriter:
    """The one writer of a loaded index (the caller holds its WriterLock): encodes upserted documents with the
    index's model (and its augmentation recipe where it can), logs each batch durably, then applies it to the
    searcher. Batches are applied in the order they are logged."""

    def __init__(self, searcher, lock: WriterLock, batch_size: int = 32):
        self.searcher, self.lock, self.batch_size = searcher, lock, batch_size
        self.log = LogWriter(wal_path(searcher.folder, searcher.generation), searcher.log_end)
        manifest = searcher.manifest
        self.augmented_index = is_augmented(manifest)
        self.recipe = augment_recipe(manifest)
        if self.recipe is not None and searcher.encoder is not None:
            from xretrieve.translate import apertium_available

            if not apertium_available():
                print(
                    "xretrieve: Apertium is not installed here: new documents are added without the index's "
                    "query augmentation (counted as unaugmented; install it to augment them)",
                    file=sys.stderr,
                )
                self.recipe = None
        self._generator = None
        self.dtype = np.dtype((manifest.get("build") or {}).get("dtype", "float32"))
        self._order = threading.Lock()  # log order = apply order

    def upsert(self, docs: list[Document]) -> Record:
        """Add or replace `docs` (ids unique within the batch) as one batch; returns its record once durable."""
        check_batch(docs)
        return self.commit(docs, *self.vectors(docs))

    def commit(self, docs: list[Document], vectors: np.ndarray, augmented: list[bool]) -> Record:
        """Log the encoded batch durably, then make it visible to searches; returns its record."""
        check_batch(docs)
        with self._order:
            return self._log(op="upsert", docs=tuple(docs), vectors=vectors, augmented=tuple(augmented))

    def delete(self, ids: list[str]) -> list[str]:
        """Delete the ids the index holds, as one batch; returns those (the others were not there)."""
        with self._order:
            present = [docid for docid in dict.fromkeys(ids) if self.searcher.exists(docid)]
            if present:
                self._log(op="delete", ids=tuple(present))
        return present

    def _log(self, **change) -> Record:
        """The next change, logged durably and then applied (with `_order` held)."""
        record = Record(self.searcher.changes.seq + 1, **change)
        self.log.append(record)
        self.searcher.apply(record)
        return record

    def vectors(self, docs: list[Document]) -> tuple[np.ndarray, list[bool]]:
        """The documents' vectors as a fresh build of the index would store them, and whether each went
        through the index's augmentation (always, for an index without one)."""
        encoder = self.searcher.encoder
        if encoder is None:
            raise ValueError("upserts need the searcher's model loaded")
        vectors = encoder.encode_passages([passage_text(doc) for doc in docs], batch_size=self.batch_size)
        vectors = vectors.astype(self.dtype).astype(np.float32)  # as stored in the build's embeddings
        if self.recipe is not None:
            vectors = self._augment(docs, vectors).astype(self.dtype).astype(np.float32)
        return vectors, [self.recipe is not None or not self.augmented_index] * len(docs)

    def _augment(self, docs: list[Document], vectors: np.ndarray) -> np.ndarray:
        """The recipe of `adapt`: each document's lead text translated into each language, encoded as
        queries and folded in (`augment --mode mean`). Documents no pair reaches keep their vectors."""
        from xretrieve.xqg.augment import fuse
        from xretrieve.xqg.backends.apertium import TranslationGenerator

        if self._generator is None:
            self._generator = TranslationGenerator(max_words=self.recipe["max_words"])
        texts, rows = [], []
        for lang in self.recipe["langs"]:
            for row, (_, queries) in enumerate(self._generator.generate(docs, lang, 1, 0)):
                texts += queries
                rows += [row] * len(queries)
        sums = np.zeros_like(vectors)
        totals = np.zeros(len(docs))
        if texts:
            np.add.at(sums, np.asarray(rows), self.searcher.encoder.encode_queries(texts, batch_size=self.batch_size))
            np.add.at(totals, np.asarray(rows), 1.0)
        recipe = self.recipe
        return fuse(vectors, sums, totals, recipe["alpha"], recipe["mode"], recipe["renormalize"])

    def held(self):
        """Writes wait while this is held (compaction switching generations)."""
        return self._order

    def rebind(self, searcher) -> None:
        """Write to `searcher`'s generation from now on (called with `held()`, after a compaction)."""
        self.log.close()
        self.searcher = searcher
        self.log = LogWriter(wal_path(searcher.folder, searcher.generation), searcher.log_end)

    def close(self) -> None:
        self.log.close()
        if self._generator is not None:
            self._generator.engine.close()


def add_documents(config: AddConfig) -> tuple[int, int]:
    """Upsert the corpus file's documents into the index; returns (new, replaced)."""
    from tqdm import tqdm

    from xretrieve.search import Searcher

    docs = read_corpus(config.corpus)  # the whole file checked before the model loads
    new = replaced = 0
    with WriterLock(config.index, "xretrieve add") as lock:
        searcher = Searcher(config.index, model=config.model, device=config.device, translate=False)
        writer = LiveWriter(searcher, lock, batch_size=config.batch_size)
        try:
            with tqdm(total=len(docs), desc="add", unit="doc", disable=not config.progress) as bar:
                for start in range(0, len(docs), config.commit_every):
                    batch = docs[start : start + config.commit_every]
                    known = sum(1 for doc in batch if searcher.exists(doc.id))
                    writer.upsert(batch)
                    new, replaced = new + len(batch) - known, replaced + known
                    bar.update(len(batch))
        finally:
            writer.close()
    return new, replaced


def _ids_in(path: str | None) -> list[str]:
    """The ids of an --ids-file: one per line; blank lines are skipped."""
    if path is None:
        return []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return [line.strip() for line in lines if line.strip()]


def delete_documents(config: DeleteConfig) -> tuple[list[str], list[str]]:
    """Delete ids from the index; returns (deleted, not found)."""
    from xretrieve.search import Searcher

    ids = list(dict.fromkeys(config.ids or _ids_in(config.ids_file)))
    if not ids:
        raise UserError("delete: no ids given (--ids a,b,c or --ids-file FILE)")
    with WriterLock(config.index, "xretrieve delete") as lock:
        writer = LiveWriter(Searcher(config.index, translate=False, load_model=False), lock)
        try:
            present = writer.delete(ids)
        finally:
            writer.close()
    gone = set(present)
    return present, [docid for docid in ids if docid not in gone]
