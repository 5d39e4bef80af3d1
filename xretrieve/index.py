"""Build an index: one FAISS index per embeddings shard (index_shard), from a factory string, trained once on a
sample; and the one reader of index manifests (`read_index_manifest`)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
from collections import Counter
from pathlib import Path

from xretrieve.config import EncodeConfig, IndexConfig
from xretrieve.encode import Embeddings, encode_corpus
from xretrieve.errors import UserError
from xretrieve.formats import read_corpus
from xretrieve.index_shard import (  # noqa: F401 (DEFAULT_*, index_layers: importable from here as before)
    DEFAULT_EF_SEARCH,
    DEFAULT_NPROBE,
    FaissDevice,
    build_shard,
    default_search_params,
    index_layers,
    make_index,
    train_index,
)
from xretrieve.manifest import (
    check_writable_folder,
    load_shard_record,
    read_manifest,
    sha256_file,
    shard_entries,
    update_manifest,
    verify_files,
    write_manifest,
)

INDEX_KIND = "index"
METRIC = "inner_product"  # cosine for normalised models

AUTO = "auto"
# Chosen by benchmarks/index_curve.py (recall@10 against exact search, one-core QPS and memory at 1 M x 384):
# see auto_factory and benchmarks/results/index_curve.md.
FLAT_MAX_ROWS = 50_000


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


def build_index(config: IndexConfig, encoder=None) -> Path:
    """Build OUT on this machine from stored embeddings, or encode the corpus into OUT/embeddings first (with
    `encoder`, else the model `config.model` names)."""
    inputs = IndexInputs(config)
    return run_build(inputs, LocalBuilder(config, encoder))


class IndexInputs:
    """What an index build reads, checked before any model or faiss loads: the corpus or the embeddings
    folder, and that OUT is a folder this run may write."""

    def __init__(self, config: IndexConfig):
        self.config, self.out = config, Path(config.out)
        self.docs = read_corpus(config.corpus) if config.corpus else None
        self.embeddings = Embeddings(config.embeddings) if config.embeddings else None
        check_writable_folder(self.out)
        _check_not_live(self.out)

    def encode_config(self, model: str | None) -> EncodeConfig:
        """How `index --corpus` encodes into OUT/embeddings."""
        config = self.config
        return EncodeConfig(
            corpus=config.corpus,
            out=str(self.out / "embeddings"),
            model=model,
            num_shards=config.num_shards,
            batch_size=config.batch_size,
            dtype=config.dtype,
            device=config.device,
            checkpoint_every=config.checkpoint_every,
            progress=config.progress,
            ray=config.ray,
        )


class LocalBuilder:
    """Encodes and builds an index's shards in this process; xretrieve.ray has one that uses a cluster.

    A builder gives the model's `identity(model)`, `encode`s the corpus, and `build_shards`."""

    def __init__(self, config: IndexConfig, encoder=None):
        self.device = FaissDevice(config.device)  # a missing GPU or faiss-gpu fails before any encoding
        self.encoder = encoder

    def identity(self, model: str | None) -> dict:
        """The model's identity, read from its folder; the model loads here only where its folder cannot
        tell (a hub name), and is then the one that encodes."""
        from xretrieve.model import BiEncoder, read_identity

        if self.encoder is None and (found := read_identity(model)) is not None:
            return found
        if self.encoder is None:
            self.encoder = BiEncoder(model, device=self.device.device)
        return self.encoder.identity

    def encode(self, config: EncodeConfig, docs: list) -> None:
        encode_corpus(config, encoder=self.encoder, docs=docs)

    def build_shards(
        self, config: IndexConfig, embeddings: Embeddings, todo: list[int], out: Path, plan: dict, dim: int
    ) -> tuple[bytes, dict[int, dict]]:
        """Train once, then build the shards `todo` one after another: (the trained empty index, records)."""
        from tqdm import tqdm

        trained = train_index(config, embeddings, self.device, dim)
        records = {}
        for index in tqdm(todo, desc="index shards", disable=not config.progress):
            records[index] = build_shard(embeddings, index, trained, self.device, out, plan)
        return trained, records


def run_build(inputs: IndexInputs, builder) -> Path:
    """The index build, with how the corpus is encoded and the shards are built left to `builder`
    (`LocalBuilder`, or xretrieve.ray's on a cluster)."""
    config, out, embeddings = inputs.config, inputs.out, inputs.embeddings
    if config.corpus:
        # what OUT already holds is judged by the model's identity, read before the model loads
        identity = builder.identity(config.model)
        if _built_from_corpus(config, out, identity):
            update_manifest(out, INDEX_KIND, {"translate": translate_entry(config)})
            print(f"xretrieve: {out} is already built from {config.corpus} with these settings; nothing to do")
            return out
        _check_rebuild(config, out, identity.get("fingerprint"))
        if config.factory != AUTO:
            make_index(config.factory, identity["dim"])  # a bad factory string fails before encoding
        encode = inputs.encode_config(config.model)
        builder.encode(encode, inputs.docs)
        embeddings = Embeddings(encode.out)
    _build_from_embeddings(config, embeddings, out, builder)
    if config.corpus and not config.keep_embeddings:
        shutil.rmtree(embeddings.folder)
    return out


def _build_from_embeddings(config: IndexConfig, embeddings: Embeddings, out: Path, builder) -> None:
    import faiss

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
    if todo:
        trained, built = builder.build_shards(config, embeddings, todo, out, plan, dim)
        for index, record in built.items():
            records[index] = record
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


def _built_from_corpus(config: IndexConfig, out: Path, identity: dict) -> bool:
    """True when OUT is a complete, intact index of this corpus, model and settings."""
    if not (out / "manifest.json").is_file():
        return False
    try:
        manifest = read_manifest(out, INDEX_KIND)
        for entry in manifest["shards"]:
            verify_files(out, entry["files"])
    except (UserError, KeyError):
        return False
    wanted = _corpus_build_settings(config, identity.get("fingerprint"))
    return manifest.get("build") == wanted and manifest["model"].get("name") == identity["name"]


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


SHARD_NAME = re.compile(r"shard-\d{5}")


def read_index_manifest(folder: str | Path) -> dict:
    """An index folder's manifest, its shape checked before anything is opened: a UserError names the field.
    The one reader of index manifests: search, serve and xretrieve.ray all go through it."""
    from xretrieve.docstore import DOCS_FILE, OFFSETS_FILE
    from xretrieve.manifest import MANIFEST_NAME

    manifest = read_manifest(folder, INDEX_KIND)
    where = Path(folder) / MANIFEST_NAME

    def files_of(value, field: str) -> dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise UserError(f"{where}: {field} must be an object of file name: sha256")
        if any("/" in name or "\\" in name or name.startswith(".") for name in value):
            raise UserError(f"{where}: {field} names a file outside the index folder")
        return value

    model = manifest.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not isinstance(model.get("dim"), int):
        raise UserError(f"{where}: 'model' must be an object with a 'name' and an integer 'dim'")
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not all(isinstance(entry, dict) for entry in shards):
        raise UserError(f"{where}: 'shards' must be a list of shard objects")
    for i, entry in enumerate(shards):
        if not isinstance(entry.get("name"), str) or not SHARD_NAME.fullmatch(entry["name"]):
            raise UserError(f"{where}: shards[{i}].name must be like 'shard-00000'")
        files_of(entry.get("files"), f"shards[{i}].files")
    live = manifest.get("live")
    if live is not None and not (
        isinstance(live, dict)
        and all(isinstance(live.get(key), int) and live[key] >= 0 for key in ("generation", "wal_seq"))
    ):
        raise UserError(f"{where}: 'live' must be an object with integers 'generation' and 'wal_seq' (0 or more)")
    docs = manifest.get("docs")
    if docs is not None:
        files = files_of(docs.get("files") if isinstance(docs, dict) else None, "docs.files")
        if not {DOCS_FILE, OFFSETS_FILE} <= set(files):
            raise UserError(f"{where}: docs.files must list {DOCS_FILE} and {OFFSETS_FILE}")
    return manifest
