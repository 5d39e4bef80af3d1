"""Sharded, resumable corpus encoding: corpus -> shard-*.npy + ids + langs + manifest.json.

Within a shard, work is checkpointed every `checkpoint_every` passages (SHARD.chunks/), so an interrupted run
loses at most one chunk, whatever the number of shards."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from xretrieve.config import EncodeConfig
from xretrieve.errors import UserError
from xretrieve.formats import Document, passage_text, read_corpus, read_lines, write_lines
from xretrieve.manifest import (
    atomic_open,
    atomic_write_json,
    check_free_space,
    check_writable_folder,
    checksums,
    finished_records,
    load_record,
    load_shard_record,
    read_manifest,
    sha256_file,
    shard_entries,
    shard_name,
    verify_files,
    write_manifest,
    write_shard_record,
)

EMBEDDINGS_KIND = "embeddings"


def shard_bounds(rows: int, num_shards: int) -> list[tuple[int, int]]:
    """Contiguous slices of the canonical corpus order; shard i is rows [start, end)."""
    cuts = [i * rows // num_shards for i in range(num_shards + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def encode_texts(
    encoder, texts: list[str], batch_size: int, progress: bool = False, desc: str = "", bar=None, lengths=None
) -> np.ndarray:
    """Encode in batches of similar token length (less padding), rows returned in input order.

    Progress counts tokens read (a passage weighs its token count, up to the model's room), so the rate and
    ETA hold from the first batch although the longest passages go first; `bar` is a caller's such bar.
    """
    from tqdm import tqdm

    weights = token_weights(encoder, token_lengths(encoder, texts) if lengths is None else lengths)
    order = np.argsort(-weights, kind="stable")  # longest first: memory peaks show up at once
    out = np.empty((len(texts), encoder.dim), np.float32)
    own = bar is None
    if own:
        bar = _token_bar(tqdm, int(weights.sum()), desc, progress)
    try:
        for start in range(0, len(texts), batch_size):
            batch = order[start : start + batch_size]
            out[batch] = encoder.encode_passages([texts[i] for i in batch], batch_size=batch_size)
            bar.update(int(weights[batch].sum()))
    finally:
        if own:
            bar.close()
    return out


def _token_bar(tqdm, total: int, desc: str, progress: bool):
    return tqdm(total=total, desc=desc, unit="tok", unit_scale=True, disable=not progress)


def token_lengths(encoder, texts: list[str], block: int = 4096) -> np.ndarray:
    """Token counts, tokenized a block at a time: a tokenizer's ids for a whole shard could fill the memory."""
    parts = [encoder.token_lengths(texts[start : start + block]) for start in range(0, len(texts), block)]
    return np.asarray([n for part in parts for n in part], dtype=np.int64)


def token_weights(encoder, lengths: np.ndarray) -> np.ndarray:
    """Tokens the model reads of each passage: its length, cut at the model's room."""
    return np.minimum(lengths, encoder.passage_room)


class _Chunks:
    """Checkpoints inside one shard: every `size` passages, a chunk file and then its record, each written
    atomically into SHARD.chunks/. A rerun of the same plan reuses the chunks whose record and checksum
    verify; once all are there they are joined into the shard file and the folder is removed, so a finished
    embeddings folder looks the same however often its encoding was interrupted."""

    def __init__(self, out: Path, index: int, plan: dict, rows: int, size: int):
        self.folder = out / f"{shard_name(index)}.chunks"
        self.plan = plan
        self.bounds = [(start, min(start + size, rows)) for start in range(0, rows, size)]
        self.done = {i: record for i in range(len(self.bounds)) if (record := self._load(i)) is not None}

    def _load(self, i: int) -> dict | None:
        def same_cut(record: dict) -> bool:  # a chunk cut at another --checkpoint-every is encoded again
            return [record.get("start"), record.get("end")] == list(self.bounds[i])

        return load_record(self.folder / f"chunk-{i:05d}.json", self.plan, same_cut)

    @property
    def rows_done(self) -> int:
        return sum(end - start for i, (start, end) in enumerate(self.bounds) if i in self.done)

    def write(self, i: int, vectors: np.ndarray, dtype: str, truncated: int) -> None:
        name = f"chunk-{i:05d}.npy"
        with atomic_open(self.folder / name, "wb") as f:
            np.save(f, vectors.astype(dtype))
        start, end = self.bounds[i]
        record = {"plan": self.plan, "start": start, "end": end, "truncated": truncated}
        atomic_write_json(self.folder / f"chunk-{i:05d}.json", {**record, "files": checksums(self.folder, [name])})
        self.done[i] = record

    def join(self, path: Path, dtype: str, dim: int) -> None:
        """The shard file, byte for byte what np.save writes for the whole array, one chunk in memory at a time."""
        rows = self.bounds[-1][1] if self.bounds else 0
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (rows, dim)}
        with atomic_open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            for i in range(len(self.bounds)):
                f.write(np.ascontiguousarray(np.load(self.folder / f"chunk-{i:05d}.npy")).tobytes())

    @property
    def truncated(self) -> int:
        return sum(record["truncated"] for record in self.done.values())

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def encode_corpus(config: EncodeConfig, encoder=None, docs: list[Document] | None = None) -> Path:
    """Encode the corpus (all shards, or only `config.shard`); finished shards and checkpointed chunks are
    reused. `docs`: the corpus, when the caller has read it already."""
    from xretrieve.model import BiEncoder

    out = Path(config.out)
    docs = read_corpus(config.corpus) if docs is None else docs
    check_writable_folder(out)  # before the model loads
    if encoder is None:  # on Ray, the driver's model only gives the identity: workers encode
        device = None if config.ray else config.device
        encoder = BiEncoder(config.model, device=device, max_seq_length=config.max_seq_length)
    plan = {
        "corpus_sha256": sha256_file(config.corpus),
        "model": encoder.identity,
        "num_shards": config.num_shards,
        "dtype": config.dtype,
        "max_seq_length": config.max_seq_length,
    }
    bounds = shard_bounds(len(docs), config.num_shards)
    mine = [config.shard[0]] if config.shard else range(config.num_shards)
    records = {index: load_shard_record(out, index, plan) for index in mine}
    todo = [index for index, record in records.items() if record is None]
    # every check of the folder comes before any encoding: another run's chunks are refused here
    chunks = {
        index: _Chunks(out, index, plan, bounds[index][1] - bounds[index][0], config.checkpoint_every) for index in todo
    }
    done = sum(r["rows"] for r in records.values() if r) + (
        0 if config.ray else sum(c.rows_done for c in chunks.values())
    )
    if done:
        total = sum(end - start for start, end in (bounds[index] for index in mine))
        print(f"xretrieve: resuming: {done} of {total} passages already encoded in {out}", file=sys.stderr)

    def texts(index: int) -> list[str]:
        return [passage_text(d) for d in docs[slice(*bounds[index])]]

    def finish(index: int, **details) -> None:
        shard_docs = docs[slice(*bounds[index])]
        ids, langs = [d.id for d in shard_docs], [d.lang for d in shard_docs]
        records[index] = record_shard(out, index, ids, langs, plan, **details)
        chunks[index].remove()

    bytes_per_row = encoder.dim * np.dtype(config.dtype).itemsize
    if config.ray and todo:
        from xretrieve.distributed import encode_shards

        largest = max(bounds[index][1] - bounds[index][0] for index in todo)
        check_free_space(out, largest * bytes_per_row, "the largest shard")
        for index, vectors in encode_shards(config, {index: texts(index) for index in todo}, encoder.identity):
            with atomic_open(out / f"{shard_name(index)}.npy", "wb") as f:  # whole, atomically, as it comes
                np.save(f, vectors.astype(config.dtype))
            finish(index)
    elif todo:
        _encode_in_chunks(encoder, config, out, todo, texts, chunks, bytes_per_row, finish)
    truncated = sum(r.get("truncated", 0) for r in records.values() if r)
    if truncated:
        print(
            f"xretrieve: {truncated} passages truncated to {encoder.max_seq_length} tokens (the model's maximum, "
            "prompt and special tokens included): their ends are not encoded",
            file=sys.stderr,
        )
    _finish_if_complete(out, config, plan, len(docs), records)
    return out


def _encode_in_chunks(encoder, config: EncodeConfig, out: Path, todo: list, texts, chunks: dict, bytes_per_row, finish):
    """Encode the missing chunks of the shards `todo` under one progress bar of the tokens left to read,
    then join each shard's chunks into its file and `finish` it."""
    from tqdm import tqdm

    lengths = {index: token_lengths(encoder, texts(index)) for index in todo}
    missing = {index: [i for i in range(len(chunks[index].bounds)) if i not in chunks[index].done] for index in todo}
    total = sum(
        int(token_weights(encoder, lengths[index][slice(*chunks[index].bounds[i])]).sum())
        for index in todo
        for i in missing[index]
    )
    with _token_bar(tqdm, total, "encode", config.progress) as bar:
        for index in todo:
            shard, shard_texts = chunks[index], texts(index)
            rows = len(shard_texts)
            check_free_space(
                out, (rows + rows - shard.rows_done) * bytes_per_row, f"{shard_name(index)} and its chunks"
            )
            bar.set_postfix_str(f"{shard_name(index)} ({index + 1}/{config.num_shards})", refresh=False)
            for i in missing[index]:
                part = slice(*shard.bounds[i])
                vectors = encode_texts(
                    encoder, shard_texts[part], config.batch_size, bar=bar, lengths=lengths[index][part]
                )
                shard.write(i, vectors, config.dtype, int((lengths[index][part] > encoder.passage_room).sum()))
            shard.join(out / f"{shard_name(index)}.npy", config.dtype, encoder.dim)
            finish(index, truncated=shard.truncated)


def record_shard(out: Path, index: int, ids: list[str], langs: list[str], plan: dict, **details) -> dict:
    """Finish an embeddings shard whose vectors (NAME.npy) are written: its ids and languages beside
    them, the three files' checksums, and the record that marks it complete (with `details`)."""
    name = shard_name(index)
    write_lines(out / f"{name}.ids.txt", ids)
    write_lines(out / f"{name}.langs.txt", langs)
    files = checksums(out, [f"{name}{suffix}" for suffix in (".npy", ".ids.txt", ".langs.txt")])
    return write_shard_record(out, index, {"plan": plan, "rows": len(ids), "files": files, **details})


def _finish_if_complete(out: Path, config: EncodeConfig, plan: dict, rows: int, known: dict) -> None:
    """Write manifest.json once every shard is done (by this process or by parallel --shard runs)."""
    records = finished_records(out, config.num_shards, plan, known)
    if records is None:
        return
    write_manifest(
        out,
        EMBEDDINGS_KIND,
        {
            "model": plan["model"],
            "dim": plan["model"]["dim"],
            "dtype": config.dtype,
            "normalized": plan["model"]["normalized"],
            "prompt": plan["model"]["passage_prompt"],
            "rows": rows,
            "corpus": {"path": str(Path(config.corpus).resolve()), "sha256": plan["corpus_sha256"]},
            "shards": shard_entries(records),
            "parents": [],
        },
    )


class Embeddings:
    """A complete embeddings folder, read through its manifest."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not (self.folder / "manifest.json").is_file() and list(self.folder.glob("shard-*.json")):
            raise UserError(f"{folder}: encoding is incomplete (no manifest.json yet): run the missing shards")
        self.manifest = read_manifest(self.folder, EMBEDDINGS_KIND)
        self.shards = self.manifest["shards"]

    def verify(self) -> None:
        for shard in self.shards:
            verify_files(self.folder, shard["files"])

    def vectors(self, index: int) -> np.ndarray:
        """Shard vectors, memory-mapped (float16 shards stay float16 until used)."""
        return np.load(self.folder / f"{self.shards[index]['name']}.npy", mmap_mode="r")

    def ids(self, index: int) -> list[str]:
        return read_lines(self.folder / f"{self.shards[index]['name']}.ids.txt")

    def langs(self, index: int) -> list[str]:
        return read_lines(self.folder / f"{self.shards[index]['name']}.langs.txt")
