"""Query-time cost of translate-test in the server: `xretrieve serve` with and without it, side by side.

Both servers serve one index (the demo corpus, 9 languages, embedded multilingual-e5-small, built with
`--translate apertium`) as subprocesses on 127.0.0.1; one of them runs with `--no-translate`. Single queries
(the demo's 126, each with its `query_lang`) go one at a time, alternating between the two servers, so load
drift hits both alike. Reported: latency percentiles per server, and the added p50 (and the median of the
per-query differences) over all queries and over the queries that were translated (en, es, fr here: the
Apertium pairs reach en, es and fr documents). Usage:

    .venv/bin/python benchmarks/translate_latency.py [--rounds 3] [--work runs/translate-latency]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import numpy as np

from xretrieve.config import IndexConfig
from xretrieve.formats import read_queries
from xretrieve.index import build_index
from xretrieve.manifest import atomic_write_json, atomic_write_text

HERE = Path(__file__).parent
DEMO = HERE.parent / "xretrieve" / "data" / "demo"
TRANSLATED = {"en", "es", "fr"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(index: Path, port: int, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "xretrieve", "serve", "--index", str(index), "--port", str(port), *extra]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(port: int, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server on port {port} never became ready")


def ask(port: int, text: str, lang: str) -> float:
    """One search on a fresh connection (an idle kept-alive one may be closed while the other server works)."""
    body = json.dumps({"query": text, "query_lang": lang, "k": 10, "fields": []})
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    connection.request("POST", "/v1/search", body, {"content-type": "application/json"})
    response = connection.getresponse()
    response.read()
    connection.close()
    if response.status != 200:
        raise SystemExit(f"search answered {response.status}")
    return (time.perf_counter() - started) * 1000


def percentiles(values: list[float]) -> dict:
    return {f"p{q}": round(float(np.percentile(values, q)), 1) for q in (50, 90, 99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", default="runs/translate-latency")
    parser.add_argument("--out", default=str(HERE / "results" / "translate_latency"))
    args = parser.parse_args()
    index = Path(args.work) / "demo-translate"
    build_index(IndexConfig(out=str(index), corpus=str(DEMO / "corpus.jsonl"), translate="apertium", progress=False))
    queries = read_queries(DEMO / "queries.jsonl")
    ports = {"translate": free_port(), "plain": free_port()}
    servers = [start(index, ports["translate"]), start(index, ports["plain"], "--no-translate")]
    try:
        for port in ports.values():
            wait_ready(port)
        for q in queries[:20]:  # warm-up: pipelines, lingua, torch
            for port in ports.values():
                ask(port, q.text, q.lang)
        times: dict[str, list[tuple[str, float]]] = {"translate": [], "plain": []}
        load = os.getloadavg()[0]
        for round_ in range(args.rounds):
            for i, q in enumerate(queries):
                order = ("translate", "plain") if (i + round_) % 2 == 0 else ("plain", "translate")
                for name in order:
                    times[name].append((q.lang, ask(ports[name], q.text, q.lang)))
    finally:
        for server in servers:
            server.terminate()
            server.wait()

    def report(selected: set[str] | None) -> dict:
        pick = {n: [t for lang, t in v if selected is None or lang in selected] for n, v in times.items()}
        paired = [a - b for a, b in zip(pick["translate"], pick["plain"], strict=True)]
        return {
            "queries": len(pick["plain"]),
            "translate": percentiles(pick["translate"]),
            "plain": percentiles(pick["plain"]),
            "added_p50_ms": round(float(np.percentile(pick["translate"], 50) - np.percentile(pick["plain"], 50)), 1),
            "median_paired_difference_ms": round(median(paired), 1),
        }

    result = {
        "all queries": report(None),
        "translated queries (en, es, fr)": report(TRANSLATED),
        "rounds": args.rounds,
        "load_average_at_start": round(load, 2),
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
    }
    atomic_write_json(f"{args.out}.json", result)
    lines = [
        "# Translate-test latency in the server",
        "",
        f"Produced by `benchmarks/translate_latency.py --rounds {args.rounds}`: single queries, one at a time,",
        "alternating between `xretrieve serve` and `xretrieve serve --no-translate` on the same index (demo corpus,",
        f"embedded e5-small). Load average {result['load_average_at_start']} at start, "
        f"{result['load_average_at_end']} at the end; {result['machine']}.",
        "",
        "| queries | n | translate p50 / p90 / p99 ms | plain p50 / p90 / p99 ms | added p50 ms | median paired ms |",
        "|---|---:|---|---|---:|---:|",
    ]
    for name in ("all queries", "translated queries (en, es, fr)"):
        r = result[name]
        t, p = r["translate"], r["plain"]
        lines.append(
            f"| {name} | {r['queries']} | {t['p50']} / {t['p90']} / {t['p99']} | {p['p50']} / {p['p90']} / "
            f"{p['p99']} | {r['added_p50_ms']} | {r['median_paired_difference_ms']} |"
        )
    atomic_write_text(f"{args.out}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
