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
from xretrieve.formats import read_lines
from xretrieve.index import INDEX_KIND
from xretrieve.index_shard import add_vectors, save_shard
from xretrieve.live import WriterLock, generation_folder, live_settings, read_log, wal_path
from xretrieve.manifest import (
    FORMAT_VERSION,
    atomic_open,
    load_record,
    manifest_body,
    shard_entries,
    shard_name,
    write_manifest,
)


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
        if not pending(searcher):
            return None
        body = build_generation(searcher, config.progress)
        switch_generation(searcher, body)
        return body["live"]["generation"]


def compact_live(writer, open_generation, on_switch) -> int | None:
    """Compact the index a LiveWriter serves while it goes on taking writes. The new generation is built from
    the changes logged so far and opened (`open_generation(manifest)`: a Searcher of it) with writes going on;
    then, with writes held for a moment, the batches logged meanwhile are carried into the new generation's
    log, the manifest is switched, and `on_switch(searcher)` swaps the new searcher in. Returns the new
    generation's number, or None when nothing was pending."""
    frozen = writer.searcher.frozen()  # the changes logged so far, fixed; the writer's searcher moves on
    if not pending(frozen):
        return None
    body = build_generation(frozen, progress=False)
    fresh = open_generation({"format": INDEX_KIND, "format_version": FORMAT_VERSION, **body})
    with writer.held():
        records, _ = read_log(wal_path(frozen.folder, frozen.generation))
        tail = [record for record in records if record.seq > frozen.changes.seq]
        fresh.log_end = switch_generation(frozen, body, tail)
        for record in tail:
            fresh.apply(record)
        writer.rebind(fresh)
        on_switch(fresh)
    return body["live"]["generation"]


def pending(searcher) -> bool:
    return bool(searcher.changes.added or searcher.changes.removed)


def build_generation(searcher, progress: bool) -> dict:
    """Write the next generation's files from `searcher` (its base and changes, which must not move meanwhile);
    returns its manifest body. Shards already written by a killed run of the same changes are kept."""
    from tqdm import tqdm

    folder, generation = searcher.folder, searcher.generation + 1
    target = folder / generation_folder(generation)
    changes = searcher.changes
    # the log's seq names the changes folded in: a record is applied only once it is logged whole
    plan = {"from_generation": searcher.generation, "wal_seq": changes.seq}
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
    body["live"] = {"generation": generation, "wal_seq": changes.seq, "previous": _files_of(searcher)}
    return body


def switch_generation(searcher, body: dict, tail: list = ()) -> int:
    """Make `body` the index's manifest: the atomic switch, after which readers load the new generation. The
    batches in `tail` (logged after those it folds) go into the new generation's log first. The generation
    before `searcher`'s is removed (the searcher's own stays: a reader may be loading it). Returns the size
    of the new log."""
    folder = searcher.folder
    log = wal_path(folder, body["live"]["generation"])
    with atomic_open(log, "wb") as f:
        for record in tail:
            f.write(record.frame())
    write_manifest(folder, INDEX_KIND, body)
    _remove(folder, live_settings(searcher.manifest).get("previous") or [])
    return log.stat().st_size


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
    add_vectors(fresh, vectors)
    docids = [d for d, k in zip(shard.docids, keep, strict=True) if k] + [e.doc.id for e in added]
    langs = [str(x) for x, k in zip(shard.langs, keep, strict=True) if k] + [e.doc.lang for e in added]
    return save_shard(target, i, fresh, docids, langs, plan)


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
    from xretrieve.docstore import write_rows

    docids = (d for i in range(len(records)) for d in read_lines(target / f"{shard_name(i)}.docids.txt"))
    return write_rows((searcher.document(docid) for docid in docids), target)


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
