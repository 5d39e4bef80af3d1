"""Live updates: what `add`, `delete`, `serve --writable` and `compact` cost, side by side with their baselines.

1. CLI (real text, the embedded multilingual-e5-small): an index of the first 4,000 documents of mo-xling,
   then `xretrieve add` of the other 1,000 and `xretrieve delete` of 500. Baseline: `xretrieve index` of the
   resulting corpus, which is what getting the same documents in took before. The top-10 of the mo-xling
   test queries on both are compared.
2. HTTP: `serve --writable` on a copy of the 4,000-document index; the 1,000 documents POSTed to
   /v1/documents in batches of 32, one after the other (documents per second, acknowledgement latency).
3. Search latency while writes stream in: two clients send single mo-xling queries for `--seconds` (after
   half as long unmeasured, to warm up), against the index served read-only (`serve`), then against it served
   `--writable` while a third client upserts batches of 16 documents back to back. p50 and p99 of each, and
   their ratio.
4. Compaction at 100,000 rows (vectors from a seeded stand-in encoder, 384 dimensions in 200 clusters: the
   cost is FAISS's and the document store's, not the model's): the auto factory (IVF1024,SQfp16), then 2,500
   documents added, 2,500 replaced, 2,500 deleted; `compact` timed against a fresh build of the resulting
   corpus (baseline), and recall@10 against exact search over it before compaction, after, and for the
   fresh build.

Usage:
    .venv/bin/python benchmarks/live_updates.py [--seconds 20] [--work runs/live-updates]
        [--parts cli,http,latency,compact]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from xretrieve.compact import compact
from xretrieve.config import CompactConfig, IndexConfig
from xretrieve.formats import Document, read_corpus, read_queries
from xretrieve.index import build_index
from xretrieve.live import WriterLock
from xretrieve.manifest import atomic_write_json, atomic_write_text
from xretrieve.search import Searcher
from xretrieve.update import LiveWriter

HERE = Path(__file__).parent
MO = HERE / "data" / "mo-xling"
BASE_DOCS, NEW_DOCS, DELETED = 4000, 1000, 500


def xretrieve(*args: str) -> float:
    """Run an xretrieve verb; its wall seconds."""
    started = time.perf_counter()
    quiet = [] if args[0] == "delete" else ["--quiet"]  # delete shows no progress
    subprocess.run([sys.executable, "-m", "xretrieve", *args, *quiet], check=True)
    return time.perf_counter() - started


def write_corpus(path: Path, docs: list[Document]) -> Path:
    rows = (json.dumps({"id": d.id, "text": d.text, "lang": d.lang}, ensure_ascii=False) for d in docs)
    path.write_text("".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def top10(index: Path, queries: Path, out: Path) -> dict[str, list[str]]:
    xretrieve("search", "--index", str(index), "--queries", str(queries), "--out", str(out), "--k", "10")
    runs: dict[str, list[str]] = {}
    for line in out.read_text().splitlines():
        qid, _, docid, *_ = line.split()
        runs.setdefault(qid, []).append(docid)
    return runs


def part_cli(work: Path) -> dict:
    docs = read_corpus(MO / "corpus.jsonl")
    base, new = docs[:BASE_DOCS], docs[BASE_DOCS : BASE_DOCS + NEW_DOCS]
    gone = [d.id for d in base[::8][:DELETED]]
    write_corpus(work / "base.jsonl", base)
    write_corpus(work / "new.jsonl", new)
    (work / "gone.txt").write_text("\n".join(gone) + "\n")
    final = [d for d in base if d.id not in set(gone)] + new
    write_corpus(work / "final.jsonl", final)
    live = work / "live"
    build_seconds = xretrieve("index", "--corpus", str(work / "base.jsonl"), "--out", str(live))
    shutil.copytree(live, work / "served")  # the HTTP and latency parts start from the same base
    add_seconds = xretrieve("add", "--index", str(live), "--corpus", str(work / "new.jsonl"))
    delete_seconds = xretrieve("delete", "--index", str(live), "--ids-file", str(work / "gone.txt"))
    rebuild_seconds = xretrieve("index", "--corpus", str(work / "final.jsonl"), "--out", str(work / "rebuilt"))
    queries = MO / "queries-test.jsonl"
    ours, theirs = top10(live, queries, work / "live.trec"), top10(work / "rebuilt", queries, work / "rebuilt.trec")
    same = sum(ours[q] == theirs[q] for q in theirs) / len(theirs)
    overlap = np.mean([len(set(ours[q]) & set(theirs[q])) / 10 for q in theirs])
    return {
        "base_build_s": round(build_seconds, 1),
        "add_s": round(add_seconds, 1),
        "add_docs_per_s": round(NEW_DOCS / add_seconds, 1),
        "delete_s": round(delete_seconds, 2),
        "rebuild_s": round(rebuild_seconds, 1),
        "rebuild_over_add": round(rebuild_seconds / add_seconds, 2),
        "same_top10_as_rebuild": round(same, 3),
        "top10_overlap_with_rebuild": round(float(overlap), 4),
        "queries": len(theirs),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, index: Path, *flags: str):
        self.port = free_port()
        command = [sys.executable, "-m", "xretrieve", "serve", "--index", str(index), "--port", str(self.port), *flags]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def batches(docs: list[Document], size: int) -> list[list[dict]]:
    rows = [{"id": d.id, "text": d.text, "lang": d.lang} for d in docs]
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def part_http(work: Path) -> dict:
    new = read_corpus(work / "new.jsonl")
    index = work / "http"
    shutil.copytree(work / "served", index)
    server = Server(index, "--writable")
    try:
        acks = []
        with httpx.Client(base_url=server.url, timeout=120) as client:
            started = time.perf_counter()
            for batch in batches(new, 32):
                sent = time.perf_counter()
                response = client.post("/v1/documents", json={"documents": batch})
                response.raise_for_status()
                acks.append(time.perf_counter() - sent)
            seconds = time.perf_counter() - started
            info = client.get("/v1/info").json()
    finally:
        server.stop()
    return {
        "docs": len(new),
        "batch": 32,
        "seconds": round(seconds, 1),
        "docs_per_s": round(len(new) / seconds, 1),
        "ack_p50_ms": round(1000 * float(np.percentile(acks, 50)), 1),
        "ack_p99_ms": round(1000 * float(np.percentile(acks, 99)), 1),
        "pending_after": info.get("live", {}).get("pending"),
    }


def search_latency(url: str, queries: list[str], seconds: float, clients: int = 2) -> dict:
    latencies: list[float] = []
    errors = [0]
    stop = time.monotonic() + seconds

    def client(offset: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            i = offset
            while time.monotonic() < stop:
                sent = time.perf_counter()
                response = http.post("/v1/search", json={"query": queries[i % len(queries)], "k": 10})
                latencies.append(time.perf_counter() - sent)
                errors[0] += response.status_code != 200
                i += 7

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "searches": len(latencies),
        "errors": errors[0],
        "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1),
    }


def part_latency(work: Path, seconds: float) -> dict:
    queries = [q.text for q in read_queries(MO / "queries-test.jsonl")]
    new = read_corpus(work / "new.jsonl")
    index = work / "latency"
    shutil.copytree(work / "served", index)
    server = Server(index)
    try:
        search_latency(server.url, queries, seconds / 2)  # warm-up (torch meets each input shape once), not counted
        read_only = search_latency(server.url, queries, seconds)
    finally:
        server.stop()
    server = Server(index, "--writable")
    written = [0]
    stop = threading.Event()

    def writer() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            for batch in (b for _ in range(1000) for b in batches(new, 16)):
                if stop.is_set():
                    return
                http.post("/v1/documents", json={"documents": batch}).raise_for_status()
                written[0] += len(batch)

    try:
        thread = threading.Thread(target=writer)
        thread.start()
        search_latency(server.url, queries, seconds / 2)  # warm-up, writes going: not counted
        written[0] = 0
        while_writing = search_latency(server.url, queries, seconds)
        stop.set()
        thread.join()
    finally:
        server.stop()
    return {
        "seconds": seconds,
        "read_only": read_only,
        "while_writing": while_writing,
        "docs_written": written[0],
        "p50_ratio": round(while_writing["p50_ms"] / read_only["p50_ms"], 2),
        "p99_ratio": round(while_writing["p99_ms"] / read_only["p99_ms"], 2),
    }


class SeededEncoder:
    """Vectors seeded by each text's hash, 200 clusters in 384 dimensions: no model time in part 4."""

    def __init__(self, dim: int = 384, clusters: int = 200):
        self.dim, self.name, self.fingerprint = dim, "seeded-stand-in", "0"
        self.centers = np.random.default_rng(0).normal(size=(clusters, dim)).astype(np.float32)
        self.identity = {
            "name": "seeded-stand-in",
            "fingerprint": "0",
            "dim": dim,
            "normalized": True,
            "query_prompt": "",
            "passage_prompt": "",
        }
        self.max_seq_length, self.passage_room = 512, 510

    def encode_passages(self, texts, batch_size=32, progress=False):
        rows = []
        for text in texts:
            rng = np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little"))
            v = self.centers[rng.integers(len(self.centers))] + 0.5 * rng.normal(size=self.dim)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)

    encode_queries = encode_passages

    def token_lengths(self, texts):
        return [len(t.split()) for t in texts]


def recall_at_10(searcher: Searcher, queries: np.ndarray, docs: dict[str, np.ndarray]) -> float:
    ids = list(docs)
    matrix = np.stack([docs[i] for i in ids])
    exact = np.argsort(-(queries @ matrix.T), axis=1)[:, :10]
    hits = searcher.search_vectors(queries, k=10)
    found = [len({h.docid for h in got} & {ids[j] for j in want}) for got, want in zip(hits, exact, strict=True)]
    return float(np.mean(found)) / 10


def part_compact(work: Path, rows: int = 100_000, changed: int = 2500) -> dict:
    encoder = SeededEncoder()
    base = [Document(f"d{i}", f"passage {i}", "", "en") for i in range(rows)]
    corpus = write_corpus(work / "synthetic.jsonl", base)
    out = work / "synthetic-index"
    started = time.perf_counter()
    build_index(IndexConfig(out=str(out), corpus=str(corpus), progress=False), encoder)
    base_build = time.perf_counter() - started
    current = {d.id: d for d in base}
    added = [Document(f"n{i}", f"new passage {i}", "", "en") for i in range(changed)]
    replaced = [Document(f"d{i}", f"replaced passage {i}", "", "en") for i in range(0, rows, rows // changed)]
    gone = [f"d{i}" for i in range(1, rows, rows // changed)]
    with WriterLock(out, "benchmark") as lock:
        writer = LiveWriter(Searcher(out, encoder=encoder), lock)
        for i in range(0, changed, 500):
            writer.upsert(added[i : i + 500])
            writer.upsert(replaced[i : i + 500])
        writer.delete(gone)
        writer.close()
    current.update({d.id: d for d in added + replaced})
    for docid in gone:
        del current[docid]
    vectors = dict(zip(current, encoder.encode_passages([d.text for d in current.values()]), strict=True))
    queries = encoder.encode_queries([f"query {i}" for i in range(300)])
    before = recall_at_10(Searcher(out, encoder=encoder), queries, vectors)
    started = time.perf_counter()
    compact(CompactConfig(index=str(out), progress=False))
    compact_seconds = time.perf_counter() - started
    after = recall_at_10(Searcher(out, encoder=encoder), queries, vectors)
    fresh_corpus = write_corpus(work / "synthetic-final.jsonl", list(current.values()))
    started = time.perf_counter()
    build_index(IndexConfig(out=str(work / "synthetic-fresh"), corpus=str(fresh_corpus), progress=False), encoder)
    fresh_seconds = time.perf_counter() - started
    fresh = recall_at_10(Searcher(work / "synthetic-fresh", encoder=encoder), queries, vectors)
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "rows": rows,
        "factory": manifest["factory"],
        "changes": {"added": changed, "replaced": len(replaced), "deleted": len(gone)},
        "base_build_s": round(base_build, 1),
        "compact_s": round(compact_seconds, 1),
        "fresh_build_s": round(fresh_seconds, 1),
        "fresh_over_compact": round(fresh_seconds / compact_seconds, 2),
        "recall_at_10": {
            "before_compact": round(before, 4),
            "after_compact": round(after, 4),
            "fresh": round(fresh, 4),
        },
    }


def render(result: dict) -> str:
    lines = ["# Live updates (benchmarks/live_updates.py)", "", f"Machine: {result['machine']}", ""]
    if "cli" in result:
        c = result["cli"]
        lines += [
            "## CLI (mo-xling, embedded multilingual-e5-small)",
            "",
            "| step | seconds | |",
            "| --- | ---: | --- |",
            f"| index 4,000 documents (base) | {c['base_build_s']} | |",
            f"| add 1,000 | {c['add_s']} | {c['add_docs_per_s']} documents/s, model load included |",
            f"| delete 500 | {c['delete_s']} | |",
            f"| baseline: index the resulting 4,500 | {c['rebuild_s']} | {c['rebuild_over_add']}x the add |",
            "",
            f"Top-10 of the {c['queries']} mo-xling test queries: identical to the rebuilt index's for "
            f"{c['same_top10_as_rebuild']:.1%} of queries, overlap {c['top10_overlap_with_rebuild']:.2%}.",
            "",
        ]
    if "http" in result:
        h = result["http"]
        lines += [
            "## HTTP (`serve --writable`, POST /v1/documents)",
            "",
            f"{h['docs']} documents in batches of {h['batch']}: {h['seconds']} s, **{h['docs_per_s']} documents/s**; "
            f"acknowledgement p50 {h['ack_p50_ms']} ms, p99 {h['ack_p99_ms']} ms (encoded, logged, fsync'd).",
            "",
        ]
    if "latency" in result:
        t = result["latency"]
        ro, ww = t["read_only"], t["while_writing"]
        lines += [
            "## Search latency while writes stream in (2 search clients, 1 writer of 16-document batches)",
            "",
            "| server | searches | errors | p50 ms | p99 ms |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| read-only (`serve`) | {ro['searches']} | {ro['errors']} | {ro['p50_ms']} | {ro['p99_ms']} |",
            f"| `--writable`, writes streaming | {ww['searches']} | {ww['errors']} | {ww['p50_ms']} | {ww['p99_ms']} |",
            "",
            f"Ratio p50 {t['p50_ratio']}x, p99 {t['p99_ratio']}x; {t['docs_written']} documents written meanwhile.",
            "",
        ]
    if "compact" in result:
        k = result["compact"]
        r = k["recall_at_10"]
        lines += [
            f"## Compaction at {k['rows']:,} rows ({k['factory']}, seeded stand-in vectors)",
            "",
            f"Changes: {k['changes']}. `compact` {k['compact_s']} s; baseline, a fresh build of the resulting "
            f"corpus: {k['fresh_build_s']} s ({k['fresh_over_compact']}x).",
            "",
            "| recall@10 against exact search | |",
            "| --- | ---: |",
            f"| live, before compaction | {r['before_compact']} |",
            f"| after compaction | {r['after_compact']} |",
            f"| fresh build (IVF trained again) | {r['fresh']} |",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/live-updates")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--parts", default="cli,http,latency,compact")
    args = parser.parse_args()
    parts = args.parts.split(",")
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    result: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}
    if {"cli", "http", "latency"} & set(parts):
        result["cli"] = part_cli(work)  # the others start from its base index
    if "http" in parts:
        result["http"] = part_http(work)
    if "latency" in parts:
        result["latency"] = part_latency(work, args.seconds)
    if "compact" in parts:
        result["compact"] = part_compact(work)
    atomic_write_json(HERE / "results" / "live_updates.json", result)
    atomic_write_text(HERE / "results" / "live_updates.md", render(result) + "\n")
    print(render(result))


if __name__ == "__main__":
    main()
