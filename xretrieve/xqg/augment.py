"""Fold generated queries into passage embeddings (xQG): a new embeddings folder that index/search read unchanged.

For passage p with generated queries q (language l(q), weight w_l, default 1) and query-side embeddings e_q:
    sum:  e' = (1 - alpha) * e_p + alpha * sum_q w_l(q) * e_q                       (the paper's form)
    mean: e' = (1 - alpha) * e_p + alpha * sum_q w_l(q) * e_q / sum_q w_l(q)
optionally renormalised to unit length. Passages with no query of positive weight keep e_p exactly.

It works one embeddings shard at a time: the generated file is streamed once per shard (it need not be sorted),
the queries of that shard's passages are encoded in chunks and scatter-added into running sums the size of
the shard (a memory map on disk), so no query embedding outlives its chunk. Each shard is written atomically
with a record; a killed run resumes at the first unfinished shard, and `--shard i/n` spreads shards over
processes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xretrieve.config import AugmentConfig
from xretrieve.encode import EMBEDDINGS_KIND, Embeddings, record_shard
from xretrieve.errors import UserError
from xretrieve.formats import iter_generated
from xretrieve.manifest import (
    atomic_target,
    finished_records,
    load_shard_record,
    manifest_body,
    sha256_file,
    shard_entries,
    shard_name,
    write_manifest,
)

_CHUNK_BATCHES = 16  # queries encoded per call: this many batches (sentence-transformers sorts them by length)
_WRITE_ROWS = 65536


def fuse(
    passages: np.ndarray, sums: np.ndarray, weights: np.ndarray, alpha: float, mode: str, renormalize: bool
) -> np.ndarray:
    """The fused rows for passage vectors, their weighted query sums and total weights (float32)."""
    fused = np.asarray(passages, dtype=np.float32).copy()
    changed = weights > 0
    if not changed.any():
        return fused
    added = sums[changed] / weights[changed, None] if mode == "mean" else sums[changed]
    rows = (1.0 - alpha) * fused[changed] + alpha * added
    if renormalize:
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        rows = rows / np.where(norms > 0, norms, 1.0)
    fused[changed] = rows
    return fused


def augment_embeddings(config: AugmentConfig, encoder=None) -> Path:
    """Write OUT: the embeddings of `config.embeddings` with their generated queries folded in."""
    from xretrieve.model import BiEncoder, check_compatible

    source = Embeddings(config.embeddings)
    out = Path(config.out)
    if out.resolve() == source.folder.resolve():
        raise UserError(f"--out {config.out}: must differ from --embeddings (the source stays as it is)")
    generated = Path(config.generated)
    if not generated.is_file():
        raise UserError(f"{generated}: no such file")
    # one pass over the file before the model loads: a bad line fails at once, and the bars get a total
    queries = sum(1 for _ in iter_generated(generated))
    if not queries:
        raise UserError(f"{generated}: no generated queries")
    source.verify()
    num_shards = len(source.shards)
    if config.shard is not None and config.shard[1] != num_shards:
        raise UserError(f"--shard {config.shard[0]}/{config.shard[1]}: {config.embeddings} has {num_shards} shards")
    if encoder is None:
        encoder = BiEncoder(config.model or source.manifest["model"]["name"], device=config.device)
    check_compatible(source.manifest["model"], encoder, config.embeddings)
    weights = dict(sorted((config.lang_weights or {}).items()))
    plan = {
        "embeddings_manifest_sha256": sha256_file(source.folder / "manifest.json"),
        "generated_sha256": sha256_file(generated),
        "alpha": config.alpha,
        "mode": config.mode,
        "lang_weights": weights,
        "renormalize": config.renormalize,
        "model": encoder.identity,
    }
    mine = [config.shard[0]] if config.shard else range(num_shards)
    known = {}
    for index in mine:
        known[index] = load_shard_record(out, index, plan)
        if known[index] is None:
            known[index] = _augment_shard(source, index, generated, queries, encoder, config, weights, plan, out)
    records = finished_records(out, num_shards, plan, known)
    if records is None:
        return out
    _finish(source, out, generated, config, weights, plan, records)
    return out


def _augment_shard(source, index, generated, queries, encoder, config, weights, plan, out) -> dict:
    from tqdm import tqdm

    name = shard_name(index)
    ids = source.ids(index)
    row_of = {doc_id: row for row, doc_id in enumerate(ids)}
    vectors = source.vectors(index)
    sums_path = out / f".{name}.sums.npy"
    out.mkdir(parents=True, exist_ok=True)
    sums = np.lib.format.open_memmap(sums_path, mode="w+", dtype=np.float32, shape=(len(ids), encoder.dim))
    totals = np.zeros(len(ids), np.float64)
    used: dict[str, int] = {}
    seen = matched = 0
    texts: list[str] = []
    rows: list[int] = []
    scale: list[float] = []

    def flush() -> None:
        if texts:
            encoded = encoder.encode_queries(texts, batch_size=config.batch_size)
            np.add.at(sums, np.asarray(rows), encoded * np.asarray(scale, np.float32)[:, None])
            np.add.at(totals, np.asarray(rows), np.asarray(scale))
            texts.clear()
            rows.clear()
            scale.clear()

    desc = f"augment {name} ({index + 1}/{len(source.shards)})"
    for query in tqdm(iter_generated(generated), desc=desc, total=queries, unit="query", disable=not config.progress):
        seen += 1
        row = row_of.get(query.docid)
        weight = weights.get(query.lang, 1.0)
        if row is None:
            continue
        matched += 1
        if weight == 0:
            continue
        texts.append(query.text)
        rows.append(row)
        scale.append(weight)
        used[query.lang] = used.get(query.lang, 0) + 1
        if len(texts) >= _CHUNK_BATCHES * config.batch_size:
            flush()
    flush()
    _write_fused(out / f"{name}.npy", vectors, sums, totals, config)
    sums_path.unlink()
    return record_shard(
        out,
        index,
        ids,
        source.langs(index),
        plan,
        queries_seen=seen,
        queries_matched=matched,
        queries_used=dict(sorted(used.items())),
        passages_augmented=int((totals > 0).sum()),
    )


def _write_fused(path: Path, vectors, sums, totals, config: AugmentConfig) -> None:
    """Each passage's vector fused with its queries' weighted sum, written in blocks of rows (atomically)."""
    with atomic_target(path) as tmp:
        result = np.lib.format.open_memmap(tmp, mode="w+", dtype=vectors.dtype, shape=vectors.shape)
        for start in range(0, len(vectors), _WRITE_ROWS):
            part = slice(start, start + _WRITE_ROWS)
            fused = fuse(vectors[part], sums[part], totals[part], config.alpha, config.mode, config.renormalize)
            result[part] = fused.astype(vectors.dtype)
        result.flush()
        del result


def _finish(source, out: Path, generated: Path, config: AugmentConfig, weights, plan: dict, records) -> None:
    used: dict[str, int] = {}
    for record in records:
        for lang, count in record["queries_used"].items():
            used[lang] = used.get(lang, 0) + count
    augmented = sum(r["passages_augmented"] for r in records)
    if not any(r["queries_matched"] for r in records):
        raise UserError(f"{generated}: no generated query names a passage of {config.embeddings} (wrong file?)")
    body = manifest_body(source.manifest)
    body["normalized"] = bool(source.manifest.get("normalized")) and (config.renormalize or augmented == 0)
    body["shards"] = shard_entries(records)
    body["parents"] = [
        {"embeddings": str(source.folder.resolve()), "manifest_sha256": plan["embeddings_manifest_sha256"]},
        {"generated": str(generated.resolve()), "sha256": plan["generated_sha256"]},
    ]
    body["augment"] = {
        "alpha": config.alpha,
        "mode": config.mode,
        "lang_weights": weights,
        "renormalize": config.renormalize,
        "queries_seen": records[0]["queries_seen"],
        "queries_used": used,
        "queries_not_used": records[0]["queries_seen"] - sum(used.values()),  # unknown docid or weight 0
        "passages_augmented": augmented,
    }
    write_manifest(out, EMBEDDINGS_KIND, body)
