"""Sharded, resumable corpus encoding: corpus -> shard-*.npy + ids + langs + manifest.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xretrieve.config import EncodeConfig
from xretrieve.errors import UserError
from xretrieve.formats import passage_text, read_corpus, read_lines, write_lines
from xretrieve.manifest import (
    atomic_open,
    checksums,
    finished_records,
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


def encode_texts(encoder, texts: list[str], batch_size: int, progress: bool, desc: str) -> np.ndarray:
    """Encode in batches of similar token length (less padding), rows returned in input order."""
    from tqdm import tqdm

    lengths = np.asarray(encoder.token_lengths(texts)) if texts else np.zeros(0, int)
    order = np.argsort(-lengths, kind="stable")  # longest first: memory peaks show up at once
    out = np.empty((len(texts), encoder.dim), np.float32)
    with tqdm(total=len(texts), desc=desc, unit="passage", disable=not progress) as bar:
        for start in range(0, len(texts), batch_size):
            batch = order[start : start + batch_size]
            out[batch] = encoder.encode_passages([texts[i] for i in batch], batch_size=batch_size)
            bar.update(len(batch))
    return out


def encode_corpus(config: EncodeConfig, encoder=None) -> Path:
    """Encode the corpus (all shards, or only `config.shard`); finished shards are skipped."""
    from xretrieve.model import BiEncoder

    out = Path(config.out)
    docs = read_corpus(config.corpus)
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

    def texts(index: int) -> list[str]:
        return [passage_text(d) for d in docs[slice(*bounds[index])]]

    if config.ray and todo:
        from xretrieve.distributed import encode_shards

        encoded = encode_shards(config, {index: texts(index) for index in todo}, encoder.identity)
    else:
        encoded = (
            (index, encode_texts(encoder, texts(index), config.batch_size, config.progress, desc=_desc(index, config)))
            for index in todo
        )
    for index, vectors in encoded:  # each shard is written whole, atomically, as it comes
        shard_docs = docs[slice(*bounds[index])]
        with atomic_open(out / f"{shard_name(index)}.npy", "wb") as f:
            np.save(f, vectors.astype(config.dtype))
        records[index] = record_shard(out, index, [d.id for d in shard_docs], [d.lang for d in shard_docs], plan)
    _finish_if_complete(out, config, plan, len(docs), records)
    return out


def record_shard(out: Path, index: int, ids: list[str], langs: list[str], plan: dict, **details) -> dict:
    """Finish an embeddings shard whose vectors (NAME.npy) are written: its ids and languages beside
    them, the three files' checksums, and the record that marks it complete (with `details`)."""
    name = shard_name(index)
    write_lines(out / f"{name}.ids.txt", ids)
    write_lines(out / f"{name}.langs.txt", langs)
    files = checksums(out, [f"{name}{suffix}" for suffix in (".npy", ".ids.txt", ".langs.txt")])
    return write_shard_record(out, index, {"plan": plan, "rows": len(ids), "files": files, **details})


def _desc(index: int, config: EncodeConfig) -> str:
    return f"encode {shard_name(index)} ({index + 1}/{config.num_shards})"


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
