"""Re-measure the candidates of index_curve.py that reach recall 0.95 in <= 1 GB, in turns, in one process.

index_curve.py measures each candidate in its own subprocess, minutes apart; on a shared machine the load
changes between them, so its QPS are not comparable across candidates. This runs the close candidates in
turns (best of --repeats) on the first 1,000 queries, one thread: all queries in one call (batch) and one
query per call (single). Usage (after index_curve.py):

    .venv/bin/python benchmarks/index_recheck.py --work /work/tmp-index-curve
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
# factory -> the lowest setting of index_curve.py's sweep that reaches recall@10 0.95
CANDIDATES = {
    "IVF4096,SQfp16": "nprobe=48",
    "IVF4096,SQ8": "nprobe=64",
    "IVF4096,PQ96x4fsr,Refine(SQfp16)": "nprobe=64,k_factor_rf=256",
    "HNSW32,SQ8": "efSearch=384",
}


def main() -> None:
    import faiss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--single", type=int, default=300, help="queries timed one per call")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    work = Path(args.work)
    faiss.omp_set_num_threads(1)
    queries, truth = np.load(work / "queries.npy")[: args.queries], np.load(work / "gt.npy")[: args.queries]
    slug = lambda f: "".join(c if c.isalnum() else "_" for c in f)  # noqa: E731 (as in index_curve.py)
    indexes = {f: faiss.read_index(str(work / f"{slug(f)}.faiss")) for f in CANDIDATES}
    for factory, index in indexes.items():
        faiss.ParameterSpace().set_index_parameters(index, CANDIDATES[factory])
    out: dict[str, dict] = {}
    load_at_start = os.getloadavg()
    for _ in range(args.repeats):
        for factory, index in indexes.items():
            start = time.perf_counter()
            _, ids = index.search(queries, 10)
            batch = len(queries) / (time.perf_counter() - start)
            start = time.perf_counter()
            for q in range(args.single):
                index.search(queries[q : q + 1], 10)
            single = args.single / (time.perf_counter() - start)
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)])
            key = f"{factory} {CANDIDATES[factory]}"
            best = out.get(key, {"qps_batch": 0, "qps_single": 0})
            out[key] = {
                "recall_at_10": float(recall),
                "qps_batch": max(batch, best["qps_batch"]),
                "qps_single": max(single, best["qps_single"]),
            }
    report = {
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "queries": len(queries),
        "single": args.single,
        "repeats": args.repeats,
        "results": out,
    }
    (RESULTS / "index_recheck.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
