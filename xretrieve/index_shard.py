"""One shard of a FAISS index: the index a factory string makes, trained once on a sample, a shard built
from a copy of it, and the device (CPU or GPU) they are built on. The shard-level steps of `index`, public
so that xretrieve.ray runs them as tasks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from xretrieve.config import IndexConfig
from xretrieve.encode import Embeddings
from xretrieve.errors import UserError
from xretrieve.formats import write_lines
from xretrieve.manifest import atomic_target, checksums, shard_name, write_shard_record

_ADD_CHUNK = 65536
# search defaults chosen by benchmarks/index_curve.py (see index.auto_factory, benchmarks/results/index_curve.md)
DEFAULT_NPROBE = 48
DEFAULT_EF_SEARCH = 128


def make_index(factory: str, dim: int):
    import faiss

    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1].split(": ")[-1]
        raise UserError(
            f"unknown factory string {factory!r} ({reason}); examples: Flat, HNSW32, IVF1024,Flat, "
            "IVF1024,PQ48, OPQ48,IVF1024,PQ48, and ',RFlat' appended for exact re-ranking"
        ) from None
    for layer in index_layers(index):
        if isinstance(layer, faiss.IndexIVFPQ):
            # the factory turns on polysemous training, which only polysemous (Hamming) search uses
            # and which makes training ~80x slower
            layer.do_polysemous_training = False
    return index


def index_layers(index) -> Iterator[Any]:
    """The index and the indexes it wraps (pre-transform, refine), each downcast to its real type."""
    import faiss

    index = faiss.downcast_index(index)
    while True:
        yield index
        inner = getattr(index, "base_index", None) or (
            index.index if isinstance(index, faiss.IndexPreTransform) else None
        )
        if inner is None:
            return
        index = faiss.downcast_index(inner)


def default_search_params(index) -> str:
    """Settings that favour recall on small to mid-size shards; `--search-params` overrides them."""
    import faiss

    params = []
    for layer in index_layers(index):
        if isinstance(layer, faiss.IndexIVF):
            params.append(f"nprobe={min(layer.nlist, DEFAULT_NPROBE)}")
        elif isinstance(layer, faiss.IndexHNSW):
            params.append(f"efSearch={DEFAULT_EF_SEARCH}")
        elif isinstance(layer, faiss.IndexRefine):
            params.append("k_factor_rf=4")
    return ",".join(params)


class FaissDevice:
    """Where shards are trained and built: moves indexes to a GPU for training and adding, and back to the CPU
    for writing."""

    def __init__(self, device: str):
        self.device, self.resources = device, None
        if device == "cuda":
            import faiss

            if not hasattr(faiss, "StandardGpuResources"):
                raise UserError("--device cuda needs faiss-gpu (pip install '.[gpu]' instead of '.[cpu]')")
            if faiss.get_num_gpus() < 1:
                raise UserError("--device cuda: faiss-gpu is installed but sees no GPU")
            self.resources = faiss.StandardGpuResources()

    def to_device(self, index, factory: str):
        if self.resources is None:
            return index
        import faiss

        try:
            return faiss.index_cpu_to_gpu(self.resources, 0, index)
        except RuntimeError:
            raise UserError(f"factory {factory!r} has no GPU implementation; build it with --device cpu") from None

    def to_cpu(self, index):
        if self.resources is None:
            return index
        import faiss

        return faiss.index_gpu_to_cpu(index)


def _training_sample(embeddings: Embeddings, size: int, seed: int) -> np.ndarray:
    """A uniform sample of rows over all shards, in corpus order, as float32."""
    counts = [shard["rows"] for shard in embeddings.shards]
    total = sum(counts)
    picks = np.sort(np.random.default_rng(seed).choice(total, size=min(size, total), replace=False))
    offsets = np.cumsum([0, *counts])
    parts = []
    for index in range(len(counts)):
        local = picks[(picks >= offsets[index]) & (picks < offsets[index + 1])] - offsets[index]
        if len(local):
            parts.append(np.asarray(embeddings.vectors(index)[local], dtype=np.float32))
    return np.concatenate(parts)


def train_index(config: IndexConfig, embeddings: Embeddings, device: FaissDevice, dim: int) -> bytes:
    """The trained, empty index, serialized so every shard starts from the same copy (`build_shard`)."""
    import faiss

    index = make_index(config.factory, dim)
    if not index.is_trained:
        sample = _training_sample(embeddings, config.train_size, config.seed)
        for layer in index_layers(index):
            if isinstance(layer, faiss.IndexIVF) and len(sample) < layer.nlist:
                raise UserError(
                    f"factory {config.factory!r} has {layer.nlist} IVF lists but only {len(sample)} vectors "
                    f"to train on: use fewer lists (e.g. IVF{max(1, len(sample) // 39)}) or Flat"
                )
        on_device = device.to_device(index, config.factory)
        try:
            on_device.train(sample)
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[-1]
            raise UserError(f"training {config.factory!r} on {len(sample)} vectors failed: {reason}") from None
        index = device.to_cpu(on_device)
    return faiss.serialize_index(index)


def build_shard(embeddings: Embeddings, index: int, trained: bytes, device: FaissDevice, out: Path, plan: dict) -> dict:
    """Shard `index` of the index in `out`: a copy of the `trained` empty index with the embeddings shard's
    vectors added, its docids and languages, and the record (with `plan`) that marks it complete."""
    import faiss

    shard_index = device.to_device(faiss.deserialize_index(trained), plan["factory"])
    add_vectors(shard_index, embeddings.vectors(index))
    return save_shard(out, index, device.to_cpu(shard_index), embeddings.ids(index), embeddings.langs(index), plan)


def add_vectors(index, vectors: np.ndarray) -> None:
    """Add rows to a faiss index in chunks, as float32 (a memory-mapped float16 shard is converted a chunk at a
    time, not whole)."""
    for start in range(0, len(vectors), _ADD_CHUNK):
        index.add(np.ascontiguousarray(vectors[start : start + _ADD_CHUNK], dtype=np.float32))


def save_shard(out: Path, number: int, index, docids: list[str], langs: list[str], plan: dict) -> dict:
    """Write shard `number`'s files in `out` (its faiss index, docids and languages), then the record (with
    `plan`) that marks it complete; returns the record."""
    import faiss

    name = shard_name(number)
    with atomic_target(out / f"{name}.faiss") as tmp:
        try:
            faiss.write_index(index, tmp)
        except RuntimeError as exc:  # faiss's C++ "fwrite" error on a full disk: an OSError naming the file
            raise OSError(None, str(exc).strip().splitlines()[-1], tmp) from exc
    write_lines(out / f"{name}.docids.txt", docids)
    write_lines(out / f"{name}.langs.txt", langs)
    files = checksums(out, [f"{name}{suffix}" for suffix in (".faiss", ".docids.txt", ".langs.txt")])
    return write_shard_record(out, number, {"plan": plan, "rows": len(docids), "files": files})
