"""The figures behind the README's capacity plan: encoding cost per passage, index bytes per vector.

1. Encoding: the embedded multilingual-e5-small on Wikipedia-length passages (consecutive Bible verses of
   the benchmark corpus joined to >= 100 words, as XOR-Retrieve's and MIRACL's 100-word passages), one
   torch thread, as one Ray encoder actor per CPU runs it.
2. Index memory: faiss's real serialized sizes at two small sizes per factory and dimension; the slope is
   bytes per vector, the intercept the fixed part (quantizer, codebooks), extrapolated with
   bytes(n) = fixed + per_vector * n and, for IVF, the fixed part rescaled to the nlist a big shard uses.
3. Per-row metadata a shard and the router keep in Python (docids, languages, the docid -> row map).

Then memory per shard, shards and nodes, and encoding hours for 18.2 M (XOR-Retrieve) and 106 M (MIRACL)
passages. Usage: .venv/bin/python benchmarks/capacity.py [--passages 96]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
CORPORA = {"XOR-Retrieve (en Wikipedia)": 18_200_000, "MIRACL (18 languages)": 106_000_000}
# factories at each dimension; PQ keeps d/8 bytes per vector (8 dims per byte), the usual IVF-PQ setting
FACTORIES = {384: ["Flat", "HNSW32", "IVF256,PQ48"], 768: ["Flat", "HNSW32", "IVF256,PQ96"]}
SHARD_ROWS = 2_000_000  # one shard: a unit of work, of recovery and of Serve placement
SHARD_NLIST = 4096  # IVF lists for a 2 M-vector shard (about 4 * sqrt(rows))
NODE_MEMORY_GB = 64  # a node: the device machines here have 128 GB, a common cloud node 64 GB
USABLE = 0.75  # of a node's memory for index shards; the rest for the OS, Ray and the query encoder
NODE_CPUS = 16


def passages(count: int) -> list[str]:
    rows = [json.loads(line) for line in open(ROOT / "data/bible-xling/corpus.jsonl", encoding="utf-8")]
    out, current = [], []
    for row in rows:
        current.append(row["text"])
        if sum(len(t.split()) for t in current) >= 100:
            out.append(" ".join(current))
            current = []
        if len(out) == count:
            break
    return out


def encoding_cost(count: int) -> dict:
    import torch

    from xretrieve.model import BiEncoder

    torch.set_num_threads(1)
    encoder = BiEncoder()
    texts = passages(count)
    tokens = encoder.token_lengths(texts)
    encoder.encode_passages(texts[:8], batch_size=8)  # warm-up
    best = math.inf
    for _ in range(2):
        start = time.perf_counter()
        encoder.encode_passages(texts, batch_size=32)
        best = min(best, time.perf_counter() - start)
    # A 768-d model of e5-base's shape (12 layers, 768 hidden, same vocabulary and passages) costs what its
    # shape costs, whatever its weights: time it against the 384-d model on the same batches.
    base_ratio = _forward_seconds(encoder, texts, hidden=768) / _forward_seconds(encoder, texts, hidden=None)
    return {
        "model": "multilingual-e5-small (embedded), 384-d",
        "passages": len(texts),
        "mean_tokens": float(np.mean(tokens)),
        "token_lengths": tokens,
        "torch_threads": 1,
        "seconds_per_passage_one_cpu": {"384": best / len(texts), "768": best / len(texts) * base_ratio},
        "768_over_384_forward_ratio": base_ratio,
    }


def _forward_seconds(encoder, texts: list[str], hidden: int | None) -> float:
    """Best of two: the transformer forward over `texts` in batches of 16, random weights if `hidden` is set."""
    import torch
    from transformers import AutoModel

    transformer = encoder.model[0].auto_model
    if hidden:
        config = transformer.config.__class__(
            **{
                **transformer.config.to_dict(),
                "hidden_size": hidden,
                "intermediate_size": 4 * hidden,
                "num_attention_heads": hidden // 64,
            }
        )
        transformer = AutoModel.from_config(config).eval()
    batches = [
        encoder.model.tokenizer(texts[i : i + 16], padding=True, truncation=True, max_length=512, return_tensors="pt")
        for i in range(0, len(texts), 16)
    ]
    best = math.inf
    with torch.inference_mode():
        transformer(**batches[0])
        for _ in range(2):
            start = time.perf_counter()
            for batch in batches:
                transformer(**batch)
            best = min(best, time.perf_counter() - start)
    return best


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(256, dim)).astype(np.float32)
    x = centers[rng.integers(256, size=n)] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def index_bytes(sizes: tuple[int, int]) -> list[dict]:
    import faiss

    from xretrieve.index import index_layers, make_index

    out = []
    for dim, factories in FACTORIES.items():
        data = clustered(max(sizes), dim)
        for factory in factories:
            measured = []
            for n in sizes:
                index = make_index(factory, dim)
                if not index.is_trained:
                    index.train(data[: min(n, 20_000)])
                index.add(data[:n])
                measured.append(len(faiss.serialize_index(index)))
            per_vector = (measured[1] - measured[0]) / (sizes[1] - sizes[0])
            fixed = measured[0] - per_vector * sizes[0]
            nlist = next((layer.nlist for layer in index_layers(index) if isinstance(layer, faiss.IndexIVF)), 0)
            # IVF's coarse centroids grow with nlist: rescale them to the nlist a 2 M shard uses
            fixed_at_shard = fixed + (SHARD_NLIST - nlist) * dim * 4 if nlist else fixed
            out.append(
                {
                    "dim": dim,
                    "factory": factory,
                    "serialized_bytes": dict(zip(map(str, sizes), measured, strict=True)),
                    "bytes_per_vector": per_vector,
                    "fixed_bytes": fixed,
                    "fixed_bytes_at_shard": fixed_at_shard,
                    "shard_factory": factory.replace(f"IVF{nlist},", f"IVF{SHARD_NLIST},") if nlist else factory,
                }
            )
    return out


def metadata_bytes(n: int = 200_000) -> dict:
    """Python memory per row: a shard's docids and languages; the router's docids (all shards) and
    docid -> row map (the document store's)."""
    tracemalloc.start()
    shard_ids = [f"{1_000_000 + i}#{i % 7}" for i in range(n)]  # MIRACL-style "docid#passage" ids
    langs = np.array(["sw"] * n, dtype=object)
    shard = tracemalloc.get_traced_memory()[0]
    rows = {docid: row for row, docid in enumerate(shard_ids)}
    router = tracemalloc.get_traced_memory()[0]  # the router reads every shard's ids, then maps them to rows
    tracemalloc.stop()
    del rows, langs
    return {"shard_bytes_per_row": shard / n, "router_bytes_per_row": router / n}


def plan(encoding: dict, indexes: list[dict], metadata: dict) -> list[dict]:
    rows = []
    for corpus, passages_total in CORPORA.items():
        shards = math.ceil(passages_total / SHARD_ROWS)
        for entry in indexes:
            shard_gb = (entry["fixed_bytes_at_shard"] + SHARD_ROWS * entry["bytes_per_vector"]) / 1e9
            shard_gb += SHARD_ROWS * metadata["shard_bytes_per_row"] / 1e9
            total_gb = shard_gb * shards
            rows.append(
                {
                    "corpus": corpus,
                    "passages": passages_total,
                    "dim": entry["dim"],
                    "factory": entry["shard_factory"],
                    "shards": shards,
                    "shard_gb": round(shard_gb, 2),
                    "total_gb": round(total_gb, 1),
                    "nodes": max(1, math.ceil(total_gb / (NODE_MEMORY_GB * USABLE))),
                    "router_gb": round(passages_total * metadata["router_bytes_per_row"] / 1e9, 1),
                }
            )
    return rows


def encoding_hours(encoding: dict) -> list[dict]:
    return [
        {
            "corpus": corpus,
            "passages": n,
            "dim": int(dim),
            "cpu_core_hours": round(n * seconds / 3600),
            f"hours_one_{NODE_CPUS}_cpu_node": round(n * seconds / 3600 / NODE_CPUS, 1),
        }
        for corpus, n in CORPORA.items()
        for dim, seconds in encoding["seconds_per_passage_one_cpu"].items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=96, help="Wikipedia-length passages to time")
    parser.add_argument("--sizes", default="10000,20000", help="two index sizes to take the slope from")
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    load = os.getloadavg()
    encoding = encoding_cost(args.passages)
    indexes = index_bytes(sizes)
    metadata = metadata_bytes()
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average_at_start": load},
        "assumptions": {
            "shard_rows": SHARD_ROWS,
            "shard_nlist": SHARD_NLIST,
            "node_memory_gb": NODE_MEMORY_GB,
            "usable_share": USABLE,
            "node_cpus": NODE_CPUS,
            "cpu_scaling": "one encoder actor per CPU, one torch thread each (linear in CPUs)",
        },
        "encoding": encoding,
        "index_bytes": indexes,
        "metadata": metadata,
        "plan": plan(encoding, indexes, metadata),
        "encoding_hours": encoding_hours(encoding),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "capacity.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
