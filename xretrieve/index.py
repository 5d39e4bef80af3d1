"""One FAISS index per embeddings shard, from a factory string, trained once on a sample."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from xretrieve.config import EncodeConfig, IndexConfig
from xretrieve.encode import Embeddings, encode_corpus
from xretrieve.errors import UserError
from xretrieve.formats import read_corpus, write_lines
from xretrieve.manifest import (
    atomic_target,
    check_writable_folder,
    checksums,
    load_shard_record,
    read_manifest,
    sha256_file,
    shard_entries,
    shard_name,
    update_manifest,
    verify_files,
    write_manifest,
    write_shard_record,
)

INDEX_KIND = "index"
METRIC = "inner_product"  # cosine for normalised models
_ADD_CHUNK = 65536

AUTO = "auto"
# Chosen by benchmarks/index_curve.py (recall@10 against exact search, one-core QPS and memory at 1 M x 384):
# see auto_factory and benchmarks/results/index_curve.md.
FLAT_MAX_ROWS = 50_000
DEFAULT_NPROBE = 48
DEFAULT_EF_SEARCH = 128


def auto_factory(rows: int) -> str:
    """The default factory for shards of up to `rows` vectors.

    Up to FLAT_MAX_ROWS, exact search (Flat): no training, and fast enough at that size. Above, IVF with
    about 4 * sqrt(rows) lists (a power of two: 4096 at 1 M) over float16 codes, searched with
    nprobe=DEFAULT_NPROBE. At 1 M x 384 that gave recall@10 0.964 at 461 queries/s on one core in 782 MB;
    the best graph that fits in 1 GB (HNSW32,SQ8) needed efSearch=384 for 0.951, at 318 queries/s.
    """
    if rows <= FLAT_MAX_ROWS:
        return "Flat"
    return f"IVF{2 ** round(math.log2(4 * math.sqrt(rows)))},SQfp16"


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


class _Device:
    """Moves indexes to a GPU for training and adding, and back to the CPU for writing."""

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


def _train(config: IndexConfig, embeddings: Embeddings, device: _Device, dim: int) -> bytes:
    """The trained, empty index, serialized so every shard starts from the same copy."""
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


def build_index(config: IndexConfig, encoder=None) -> Path:
    """Build OUT from stored embeddings, or encode the corpus into OUT/embeddings first."""
    if config.ray:  # one Ray session for encoding and building
        from xretrieve.distributed import connected

        with connected(config.ray):
            return _build_index(config, encoder)
    return _build_index(config, encoder)


def _build_index(config: IndexConfig, encoder) -> Path:
    out = Path(config.out)
    # files and folders first: a bad one fails before torch or faiss is imported
    docs = read_corpus(config.corpus) if config.corpus else None
    embeddings = Embeddings(config.embeddings) if config.embeddings else None
    check_writable_folder(out)
    _check_not_live(out)
    # a missing GPU or faiss-gpu fails before any encoding (on Ray, the GPUs are the workers')
    device = None if config.ray else _Device(config.device)
    if config.corpus:
        from xretrieve.model import BiEncoder, locate_model

        # what OUT already holds is judged by the model's name and fingerprint, before the model loads
        if encoder is None:
            name, _, fingerprint = locate_model(config.model)
        else:
            name, fingerprint = encoder.identity["name"], encoder.identity.get("fingerprint")
        if _built_from_corpus(config, out, name, fingerprint):
            update_manifest(out, INDEX_KIND, {"translate": translate_entry(config)})
            print(f"xretrieve: {out} is already built from {config.corpus} with these settings; nothing to do")
            return out
        _check_rebuild(config, out, fingerprint)
        if encoder is None:
            encoder = BiEncoder(config.model, device="cuda" if config.device == "cuda" and not config.ray else None)
        if config.factory != AUTO:
            make_index(config.factory, encoder.dim)  # a bad factory string fails before encoding
        embeddings_dir = out / "embeddings"
        encode_corpus(
            EncodeConfig(
                corpus=config.corpus,
                out=str(embeddings_dir),
                model=config.model,
                num_shards=config.num_shards,
                batch_size=config.batch_size,
                dtype=config.dtype,
                checkpoint_every=config.checkpoint_every,
                progress=config.progress,
                ray=config.ray,
            ),
            encoder=encoder,
            docs=docs,
        )
        embeddings = Embeddings(embeddings_dir)
    _build_from_embeddings(config, embeddings, out, device)
    if config.corpus and not config.keep_embeddings:
        shutil.rmtree(embeddings.folder)
    return out


def _build_from_embeddings(config: IndexConfig, embeddings: Embeddings, out: Path, device: _Device) -> None:
    import faiss
    from tqdm import tqdm

    embeddings.verify()
    dim = int(embeddings.manifest["dim"])
    requested = config.factory
    if requested == AUTO:  # resolved here: for `--corpus` the shard sizes are known only after encoding
        config = dataclasses.replace(config, factory=auto_factory(max(shard["rows"] for shard in embeddings.shards)))
    make_index(config.factory, dim)  # fail on a bad factory string before any work
    plan = {
        "embeddings_manifest_sha256": sha256_file(embeddings.folder / "manifest.json"),
        "factory": config.factory,
        "train_size": config.train_size,
        "seed": config.seed,
    }
    trained: bytes | None = None
    records = [load_shard_record(out, index, plan) for index in range(len(embeddings.shards))]
    todo = [index for index, record in enumerate(records) if record is None]
    if config.ray and todo:
        from xretrieve.distributed import build_shards

        trained, built = build_shards(config, embeddings.folder, todo, out, plan, dim)
        for index, record in built.items():
            records[index] = record
    elif todo:
        trained = _train(config, embeddings, device, dim)
        for index in tqdm(todo, desc="index shards", disable=not config.progress):
            records[index] = _build_shard(embeddings, index, trained, device, out, plan)
    docs = _docstore(embeddings, out)
    sample_index = faiss.deserialize_index(trained) if trained is not None else make_index(config.factory, dim)
    langs = Counter(lang for index in range(len(embeddings.shards)) for lang in embeddings.langs(index))
    write_manifest(
        out,
        INDEX_KIND,
        {
            "factory": config.factory,
            "metric": METRIC,
            "dim": dim,
            "model": embeddings.manifest["model"],
            "rows": sum(r["rows"] for r in records),
            "langs": dict(sorted(langs.items())),
            "search_params": default_search_params(sample_index),
            "build": _build_settings(
                config,
                corpus_sha256=embeddings.manifest.get("corpus", {}).get("sha256"),
                model_fingerprint=embeddings.manifest["model"].get("fingerprint"),
                num_shards=len(embeddings.manifest["shards"]),
                dtype=embeddings.manifest["dtype"],
                factory=requested,  # as asked ("auto" stays "auto"); the top-level factory is the one built
            ),
            "docs": docs,
            "translate": translate_entry(config),
            # how the vectors were augmented (xQG), so that documents added later can say they were not
            **({"augment": embeddings.manifest["augment"]} if embeddings.manifest.get("augment") else {}),
            "shards": shard_entries(records),
            "parents": [
                {"embeddings": str(embeddings.folder.resolve()), "manifest_sha256": plan["embeddings_manifest_sha256"]}
            ],
        },
    )


def translate_entry(config: IndexConfig) -> dict | None:
    """How searches of this index translate queries (translate-test), or None: a search default, not part of
    the index's contents, so changing it rewrites only the manifest."""
    if config.translate is None:
        return None
    return {
        "backend": config.translate,
        "weight": config.translate_weight,
        "targets": config.translate_targets,
        "max_targets": config.translate_max_targets,
    }


def _build_settings(
    config: IndexConfig,
    *,
    corpus_sha256: str | None,
    model_fingerprint: str | None,
    num_shards: int,
    dtype: str,
    factory: str,
) -> dict:
    """What decides an index's contents, recorded in its manifest so that a rerun of `index --corpus` can
    tell it has nothing to do."""
    return {
        "corpus_sha256": corpus_sha256,
        "model_fingerprint": model_fingerprint,
        "num_shards": num_shards,
        "dtype": dtype,
        "factory": factory,
        "train_size": config.train_size,
        "seed": config.seed,
    }


def _built_from_corpus(config: IndexConfig, out: Path, model_name: str, model_fingerprint: str | None) -> bool:
    """True when OUT is a complete, intact index of this corpus, model and settings."""
    if not (out / "manifest.json").is_file():
        return False
    try:
        manifest = read_manifest(out, INDEX_KIND)
        for entry in manifest["shards"]:
            verify_files(out, entry["files"])
    except (UserError, KeyError):
        return False
    wanted = _corpus_build_settings(config, model_fingerprint)
    return manifest.get("build") == wanted and manifest["model"].get("name") == model_name


def _corpus_build_settings(config: IndexConfig, model_fingerprint: str | None) -> dict:
    """The build settings `index --corpus` with `config` records."""
    return _build_settings(
        config,
        corpus_sha256=sha256_file(config.corpus),
        model_fingerprint=model_fingerprint,
        num_shards=config.num_shards,
        dtype=config.dtype,
        factory=config.factory,
    )


def _check_not_live(out: Path) -> None:
    """Rebuilding over a live index would drop the changes made since its build (`add`, `delete`): refuse."""
    from xretrieve.live import has_changes

    try:
        manifest = read_manifest(out, INDEX_KIND) if (out / "manifest.json").is_file() else None
    except UserError:
        return  # not an index: judged as today
    if manifest is not None and has_changes(out, manifest):
        raise UserError(
            f"{out}: holds a live index changed since its build (xretrieve add/delete); choose a new --out, "
            "or delete the folder to build it again"
        )


def _check_rebuild(config: IndexConfig, out: Path, model_fingerprint: str | None) -> None:
    """Refuse, before any encoding, an OUT that holds an index of other settings: its shards would be refused
    only once the corpus is encoded. An unfinished build of these settings (shard records that name the
    embeddings in OUT/embeddings) goes on."""
    manifest_path, embeddings_manifest = out / "manifest.json", out / "embeddings" / "manifest.json"
    built = None
    if manifest_path.is_file():
        try:
            built = read_manifest(out, INDEX_KIND).get("build")
        except UserError:
            built = None
    if built is not None:
        wanted = _corpus_build_settings(config, model_fingerprint)
        changed = sorted(key for key in wanted if built.get(key) != wanted[key])
        if changed:
            raise UserError(
                f"{out}: holds an index built with other settings ({', '.join(changed)}); "
                "choose a new --out or delete the folder"
            )
        return
    parent = sha256_file(embeddings_manifest) if embeddings_manifest.is_file() else None
    for path in sorted(out.glob("shard-*.json")):
        try:
            plan = json.loads(path.read_text(encoding="utf-8")).get("plan", {})
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if plan.get("embeddings_manifest_sha256") != parent or (
            config.factory != AUTO and plan.get("factory") != config.factory
        ):
            raise UserError(
                f"{path}: this folder holds a shard of a different index build; choose a new --out or delete it"
            )


def _docstore(embeddings: Embeddings, out: Path) -> dict | None:
    """Titles and texts for search results, copied from the corpus the embeddings name, if it is unchanged."""
    from xretrieve.docstore import write_docstore

    corpus = embeddings.manifest.get("corpus", {})
    path = Path(corpus.get("path", ""))
    if not path.is_file() or sha256_file(path) != corpus.get("sha256"):
        print(f"xretrieve: {path} is missing or changed since encoding; the index will hold ids without texts")
        return None
    return {"files": write_docstore(path, out)}


def _build_shard(embeddings: Embeddings, index: int, trained: bytes, device: _Device, out: Path, plan: dict) -> dict:
    import faiss

    shard_index = device.to_device(faiss.deserialize_index(trained), plan["factory"])
    vectors = embeddings.vectors(index)
    for start in range(0, len(vectors), _ADD_CHUNK):
        shard_index.add(np.asarray(vectors[start : start + _ADD_CHUNK], dtype=np.float32))
    name = shard_name(index)
    with atomic_target(out / f"{name}.faiss") as tmp:
        try:
            faiss.write_index(device.to_cpu(shard_index), tmp)
        except RuntimeError as exc:  # faiss's C++ "fwrite" error on a full disk: an OSError naming the file
            raise OSError(None, str(exc).strip().splitlines()[-1], tmp) from exc
    write_lines(out / f"{name}.docids.txt", embeddings.ids(index))
    write_lines(out / f"{name}.langs.txt", embeddings.langs(index))
    files = checksums(out, [f"{name}{suffix}" for suffix in (".faiss", ".docids.txt", ".langs.txt")])
    record = {"plan": plan, "rows": len(vectors), "files": files}
    write_shard_record(out, index, record)
    return record
