"""`xretrieve compact`: fold a live index's logged changes into a new generation of base shards.

The new generation is written beside the old one (OUT/gen-NNNNNN/: shards, document store), shard by shard
with a record each, so a killed run resumes where it stopped; the manifest is switched to it in one atomic
rename, and until then every reader keeps reading the old generation. The generation before the old one is
removed after the switch (the old one stays: a reader may be loading it right now).

Each shard keeps its trained index (IVF lists, PQ codebooks) and re-adds its rows: its own minus the deleted
ones (reconstructed from their stored codes), plus its share of the added documents, which go to the
smallest shards first. So an IVF index adds to its trained lists, as FAISS does for any add.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from xretrieve.config import CompactConfig
from xretrieve.errors import UserError
from xretrieve.formats import write_lines
from xretrieve.index import INDEX_KIND
from xretrieve.live import WriterLock, generation_folder, live_settings, wal_path
from xretrieve.manifest import (
    atomic_open,
    atomic_target,
    checksums,
    load_record,
    manifest_body,
    shard_entries,
    shard_name,
    write_manifest,
    write_shard_record,
)

_ADD_CHUNK = 65536


def index_info(folder: str | Path) -> dict:
    """The generation and pending changes of an index (what `compact --info` prints)."""
    from xretrieve.search import Searcher
    from xretrieve.update import is_augmented

    searcher = Searcher(folder, translate=False, load_model=False, verify=False)
    return {
        "index": str(folder),
        "generation": searcher.generation,
        "documents": searcher.rows,
        "pending": searcher.changes.summary(is_augmented(searcher.manifest)),
    }


def compact(config: CompactConfig) -> int | None:
    """Fold the pending changes into a new generation; returns its number, or None when nothing was pending."""
    from xretrieve.search import Searcher

    with WriterLock(config.index, "xretrieve compact"):
        searcher = Searcher(config.index, translate=False, load_model=False)
        changes = searcher.changes
        if not changes.added and not changes.removed:
            return None
        return _fold(searcher, config.progress)


def _fold(searcher, progress: bool) -> int:
    from tqdm import tqdm

    folder, generation = searcher.folder, searcher.generation + 1
    target = folder / generation_folder(generation)
    changes = searcher.changes
    plan = {"from_generation": searcher.generation, "wal_seq": changes.seq, "log_bytes": searcher.log_end}
    _clear_other_attempts(target, plan)
    target.mkdir(parents=True, exist_ok=True)
    shares = _shares(searcher)
    records = []
    for i, shard in enumerate(tqdm(searcher.base_shards, desc="compact", disable=not progress)):
        record = load_record(target / f"{shard_name(i)}.json", plan)
        records.append(record or _write_shard(target, i, shard, shares[i], plan))
    body = manifest_body(searcher.manifest)
    body["shards"] = shard_entries(records)
    body["rows"] = sum(r["rows"] for r in records)
    body["langs"] = dict(sorted(searcher.langs.items()))
    if searcher.docs is not None:
        body["docs"] = {"files": _write_docstore(target, records, searcher)}
    previous = live_settings(searcher.manifest)
    body["live"] = {"generation": generation, "wal_seq": changes.seq, "previous": _files_of(searcher)}
    write_manifest(folder, INDEX_KIND, body)  # the switch: readers from now on load the new generation
    _remove(folder, previous.get("previous") or [])
    return generation


def _clear_other_attempts(target: Path, plan: dict) -> None:
    """A half-written generation of other changes (writes came after a killed compact) is started afresh."""
    for path in target.glob("shard-*.json") if target.is_dir() else []:
        try:
            same = json.loads(path.read_text(encoding="utf-8")).get("plan") == plan
        except (json.JSONDecodeError, UnicodeDecodeError):
            same = False
        if not same:
            shutil.rmtree(target)
            return


def _shares(searcher) -> list[list]:
    """The added documents each shard takes: the next one always goes to the shard with fewest rows."""
    base = searcher.base_shards
    sizes = [len(s.docids) - (0 if s.deleted is None else int(s.deleted.sum())) for s in base]
    shares: list[list] = [[] for _ in base]
    for entry in searcher.changes.added.values():
        i = int(np.argmin(sizes))
        shares[i].append(entry)
        sizes[i] += 1
    return shares


def _write_shard(target: Path, i: int, shard, added: list, plan: dict) -> dict:
    import faiss

    keep = np.ones(len(shard.docids), bool) if shard.deleted is None else ~shard.deleted
    fresh = faiss.clone_index(shard.index)  # trained (IVF lists, codebooks), before the direct map below
    fresh.reset()
    vectors = _reconstruct(shard.index)[keep]
    if added:
        vectors = np.concatenate([vectors, np.stack([entry.vector for entry in added])])
    for start in range(0, len(vectors), _ADD_CHUNK):
        fresh.add(np.ascontiguousarray(vectors[start : start + _ADD_CHUNK], dtype=np.float32))
    name = shard_name(i)
    with atomic_target(target / f"{name}.faiss") as tmp:
        faiss.write_index(fresh, tmp)
    docids = [d for d, k in zip(shard.docids, keep, strict=True) if k] + [e.doc.id for e in added]
    langs = [str(x) for x, k in zip(shard.langs, keep, strict=True) if k] + [e.doc.lang for e in added]
    write_lines(target / f"{name}.docids.txt", docids)
    write_lines(target / f"{name}.langs.txt", langs)
    files = checksums(target, [f"{name}{suffix}" for suffix in (".faiss", ".docids.txt", ".langs.txt")])
    return write_shard_record(target, i, {"plan": plan, "rows": len(docids), "files": files})


def _reconstruct(index) -> np.ndarray:
    """Every row's vector as the index stores it (exact for Flat, decoded for quantized codes)."""
    import faiss

    if index.ntotal == 0:
        return np.zeros((0, index.d), np.float32)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.make_direct_map()
    try:
        return index.reconstruct_n(0, index.ntotal)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise UserError(f"compact: this index type cannot give back its vectors ({reason}); rebuild it") from None


def _write_docstore(target: Path, records: list[dict], searcher) -> dict[str, str]:
    """The document store of the new generation, in its shards' row order."""
    from xretrieve.docstore import DOCS_FILE, OFFSETS_FILE

    offsets = []
    with atomic_open(target / DOCS_FILE, "wb") as f:
        for i in range(len(records)):
            for docid in (target / f"{shard_name(i)}.docids.txt").read_text(encoding="utf-8").splitlines():
                offsets.append(f.tell())
                doc = searcher.document(docid)
                f.write((json.dumps(doc, ensure_ascii=False) + "\n").encode("utf-8"))
    with atomic_open(target / OFFSETS_FILE, "wb") as f:
        np.save(f, np.asarray(offsets, dtype=np.int64))
    return checksums(target, (DOCS_FILE, OFFSETS_FILE))


def _files_of(searcher) -> list[str]:
    """The files of the searcher's generation (relative to the index folder), to remove one compact later."""
    folder, manifest = searcher.folder, searcher.manifest
    log = str(wal_path(folder, searcher.generation).relative_to(folder))
    if searcher.generation:
        return [generation_folder(searcher.generation), log]
    names = [name for entry in manifest["shards"] for name in entry["files"]]
    names += [f"{entry['name']}.json" for entry in manifest["shards"]]
    names += list((manifest.get("docs") or {}).get("files", {}))
    return [*names, log]


def _remove(folder: Path, names: list[str]) -> None:
    for name in names:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
