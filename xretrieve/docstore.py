"""An index's document store: title, text and language by document id, read from disk on demand.

`docs.jsonl` holds the corpus rows in canonical order (the order of the index's shards, one after the
other) and `docs.offsets.npy` the byte offset of each row, so a lookup is one seek and one line.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from xretrieve.errors import UserError
from xretrieve.formats import iter_corpus
from xretrieve.manifest import atomic_open, checksums

DOCS_FILE = "docs.jsonl"
OFFSETS_FILE = "docs.offsets.npy"


def write_docstore(corpus: str | Path, out: Path) -> dict[str, str]:
    """Copy the corpus into `out`'s document store; returns {file name: sha256}."""
    offsets = []
    with atomic_open(out / DOCS_FILE, "wb") as f:
        for doc in iter_corpus(corpus):
            offsets.append(f.tell())
            row = {"id": doc.id, "title": doc.title, "text": doc.text, "lang": doc.lang}
            f.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
    with atomic_open(out / OFFSETS_FILE, "wb") as f:
        np.save(f, np.asarray(offsets, dtype=np.int64))
    return checksums(out, (DOCS_FILE, OFFSETS_FILE))


class DocStore:
    def __init__(self, folder: str | Path, docids: list[str]):
        folder = Path(folder)
        self.offsets = np.load(folder / OFFSETS_FILE, mmap_mode="r")
        if len(self.offsets) != len(docids):
            raise UserError(f"{folder}: document store has {len(self.offsets)} rows, the index {len(docids)}")
        self.rows = {docid: row for row, docid in enumerate(docids)}
        self._file = open(folder / DOCS_FILE, "rb")  # noqa: SIM115 (kept open for the store's lifetime)
        self._lock = threading.Lock()  # seek + readline must not interleave between threads

    def get(self, docid: str) -> dict | None:
        row = self.rows.get(docid)
        if row is None:
            return None
        with self._lock:
            self._file.seek(int(self.offsets[row]))
            line = self._file.readline()
        doc = json.loads(line)
        if doc["id"] != docid:
            raise UserError(f"document store out of step with the index at row {row} ({doc['id']!r} != {docid!r})")
        return doc

    def close(self) -> None:
        self._file.close()
