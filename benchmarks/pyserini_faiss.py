"""xretrieve's Searcher against pyserini's FaissSearcher: the same FAISS index, the same query vectors.

Both search pre-encoded query vectors (pyserini's `search`/`batch_search` accept numpy arrays), so only the
search layers are compared: FAISS itself plus each tool's Python around it. The index is built once by
`xretrieve index` (its default factory, then Flat) from the 1 M synthetic vectors of `index_curve.py`; the
same shard file, with the search settings from xretrieve's manifest applied, is written as pyserini's
`index` + `docid` folder. One FAISS thread on both sides; the two alternate, best of --repeats. Usage:

    .venv/bin/python benchmarks/index_curve.py --work /work/tmp-index-curve   # first: vectors + ground truth
    .venv/bin/python benchmarks/pyserini_faiss.py --work /work/tmp-index-curve
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from xretrieve.config import IndexConfig
from xretrieve.encode import EMBEDDINGS_KIND
from xretrieve.formats import write_lines
from xretrieve.index import build_index
from xretrieve.manifest import checksums, read_manifest, write_manifest
from xretrieve.search import Searcher

RESULTS = Path(__file__).parent / "results"
K = 10
IDENTITY = {"name": "synthetic (index_curve.py)", "fingerprint": None, "dim": 384, "normalized": True,
            "query_prompt": "", "passage_prompt": ""}  # fmt: skip


class PreEncoded:
    """Stands for the query encoder: queries arrive as vectors, so the Searcher never encodes."""

    name, fingerprint, dim = IDENTITY["name"], None, IDENTITY["dim"]


def embeddings_folder(work: Path) -> Path:
    """The synthetic base as an xretrieve embeddings folder (cached)."""
    folder = work / "emb"
    if (folder / "manifest.json").is_file():
        return folder
    folder.mkdir(exist_ok=True)
    base = np.load(work / "base.npy", mmap_mode="r")
    target = folder / "shard-00000.npy"
    if not target.exists():
        os.link(work / "base.npy", target)  # same bytes, no 1.5 GB copy
    write_lines(folder / "shard-00000.ids.txt", (f"d{i:07d}" for i in range(len(base))))
    write_lines(folder / "shard-00000.langs.txt", ("und" for _ in range(len(base))))
    files = checksums(folder, ["shard-00000.npy", "shard-00000.ids.txt", "shard-00000.langs.txt"])
    write_manifest(
        folder,
        EMBEDDINGS_KIND,
        {"model": IDENTITY, "dim": IDENTITY["dim"], "dtype": "float32", "normalized": True, "prompt": "",
         "rows": len(base), "shards": [{"name": "shard-00000", "rows": len(base), "files": files}], "parents": []},
    )  # fmt: skip
    return folder


def pyserini_folder(index_dir: Path, out: Path) -> Path:
    """pyserini's layout (`index`, `docid`) holding xretrieve's shard with the manifest's search settings."""
    import faiss

    if (out / "docid").is_file():
        return out
    out.mkdir(exist_ok=True)
    manifest = read_manifest(index_dir, "index")
    index = faiss.read_index(str(index_dir / "shard-00000.faiss"))
    if manifest["search_params"]:
        faiss.ParameterSpace().set_index_parameters(index, manifest["search_params"])
    faiss.write_index(index, str(out / "index"))  # nprobe, efSearch and k_factor are stored in the file
    (out / "docid").write_text((index_dir / "shard-00000.docids.txt").read_text())
    return out


def start_pyserini():
    """Import pyserini's FaissSearcher; it imports its Lucene side too, which needs Java 21+ and an OpenAI key."""
    from xretrieve.evaluation.bm25 import find_java

    home = find_java()
    os.environ.update(JAVA_HOME=home, PATH=f"{home}/bin{os.pathsep}{os.environ.get('PATH', '')}")
    os.environ.setdefault("OPENAI_API_KEY", "unused")  # pyserini builds a client at import; nothing is sent
    from pyserini.search.faiss import FaissSearcher

    return FaissSearcher


def best(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def compare(name: str, index_dir: Path, work: Path, queries: np.ndarray, truth: np.ndarray, args) -> dict:
    import faiss

    FaissSearcher = start_pyserini()
    start = time.perf_counter()
    xr = Searcher(index_dir, encoder=PreEncoded())
    xr_load = time.perf_counter() - start
    start = time.perf_counter()
    ps = FaissSearcher(str(pyserini_folder(index_dir, work / f"pyserini-{name}")), query_encoder=None)
    ps_load = time.perf_counter() - start
    qids = [f"q{i}" for i in range(len(queries))]
    single = min(args.single, len(queries))

    def xr_batch():
        return [[h.docid for h in hits] for hits in xr.search_vectors(queries, k=K)]

    def ps_batch():
        out = ps.batch_search(queries, qids, k=K, threads=1)
        return [[h.docid for h in out[q]] for q in qids]

    def xr_single():
        return [[h.docid for h in xr.search_vectors(queries[i : i + 1], k=K)[0]] for i in range(single)]

    def ps_single():
        return [[h.docid for h in ps.search(queries[i : i + 1], k=K, threads=1)] for i in range(single)]

    faiss.omp_set_num_threads(1)
    timings: dict[str, list[float]] = {key: [] for key in ("xr_batch", "ps_batch", "xr_single", "ps_single")}
    results = {}
    for _ in range(args.repeats):  # alternate, so a burst of load elsewhere hits both sides
        for key, fn in (("xr_batch", xr_batch), ("ps_batch", ps_batch), ("xr_single", xr_single),
                        ("ps_single", ps_single)):  # fmt: skip
            seconds, results[key] = best(fn, 1)
            timings[key].append(seconds)
            faiss.omp_set_num_threads(1)  # pyserini sets the thread count on every call; keep ours the same
    truth_ids = [{f"d{i:07d}" for i in row} for row in truth]
    same = sum(a == b for a, b in zip(results["xr_batch"], results["ps_batch"], strict=True))
    same_single = sum(a == b for a, b in zip(results["xr_single"], results["ps_single"], strict=True))
    row = {
        "index": name,
        "factory": xr.manifest["factory"],
        "search_params": xr.manifest["search_params"],
        "queries_batch": len(queries),
        "queries_single": single,
        "load_s": {"xretrieve": xr_load, "pyserini": ps_load},
        "recall_at_10": {
            tool: float(np.mean([len(set(r) & t) / K for r, t in zip(results[key], truth_ids, strict=False)]))
            for tool, key in (("xretrieve", "xr_batch"), ("pyserini", "ps_batch"))
        },
        "identical_top10_batch": same,
        "identical_top10_single": same_single,
    }
    for mode, n in (("batch", len(queries)), ("single", single)):
        xr_s, ps_s = min(timings[f"xr_{mode}"]), min(timings[f"ps_{mode}"])
        row[mode] = {
            "xretrieve_total_s": xr_s,
            "pyserini_total_s": ps_s,
            "xretrieve_ms_per_query": 1000 * xr_s / n,
            "pyserini_ms_per_query": 1000 * ps_s / n,
            "pyserini_over_xretrieve": ps_s / xr_s,
        }
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="the --work folder of index_curve.py")
    parser.add_argument("--queries", type=int, default=2000, help="the queries with ground truth in --work")
    parser.add_argument("--train-size", type=int, default=IndexConfig.train_size, help="IVF training sample")
    parser.add_argument("--single", type=int, default=1000, help="queries timed one per call")
    parser.add_argument("--flat-queries", type=int, default=200, help="exact search on 1 M rows runs at ~20 QPS")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "pyserini_faiss"))
    args = parser.parse_args()
    import faiss

    work = Path(args.work)
    queries, truth = np.load(work / "queries.npy")[: args.queries], np.load(work / "gt.npy")[: args.queries]
    emb = embeddings_folder(work)
    rows = []
    for name, factory in (("default", None), ("flat", "Flat")):
        index_dir = work / f"xr-{name}"
        start = time.perf_counter()
        faiss.omp_set_num_threads(2)
        config = IndexConfig(out=str(index_dir), embeddings=str(emb), train_size=args.train_size, progress=False)
        if factory:
            config.factory = factory
        build_index(config)
        print(f"{name}: xretrieve index built in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        n = args.flat_queries if name == "flat" else len(queries)
        rows.append(compare(name, index_dir, work, queries[:n], truth[:n], args))
    from importlib.metadata import version

    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "faiss": faiss.__version__,
            "pyserini": version("pyserini"),
            "load_average_at_end": os.getloadavg(),
            "note": "2-core machine shared with other jobs running in parallel; one FAISS thread on both sides",
        },
        "data": "1 M x 384 clustered synthetic unit vectors and held-out queries from benchmarks/index_curve.py",
        "repeats": args.repeats,
        "train_size": args.train_size,
        "results": rows,
    }
    Path(args.out + ".json").write_text(json.dumps(report, indent=1) + "\n")
    Path(args.out + ".md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# pyserini FaissSearcher against xretrieve Searcher: same index, same query vectors",
        "",
        f"{report['data']}; the IVF index trained on {report['train_size']:,} of them. "
        f"pyserini {m['pyserini']}, faiss {m['faiss']}, {m['cpus']} cores; {m['note']}; load "
        f"average at the end {', '.join(f'{x:.1f}' for x in m['load_average_at_end'])}. Best of "
        f"{report['repeats']}, alternating. Batch: all queries in one call (`batch_search` / `search_vectors`); "
        "single: one query per call (`search` / `search_vectors`).",
        "",
        "| index | search params | mode | queries | xretrieve total s | pyserini total s | xretrieve ms/query | "
        "pyserini ms/query | pyserini / xretrieve | identical top-10 |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["results"]:
        for mode in ("batch", "single"):
            t = row[mode]
            same = row[f"identical_top10_{mode}"]
            n = row[f"queries_{mode}"]
            lines.append(
                f"| {row['factory']} | {row['search_params'] or '-'} | {mode} | {n:,} | {t['xretrieve_total_s']:.2f} | "
                f"{t['pyserini_total_s']:.2f} | {t['xretrieve_ms_per_query']:.3f} | {t['pyserini_ms_per_query']:.3f} | "
                f"{t['pyserini_over_xretrieve']:.2f}x | {same:,}/{n:,} |"
            )
    lines += ["", "| index | recall@10 xretrieve | recall@10 pyserini | load s xretrieve | load s pyserini |",
              "| --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for row in report["results"]:
        lines.append(
            f"| {row['factory']} | {row['recall_at_10']['xretrieve']:.3f} | {row['recall_at_10']['pyserini']:.3f} | "
            f"{row['load_s']['xretrieve']:.1f} | {row['load_s']['pyserini']:.1f} |"
        )
    lines += ["", "xretrieve's load time includes verifying the sha256 of every file the manifest lists."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
