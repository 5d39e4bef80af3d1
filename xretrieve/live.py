"""Live indexes: documents added, replaced and deleted after the build, kept in a write-ahead log.

An index folder holds one generation of base shards (the build's, or the last `compact`'s) and, beside it,
`live/wal-GGGGGG.log`: the batches of changes made since, each one frame

    b"XRWL" | payload bytes (uint32) | crc32 of the payload (uint32) | payload
    payload = header bytes (uint32) | header (JSON: seq, op, docs or ids, ...) | float32 vectors (rows x dim)

appended with one write and fsync'd before the write is acknowledged. A crash mid-append leaves a short or
unchecked last frame: readers ignore it and the next writer cuts it off, so a batch is applied whole or not at
all. Readers replay the log over the base at load (`Changes`); the one writer, holding `live/writer.lock`,
appends to it. Upserted documents carry their vectors (encoded once, by the index's own model), so a replay
needs no model work and gives exactly what was acknowledged.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from xretrieve.errors import UserError
from xretrieve.formats import Document
from xretrieve.manifest import MANIFEST_NAME, fsync_dir

LIVE_DIR = "live"
LOCK_NAME = "writer.lock"
_MAGIC = b"XRWL"
_FRAME = struct.Struct("<4sII")  # magic, payload bytes, crc32
_HEADER = struct.Struct("<I")


def live_settings(manifest: dict) -> dict:
    """The manifest's `live` entry: the generation its base shards are, and the last log seq folded into them."""
    return manifest.get("live") or {"generation": 0, "wal_seq": 0}


def has_changes(folder: str | Path, manifest: dict) -> bool:
    """Whether the index in `folder` was changed since its build (a compacted generation, or a log)."""
    log = wal_path(folder, live_settings(manifest)["generation"])
    return bool(manifest.get("live")) or (log.is_file() and log.stat().st_size > 0)


def check_no_pending(folder: str | Path, manifest: dict, what: str) -> None:
    """Refuse `what` for an index with logged changes not yet compacted (it reads the base shards only)."""
    since = live_settings(manifest)
    records, _ = read_log(wal_path(folder, since["generation"]))
    pending = sum(1 for record in records if record.seq > since["wal_seq"])
    if pending:
        raise UserError(
            f"{folder}: {pending} batches of changes (xretrieve add/delete) are not compacted yet, and {what} "
            f"reads the base shards only: run xretrieve compact --index {folder} first"
        )


def wal_path(folder: str | Path, generation: int) -> Path:
    return Path(folder) / LIVE_DIR / f"wal-{generation:06d}.log"


def generation_folder(generation: int) -> str:
    """Where a compacted generation keeps its shards and document store (generation 0 is the build's, at the top)."""
    return f"gen-{generation:06d}" if generation else ""


# --- the write-ahead log -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One acknowledged batch: an upsert of documents (with their vectors) or a delete of ids."""

    seq: int
    op: str  # "upsert" or "delete"
    docs: tuple[Document, ...] = ()
    vectors: np.ndarray | None = None
    augmented: tuple[bool, ...] = ()
    ids: tuple[str, ...] = ()

    def frame(self) -> bytes:
        header = {"seq": self.seq, "op": self.op}
        if self.op == "upsert":
            header["docs"] = [{"id": d.id, "title": d.title, "text": d.text, "lang": d.lang} for d in self.docs]
            header["augmented"] = list(self.augmented)
            header["dim"] = int(self.vectors.shape[1])
        else:
            header["ids"] = list(self.ids)
        head = json.dumps(header, ensure_ascii=False).encode("utf-8")
        vectors = b"" if self.vectors is None else np.ascontiguousarray(self.vectors, dtype="<f4").tobytes()
        payload = _HEADER.pack(len(head)) + head + vectors
        return _FRAME.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload

    @classmethod
    def parse(cls, payload: bytes) -> Record:
        (size,) = _HEADER.unpack_from(payload)
        header = json.loads(payload[_HEADER.size : _HEADER.size + size].decode("utf-8"))
        if header["op"] == "delete":
            return cls(seq=header["seq"], op="delete", ids=tuple(header["ids"]))
        docs = tuple(Document(d["id"], d["text"], d.get("title", ""), d.get("lang", "")) for d in header["docs"])
        vectors = np.frombuffer(payload, dtype="<f4", offset=_HEADER.size + size).reshape(len(docs), header["dim"])
        return cls(header["seq"], "upsert", docs, vectors.astype(np.float32), tuple(header["augmented"]))


def read_log(path: Path) -> tuple[list[Record], int]:
    """The log's complete records and the byte length they end at. A short or unchecked last frame (a crash
    mid-append: never acknowledged) is left out; a damaged frame with more after it is an error."""
    if not path.is_file():
        return [], 0
    data = path.read_bytes()
    records, at = [], 0
    while at < len(data):
        end = _frame_end(data, at, path)
        if end is None:
            break
        try:
            records.append(Record.parse(data[at + _FRAME.size : end]))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError):
            raise UserError(f"{path}: record at byte {at} is not a valid change record") from None
        at = end
    return records, at


def _frame_end(data: bytes, at: int, path: Path) -> int | None:
    """Where the frame at `at` ends, or None when it is the torn last one."""
    if len(data) - at < _FRAME.size:
        return None
    magic, size, crc = _FRAME.unpack_from(data, at)
    end = at + _FRAME.size + size
    if magic == _MAGIC and end <= len(data) and zlib.crc32(data[at + _FRAME.size : end]) == crc:
        return end
    if magic == _MAGIC and end >= len(data):
        return None  # cut short, or its last write never reached the disk
    raise UserError(f"{path}: damaged record at byte {at} with more records after it; restore the index from a backup")


class LogWriter:
    """Appends records to a log, each durable (written and fsync'd) before `append` returns."""

    def __init__(self, path: Path, end: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if os.fstat(self.fd).st_size > end:  # the torn frame of a crash: never acknowledged
            os.ftruncate(self.fd, end)
            os.fsync(self.fd)
        self.end = end
        if created:
            fsync_dir(path.parent)

    def append(self, record: Record) -> None:
        frame = record.frame()
        try:
            written = os.pwrite(self.fd, frame, self.end)
            if written != len(frame):
                raise OSError(28, "short write; is the disk full?")
            os.fsync(self.fd)
        except OSError as exc:
            os.ftruncate(self.fd, self.end)  # never leave half a record for the next one to follow
            raise OSError(exc.errno, f"cannot write ({exc.strerror or exc})", str(self.path)) from None
        self.end += len(frame)

    def close(self) -> None:
        os.close(self.fd)


class WriterLock:
    """The one writer of an index folder (`add`, `delete`, `compact` or `serve --writable`): an exclusive
    flock, which the kernel releases when its process dies, even by kill -9."""

    def __init__(self, folder: str | Path, who: str):
        if not (Path(folder) / MANIFEST_NAME).is_file():
            raise UserError(f"{folder}: no {MANIFEST_NAME}; not an index folder (build one with xretrieve index)")
        path = Path(folder) / LIVE_DIR / LOCK_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(self.fd)
            raise UserError(
                f"{folder}: another writer is changing this index ({holder}); one writer at a time: "
                "wait for it to finish or stop it"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()}, {who}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# --- what the log changes in the base ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """An upserted document not yet folded into the base shards."""

    doc: Document
    vector: np.ndarray
    augmented: bool


@dataclass(frozen=True)
class Changes:
    """The net effect of the log on the base: documents added or replaced since it (`added`, by id, in the
    order they came) and base documents gone (`removed`: deleted or replaced). Immutable: applying a record
    gives new Changes, so a search holding the old ones sees a batch whole or not at all."""

    seq: int = 0
    added: Mapping[str, Entry] = field(default_factory=lambda: MappingProxyType({}))
    removed: frozenset[str] = frozenset()

    def exists(self, docid: str, in_base: Callable[[str], bool]) -> bool:
        return docid in self.added or (in_base(docid) and docid not in self.removed)

    def apply(self, record: Record, in_base: Callable[[str], bool]) -> Changes:
        added, removed = dict(self.added), set(self.removed)
        if record.op == "upsert":
            for doc, vector, augmented in zip(record.docs, record.vectors, record.augmented, strict=True):
                added.pop(doc.id, None)  # a replaced document moves to the end, as a fresh add would
                added[doc.id] = Entry(doc, vector, augmented)
                if in_base(doc.id):
                    removed.add(doc.id)
        else:
            for docid in record.ids:
                added.pop(docid, None)
                if in_base(docid):
                    removed.add(docid)
        return Changes(record.seq, MappingProxyType(added), frozenset(removed))

    def summary(self, augmented_index: bool) -> dict:
        """What /v1/info and `compact --info` report."""
        pending = {"upserted": len(self.added), "removed_from_base": len(self.removed), "last_seq": self.seq}
        if augmented_index:
            pending["unaugmented"] = sum(1 for entry in self.added.values() if not entry.augmented)
        return pending


def replay(records: Iterable[Record], since: int, in_base: Callable[[str], bool]) -> Changes:
    """The Changes of the records after seq `since` (those before are folded into the base already)."""
    changes = Changes(seq=since)
    for record in records:
        if record.seq > since:
            changes = changes.apply(record, in_base)
    return changes
