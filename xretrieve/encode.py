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


class EncodeJob:
    """One run of `encode` into its folder: the corpus, the plan (corpus, model identity, settings) that every
    shard record names, the shards this run writes and those already done. `encode_corpus` runs one here;
    xretrieve.ray runs one whose shards are encoded on a cluster.

    Built in two steps so that the files are checked before any model loads: `EncodeJob(config)` reads the
    corpus and checks the folder, `start(identity)` finds the finished shards and checkpointed chunks."""

    def __init__(self, config: EncodeConfig, docs: list[Document] | None = None):
        self.config, self.out = config, Path(config.out)
        self.docs = read_corpus(config.corpus) if docs is None else docs
        check_writable_folder(self.out)
        self.bounds = shard_bounds(len(self.docs), config.num_shards)
        self.mine = [config.shard[0]] if config.shard else list(range(config.num_shards))
        self.plan: dict = {}
        self.records: dict[int, dict | None] = {}
        self.todo: list[int] = []
        self.chunks: dict[int, _Chunks] = {}

    def start(self, identity: dict) -> EncodeJob:
        """Plan for the model of `identity`; every check of the folder comes before any encoding: another
        run's shards and chunks are refused here."""
        config = self.config
        self.plan = {
            "corpus_sha256": sha256_file(config.corpus),
            "model": identity,
            "num_shards": config.num_shards,
            "dtype": config.dtype,
            "max_seq_length": config.max_seq_length,
        }
        self.records = {index: load_shard_record(self.out, index, self.plan) for index in self.mine}
        self.todo = [index for index, record in self.records.items() if record is None]
        self.chunks = {
            index: _Chunks(self.out, index, self.plan, self.rows(index), config.checkpoint_every) for index in self.todo
        }
        return self

    def rows(self, index: int) -> int:
        start, end = self.bounds[index]
        return end - start

    def texts(self, index: int) -> list[str]:
        """The passages of shard `index`, as the model reads them."""
        return [passage_text(d) for d in self.docs[slice(*self.bounds[index])]]

    def bytes_per_row(self) -> int:
        return self.plan["model"]["dim"] * np.dtype(self.config.dtype).itemsize

    def report_resume(self, with_chunks: bool = True) -> None:
        """Say how much earlier runs left done (`with_chunks`: counting checkpointed chunks, which a run that
        encodes whole shards does not reuse)."""
        done = sum(r["rows"] for r in self.records.values() if r)
        if with_chunks:
            done += sum(c.rows_done for c in self.chunks.values())
        if done:
            total = sum(self.rows(index) for index in self.mine)
            print(f"xretrieve: resuming: {done} of {total} passages already encoded in {self.out}", file=sys.stderr)

    def write_shard(self, index: int, vectors: np.ndarray) -> None:
        """Store a whole shard's vectors, atomically, and finish it."""
        with atomic_open(self.out / f"{shard_name(index)}.npy", "wb") as f:
            np.save(f, vectors.astype(self.config.dtype))
        self.finish_shard(index)

    def finish_shard(self, index: int, **details) -> None:
        """Record shard `index`, whose vectors are written (with `details`), and drop its chunks."""
        shard_docs = self.docs[slice(*self.bounds[index])]
        ids, langs = [d.id for d in shard_docs], [d.lang for d in shard_docs]
        self.records[index] = record_shard(self.out, index, ids, langs, self.plan, **details)
        self.chunks[index].remove()

    def finish(self, max_seq_length: int | None) -> Path:
        """Report truncated passages; write manifest.json once every shard is done (by this run or others)."""
        truncated = sum(r.get("truncated", 0) for r in self.records.values() if r)
        if truncated:
            limit = f"{max_seq_length} tokens (the model's maximum, " if max_seq_length else "the model's maximum ("
            print(
                f"xretrieve: {truncated} passages truncated to {limit}prompt and special tokens included): "
                "their ends are not encoded",
                file=sys.stderr,
            )
        _finish_if_complete(self.out, self.config, self.plan, len(self.docs), self.records)
        return self.out


def encode_corpus(config: EncodeConfig, encoder=None, docs: list[Document] | None = None) -> Path:
    """Encode the corpus (all shards, or only `config.shard`) on this machine; finished shards and
    checkpointed chunks are reused. `docs`: the corpus, when the caller has read it already."""
    from xretrieve.model import BiEncoder

    job = EncodeJob(config, docs)  # before the model loads
    if encoder is None:
        encoder = BiEncoder(config.model, device=config.device, max_seq_length=config.max_seq_length)
    job.start(encoder.identity).report_resume()
    if job.todo:
        _encode_in_chunks(encoder, job)
    return job.finish(encoder.max_seq_length)


def _encode_in_chunks(encoder, job: EncodeJob) -> None:
    """Encode the missing chunks of the job's shards under one progress bar of the tokens left to read, then
    join each shard's chunks into its file and finish it."""
    from tqdm import tqdm

    config, out, chunks = job.config, job.out, job.chunks
    lengths = {index: token_lengths(encoder, job.texts(index)) for index in job.todo}
    missing = {
        index: [i for i in range(len(chunks[index].bounds)) if i not in chunks[index].done] for index in job.todo
    }
    total = sum(
        int(token_weights(encoder, lengths[index][slice(*chunks[index].bounds[i])]).sum())
        for index in job.todo
        for i in missing[index]
    )
    with _token_bar(tqdm, total, "encode", config.progress) as bar:
        for index in job.todo:
            shard, shard_texts = chunks[index], job.texts(index)
            rows = len(shard_texts)
            check_free_space(
                out, (rows + rows - shard.rows_done) * job.bytes_per_row(), f"{shard_name(index)} and its chunks"
            )
            bar.set_postfix_str(f"{shard_name(index)} ({index + 1}/{config.num_shards})", refresh=False)
            for i in missing[index]:
                part = slice(*shard.bounds[i])
                vectors = encode_texts(
                    encoder, shard_texts[part], config.batch_size, bar=bar, lengths=lengths[index][part]
                )
                shard.write(i, vectors, config.dtype, int((lengths[index][part] > encoder.passage_room).sum()))
            shard.join(out / f"{shard_name(index)}.npy", config.dtype, encoder.dim)
            job.finish_shard(index, truncated=shard.truncated)


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
