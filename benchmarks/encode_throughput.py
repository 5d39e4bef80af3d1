"""Encode throughput: `xretrieve encode` against plain `SentenceTransformer.encode`, same model, same passages.

Both run in one process, alternating, best of `--repeats`; the output records the machine, the ratio and
how close the two sets of embeddings are. Usage:

    .venv/bin/python benchmarks/encode_throughput.py [--model M] [--passages N] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xretrieve.config import EncodeConfig
from xretrieve.demo import demo_data
from xretrieve.encode import Embeddings, encode_corpus, passage_text
from xretrieve.formats import read_corpus
from xretrieve.model import BiEncoder

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the embedded multilingual-e5-small")
    parser.add_argument("--passages", type=int, default=504, help="passages of the demo corpus (repeated if more)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    docs = read_corpus(demo_data() / "corpus.jsonl")
    docs = [docs[i % len(docs)] for i in range(args.passages)]
    texts = [passage_text(d) for d in docs]
    encoder = BiEncoder(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        corpus.write_text(
            "".join(
                json.dumps({"id": f"p{i}", "text": d.text, "lang": d.lang}, ensure_ascii=False) + "\n"
                for i, d in enumerate(docs)
            ),
            encoding="utf-8",
        )
        timings: dict[str, list[float]] = {"sentence_transformers": [], "xretrieve": []}
        for repeat in range(args.repeats):
            start = time.perf_counter()
            reference = encoder.model.encode(
                texts, prompt_name=encoder.passage_prompt_name, batch_size=args.batch_size, convert_to_numpy=True
            )
            timings["sentence_transformers"].append(time.perf_counter() - start)

            out = Path(tmp) / f"emb{repeat}"
            start = time.perf_counter()
            encode_corpus(
                EncodeConfig(corpus=str(corpus), out=str(out), batch_size=args.batch_size, progress=False),
                encoder=encoder,
            )
            timings["xretrieve"].append(time.perf_counter() - start)
        ours = np.asarray(Embeddings(out).vectors(0), np.float32)

    cosines = np.sum(ours * reference, axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    rate = {name: args.passages / min(times) for name, times in timings.items()}
    result = {
        "benchmark": "encode_throughput",
        "model": encoder.identity["name"],
        "passages": args.passages,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "passages_per_s": {k: round(v, 1) for k, v in rate.items()},
        "ratio_xretrieve_over_st": round(rate["xretrieve"] / rate["sentence_transformers"], 3),
        "seconds": {k: [round(t, 2) for t in v] for k, v in timings.items()},
        "min_cosine_to_reference": round(float(cosines.min()), 6),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
        },
        "note": "xretrieve time includes reading the corpus, checksums and atomic shard writes",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "encode_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
