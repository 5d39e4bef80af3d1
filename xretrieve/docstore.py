"""An index's document store: title, text and language by document id.

`docs.jsonl` holds the corpus rows in canonical order (the order of the index's shards, one after the
other) and `docs.offsets.npy` the byte offset of each row, so a lookup is one slice and one line.
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from xretrieve.errors import UserError
from xretrieve.formats import iter_corpus
from xretrieve.manifest import atomic_open, check_digest, checksums

DOCS_FILE = "docs.jsonl"
OFFSETS_FILE = "docs.offsets.npy"


def write_docstore(corpus: str | Path, out: Path) -> dict[str, str]:
    """Copy the corpus into `out`'s document store; returns {file name: sha256}."""
    rows = ({"id": doc.id, "title": doc.title, "text": doc.text, "lang": doc.lang} for doc in iter_corpus(corpus))
    return write_rows(rows, out)


def write_rows(rows: Iterable[dict], out: Path) -> dict[str, str]:
    """A document store in `out` of `rows` ({"id", "title", "text", "lang"}), in index order; returns
    {file name: sha256}."""
    offsets = []
    with atomic_open(out / DOCS_FILE, "wb") as f:
        for row in rows:
            offsets.append(f.tell())
            f.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
    with atomic_open(out / OFFSETS_FILE, "wb") as f:
        np.save(f, np.asarray(offsets, dtype=np.int64))
    return checksums(out, (DOCS_FILE, OFFSETS_FILE))


class DocStore:
    """Documents by id. With `files` ({file name: sha256}, from the manifest) both files are read into
    memory and checked against it, so what is served is what was verified even if the files change on disk
    later (a long-running server); without, the text is memory-mapped and read on demand."""

    def __init__(self, folder: str | Path, docids: list[str], files: dict[str, str] | None = None):
        self.folder = Path(folder)
        self.offsets = _offsets(self.folder / OFFSETS_FILE, _read(self.folder / OFFSETS_FILE, files), len(docids))
        text = self.folder / DOCS_FILE
        self._text = _read(text, files) if files is not None else _map(text)
        if len(self.offsets) and self.offsets[-1] >= len(self._text):
            raise UserError(f"{text}: shorter than its offsets say ({len(self._text)} bytes)")
        self.rows = {docid: row for row, docid in enumerate(docids)}

    def get(self, docid: str) -> dict | None:
        row = self.rows.get(docid)
        if row is None:
            return None
        end = int(self.offsets[row + 1]) if row + 1 < len(self.offsets) else len(self._text)
        try:
            doc = json.loads(self._text[int(self.offsets[row]) : end])
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{self.folder / DOCS_FILE}: row {row} is not a JSON document") from None
        if not isinstance(doc, dict) or doc.get("id") != docid:
            raise UserError(f"document store out of step with the index at row {row} (expected {docid!r})")
        return doc

    def close(self) -> None:
        if isinstance(self._text, mmap.mmap):
            self._text.close()


def _read(path: Path, files: dict[str, str] | None) -> bytes:
    """The file's bytes, checked against `files` when given (the check and the use see the same bytes)."""
    data = path.read_bytes()
    if files is not None:
        if path.name not in files:
            raise UserError(f"{path}: not listed with a checksum in the manifest")
        check_digest(path, hashlib.sha256(data).hexdigest(), files[path.name])
    return data


def _map(path: Path) -> mmap.mmap | bytes:
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            return b""  # mmap refuses empty files
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _offsets(path: Path, data: bytes, rows: int) -> np.ndarray:
    """Row offsets: a plain integer array (never unpickled), one per row, rising from 0."""
    try:
        offsets = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"{path}: not a plain .npy array of offsets ({exc})") from None
    if offsets.ndim != 1 or offsets.dtype.kind not in "iu":
        raise UserError(f"{path}: expected a 1-d integer array, found {offsets.dtype} of shape {offsets.shape}")
    if len(offsets) != rows:
        raise UserError(f"{path.parent}: document store has {len(offsets)} rows, the index {rows}")
    if len(offsets) and (offsets[0] != 0 or np.any(np.diff(offsets) <= 0)):
        raise UserError(f"{path}: offsets must start at 0 and rise row by row")
    return offsets.astype(np.int64, copy=False)
