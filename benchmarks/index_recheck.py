"""Re-measure the IVF candidates that reach recall 0.95 side by side, interleaved, in one process.

index_curve.py measures each candidate in its own subprocess, minutes apart; on a shared machine the load
changes between them, so its QPS are not comparable across candidates. This runs the close candidates in
turns (best of 2) on the first 1,000 queries, one thread. Usage (after index_curve.py):

    .venv/bin/python benchmarks/index_recheck.py --work /tmp/index-curve
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
FACTORIES = ("IVF4096,SQ8", "IVF4096,SQfp16", "IVF4096,Flat")


def main() -> None:
    import faiss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True)
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    work = Path(args.work)
    faiss.omp_set_num_threads(1)
    queries, truth = np.load(work / "queries.npy")[: args.queries], np.load(work / "gt.npy")[: args.queries]
    slug = lambda f: "".join(c if c.isalnum() else "_" for c in f)  # noqa: E731 (as in index_curve.py)
    indexes = {f: faiss.read_index(str(work / f"{slug(f)}.faiss")) for f in FACTORIES}
    out: dict[str, dict] = {}
    for _ in range(2):
        for nprobe in (48, 64):
            for factory, index in indexes.items():
                index.nprobe = nprobe
                start = time.perf_counter()
                _, ids = index.search(queries, 10)
                qps = len(queries) / (time.perf_counter() - start)
                recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)])
                key = f"{factory} nprobe={nprobe}"
                out[key] = {"recall_at_10": float(recall), "qps_batch": max(qps, out.get(key, {}).get("qps_batch", 0))}
    report = {"load_average_at_end": os.getloadavg(), "queries": len(queries), "results": out}
    (RESULTS / "index_recheck.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
