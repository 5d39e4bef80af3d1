"""Server load: `xretrieve serve` (micro-batching) against a naive FastAPI server, under wrk, on loopback.

Both servers serve the same index (the demo corpus, embedded multilingual-e5-small) as subprocesses on
127.0.0.1. The naive one is what people hand-roll: a plain `def` endpoint that FastAPI runs in its
threadpool, one encode and one search per request. wrk POSTs the demo queries in turn at each concurrency;
the output records QPS, latency percentiles, errors, the ratio and the machine. Usage:

    .venv/bin/python benchmarks/server_load.py [--duration 15] [--concurrency 1,8,32]
        [--variant 'wait5=--batch-wait-ms 5'] [--variant-concurrency 8,32]

Needs `wrk` (Debian: `apt-get install -y wrk`). `--baseline-server --index DIR --port P` runs the naive
server itself (the benchmark starts it that way).

`--mixed` measures fairness instead (no wrk needed): one client sends batches of 64 queries of 2,000
characters back to back while 16 clients send short queries, each client with its own API key; it reports the
short queries' latency. `--before-root DIR` runs the same load first against the xretrieve checked out in
DIR (e.g. the commit before a change), one server at a time:

    .venv/bin/python benchmarks/server_load.py --mixed --duration 40 --before-root /path/to/old/checkout
"""

# No `from __future__ import annotations`: FastAPI must see the naive server's request model as a real class.
import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import re
import resource
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
DEMO = ROOT / "xretrieve" / "data" / "demo"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 180.0
K = 10
OTHER_LOAD_WARN = 0.25  # cores used by other processes during a run above which it is flagged

# wrk's Lua side: cycle through the bodies (each wrk thread from its own offset), print one JSON line at the end.
LUA_TEMPLATE = """
local bodies = {
%(bodies)s
}
local headers = {["Content-Type"] = "application/json"}
local counter = 0
local thread_count = 0

function setup(thread)
  thread:set("offset", thread_count * 37)
  thread_count = thread_count + 1
end

function init(args)
  counter = offset or 0
end

function request()
  counter = counter + 1
  return wrk.format("POST", "/v1/search", headers, bodies[(counter %% #bodies) + 1])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT_JSON {"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d, "mean_us": %%.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


# ----------------------------------------------------------------------------------------------------------
# the naive baseline server


def baseline_app(index: str):
    """One encode + one search per request, in FastAPI's threadpool: no batching, no queue."""
    from fastapi import FastAPI
    from pydantic import BaseModel

    from xretrieve.search import Searcher

    class NaiveQuery(BaseModel):
        query: str
        k: int = K

    searcher = Searcher(index)
    app = FastAPI(title="naive xretrieve")

    @app.get("/readyz")
    def readyz():
        return {"status": "ready"}

    @app.post("/v1/search")
    def search(body: NaiveQuery):
        hits = searcher.search([body.query], k=body.k)[0]
        out = []
        for rank, hit in enumerate(hits, 1):
            doc = searcher.document(hit.docid) or {}
            out.append(
                {
                    "id": hit.docid,
                    "score": hit.score,
                    "rank": rank,
                    "lang": hit.lang,
                    "title": doc.get("title"),
                    "text": doc.get("text"),
                }
            )
        return {"hits": out}

    return app


def run_baseline_server(index: str, port: int) -> None:
    import uvicorn

    uvicorn.run(baseline_app(index), host=HOST, port=port, log_level="warning")


# ----------------------------------------------------------------------------------------------------------
# running servers and wrk


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http(method: str, port: int, path: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, dict]:
    import httpx

    response = httpx.request(method, f"http://{HOST}:{port}{path}", json=body, timeout=timeout)
    return response.status_code, response.json()


class Server:
    """A server subprocess with its output in a log file: `start`, `wait_ready`, `stop`."""

    def __init__(
        self, name: str, command: list[str], port: int, log_dir: Path, cwd: Path = ROOT, env: dict | None = None
    ):
        self.name, self.command, self.port, self.cwd, self.env = name, command, port, cwd, env or {}
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None

    def start(self) -> None:
        with open(self.log_path, "w", encoding="utf-8") as log:
            self.proc = subprocess.Popen(
                self.command, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
            )
        self.started = time.monotonic()

    def wait_ready(self) -> None:
        while time.monotonic() - self.started < READY_TIMEOUT_S:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(Exception):
                if http("GET", self.port, "/readyz", timeout=2.0)[0] == 200:
                    self.startup_s = time.monotonic() - self.started
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {READY_TIMEOUT_S:.0f} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def cpu_s(self) -> float:
        return process_cpu_s(self.proc.pid)

    def drain(self, quiet_s: float = 0.3, limit_s: float = 10.0) -> None:
        """Wait until the server stops working off requests that wrk left queued, so runs do not overlap."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            before = self.cpu_s()
            time.sleep(quiet_s)
            if self.cpu_s() - before < 0.1 * quiet_s:
                return

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]

    def log_problems(self) -> int:
        """Lines in the server's log that report an error or a traceback."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return sum(1 for line in text.splitlines() if re.search(r"ERROR|Traceback", line))


# CPU accounting from /proc (Linux): what the server, wrk and everything else on the machine used during a run,
# so a run disturbed by other work on this shared machine shows up as such.
TICK = os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    with open("/proc/stat", encoding="ascii") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / TICK  # all but idle and iowait


def process_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped children: the wrk runs
    return usage.ru_utime + usage.ru_stime


def wait_for_idle(limit_s: float, threshold_cores: float = 0.2, quiet_s: int = 4) -> float:
    """Wait (at most `limit_s`) until the machine has been nearly idle for `quiet_s` seconds; the seconds waited."""
    started, quiet = time.monotonic(), 0
    while quiet < quiet_s and time.monotonic() - started < limit_s:
        before = machine_busy_s()
        time.sleep(1.0)
        quiet = quiet + 1 if machine_busy_s() - before < threshold_cores else 0
    return round(time.monotonic() - started, 1)


def wrk_version() -> str:
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    return (out.stdout + out.stderr).splitlines()[0].strip()


def run_wrk(server: Server, script: Path, connections: int, duration_s: float) -> dict:
    threads = min(connections, 2)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s:g}s", "--timeout", "10s", "--latency"]
    command += ["-s", str(script), f"http://{HOST}:{server.port}/v1/search"]
    busy, server_cpu, wrk_cpu, own_cpu = machine_busy_s(), server.cpu_s(), children_cpu_s(), time.process_time()
    started = time.monotonic()
    out = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 60)
    wall = time.monotonic() - started
    busy, server_cpu = machine_busy_s() - busy, server.cpu_s() - server_cpu
    wrk_cpu, own_cpu = children_cpu_s() - wrk_cpu, time.process_time() - own_cpu
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    line = next(line for line in out.stdout.splitlines() if line.startswith("RESULT_JSON "))
    raw = json.loads(line.removeprefix("RESULT_JSON "))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out.stdout)
    non_2xx = int(non_2xx.group(1)) if non_2xx else raw["status"]
    socket_errors = {k: raw[k] for k in ("connect", "read", "write", "timeout")}
    return {
        "connections": connections,
        "threads": threads,
        "requests": raw["requests"],
        "qps": float(rps.group(1)) if rps else raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "mean_ms": raw["mean_us"] / 1000,
        "non_2xx": non_2xx,
        "socket_errors": socket_errors,
        "errors": non_2xx + sum(socket_errors.values()),
        # cores in use on average over the run: the server, wrk, and everything else (other users' work)
        "server_cores": round(server_cpu / wall, 2),
        "wrk_cores": round(wrk_cpu / wall, 2),
        "other_cores": round(max(busy - server_cpu - wrk_cpu - own_cpu, 0.0) / wall, 2),
        "command": shlex.join(command),
    }


def write_lua(path: Path, queries: list[str]) -> None:
    bodies = []
    for text in queries:
        body = json.dumps({"query": text, "k": K}, ensure_ascii=True)  # ASCII: no Lua string-escaping surprises
        assert "]==]" not in body
        bodies.append(f"  [==[{body}]==],")
    path.write_text(LUA_TEMPLATE % {"bodies": "\n".join(bodies)}, encoding="utf-8")


def engine_stats(port: int) -> dict | None:
    with contextlib.suppress(Exception):
        status, info = http("GET", port, "/v1/info")
        if status == 200:
            return info.get("stats")
    return None


def measure_level(server: Server, script: Path, connections: int, duration: float) -> dict:
    before = engine_stats(server.port)
    row = run_wrk(server, script, connections, duration)
    server.drain()
    after = engine_stats(server.port)
    if before and after and after["batches"] > before["batches"]:
        row["mean_encode_batch"] = round(
            (after["queries"] - before["queries"]) / (after["batches"] - before["batches"]), 2
        )
    flag = "  (other load!)" if row["other_cores"] > OTHER_LOAD_WARN else ""
    print(
        f"  {server.name:>22} c={connections:<3} {row['qps']:7.1f} req/s  p50 {row['p50_ms']:7.1f} ms  "
        f"p99 {row['p99_ms']:7.1f} ms  errors {row['errors']}  cores: server {row['server_cores']:.2f} "
        f"wrk {row['wrk_cores']:.2f} other {row['other_cores']:.2f}{flag}",
        flush=True,
    )
    return row


# ----------------------------------------------------------------------------------------------------------
# the report


def machine_facts() -> dict:
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "git_commit": commit.stdout.strip(),
        "git_dirty": bool(dirty.stdout.strip()),
        "note": "wrk, the server and the model share the same cores (loopback, one machine)",
    }


def encode_floor_ms(index: Path, queries: list[str], n: int = 40) -> dict:
    """The model alone, in-process, one query at a time: the floor under any server's single-query latency."""
    import numpy as np

    from xretrieve.search import Searcher

    searcher = Searcher(index)
    searcher.search(queries[:2], k=K)  # warm-up
    encode, total = [], []
    busy, own, wall = machine_busy_s(), time.process_time(), time.monotonic()
    for text in queries[:n]:
        started = time.perf_counter()
        vectors = searcher.encoder.encode_queries([text], batch_size=1)
        encode.append((time.perf_counter() - started) * 1000)
        searcher.search_vectors(vectors, k=K)
        total.append((time.perf_counter() - started) * 1000)
    return {
        "queries": len(encode),
        "encode_p50_ms": round(float(np.median(encode)), 1),
        "encode_p99_ms": round(float(np.percentile(encode, 99)), 1),
        "encode_plus_search_p50_ms": round(float(np.median(total)), 1),
        "other_cores": round(
            max(machine_busy_s() - busy - (time.process_time() - own), 0) / (time.monotonic() - wall), 2
        ),
    }


def ms(x: float) -> str:
    return f"{x:.1f}"


def batch_of(row: dict) -> str:
    return f"{row['mean_encode_batch']:.1f}" if "mean_encode_batch" in row else "-"


def render(result: dict) -> str:
    m, floor = result["machine"], result["encode_floor"]
    lines = [
        "# Server load: `xretrieve serve` against a naive FastAPI server",
        "",
        f"Generated by `{result['command']}` ({result['wrk_version']}) in {result['wall_s']:.0f} s. Index: the demo "
        f"corpus ({result['index_rows']} passages), embedded multilingual-e5-small, Flat; the {result['queries']} "
        f"demo queries cycled, k={K}, all fields returned. {result['duration_s']:g} s per level after a "
        f"{result['warmup_s']:g} s warm-up per server; `wrk -t min(c,2) -c C --timeout 10s --latency` with a Lua "
        "script POSTing JSON, on 127.0.0.1.",
        "",
        f"Machine: {m['cpu_count']} CPUs ({m['processor']}), torch {m['torch']} with {m['torch_threads']} intra-op "
        f"threads, Python {m['python']}, commit {m['git_commit']}{' (uncommitted changes)' if m['git_dirty'] else ''}. "
        "wrk and the servers share these cores; `other` is the cores that other processes on the machine used "
        f"during a run (from /proc/stat), and runs above {OTHER_LOAD_WARN} are marked `*`.",
        "",
        "The naive server: a plain `def` endpoint calling `searcher.search([query], k)` (one encode + one search "
        "per request, in FastAPI's threadpool). xretrieve: `xretrieve serve` with its defaults "
        "(micro-batching, --batch-wait-ms 2, --max-encode-batch 32).",
        "",
        "| concurrency | xretrieve QPS | naive QPS | QPS ratio | xretrieve p50 / p99 ms | naive p50 / p99 ms "
        "| xretrieve errors | naive errors | xretrieve mean encode batch | server cores x / n | other x / n |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def other(row: dict) -> str:
        return f"{row['other_cores']:.2f}{'*' if row['other_cores'] > OTHER_LOAD_WARN else ''}"

    for x, n in zip(result["xretrieve"], result["naive"], strict=True):
        lines.append(
            f"| {x['connections']} | {x['qps']:.1f} | {n['qps']:.1f} | {x['qps'] / n['qps']:.2f}x "
            f"| {ms(x['p50_ms'])} / {ms(x['p99_ms'])} | {ms(n['p50_ms'])} / {ms(n['p99_ms'])} "
            f"| {x['errors']} | {n['errors']} | {batch_of(x)} | {x['server_cores']:.2f} / {n['server_cores']:.2f} "
            f"| {other(x)} / {other(n)} |"
        )
    single = result["xretrieve"][0]
    met = single["p50_ms"] <= 25 and single["p99_ms"] <= 100
    lines += [
        "",
        f"Single-query latency (xretrieve, c={single['connections']}): p50 {ms(single['p50_ms'])} ms, "
        f"p99 {ms(single['p99_ms'])} ms, max {ms(single['max_ms'])} ms; the target p50 <= 25 ms, p99 <= 100 ms is "
        f"{'met' if met else 'not met'}. The model alone, in-process, one query at a time: encode p50 "
        f"{ms(floor['encode_p50_ms'])} ms, p99 {ms(floor['encode_p99_ms'])} ms; encode + search p50 "
        f"{ms(floor['encode_plus_search_p50_ms'])} ms ({floor['queries']} queries; other load "
        f"{floor['other_cores']:.2f} cores).",
        "",
        "Errors: non-2xx responses plus socket errors (connect, read, write, timeout) as wrk counts them. "
        f"Both servers return the same top-{K} ids for a probe query: {result['same_hits']}.",
    ]
    if result["variants"]:
        lines += [
            "",
            "Other settings of `xretrieve serve` (flags given; the rest default):",
            "",
            "| flags | concurrency | QPS | p50 / p99 ms | errors | mean encode batch | server cores | other |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        rows = [(v["flags"], r) for v in result["variants"] for r in v["rows"]]
        for flags, row in sorted(rows, key=lambda fr: fr[1]["connections"]):
            lines.append(
                f"| `{flags}` | {row['connections']} | {row['qps']:.1f} | {ms(row['p50_ms'])} / {ms(row['p99_ms'])} "
                f"| {row['errors']} | {batch_of(row)} | {row['server_cores']:.2f} | {other(row)} |"
            )
    rows = result["xretrieve"] + result["naive"] + [r for v in result["variants"] for r in v["rows"]]
    redone = sum(len(r["discarded"]) for r in rows)
    lines += [
        "",
        f"Runs that other processes disturbed (other > {OTHER_LOAD_WARN} cores) were redone while the time budget "
        f"lasted, keeping the least disturbed: {redone} run(s) redone; all attempts are in the JSON.",
    ]
    problems = [f"{name}: {count} error/traceback lines" for name, count in result["log_problems"].items()]
    lines += ["", "Server logs: " + ("; ".join(problems) if problems else "no errors or tracebacks."), ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# the mixed load: one client with big batches, many with short queries

MIXED_KEYS = [f"bench-key-{i:02d}-0123456789" for i in range(17)]  # one per client: fair shares are per key


def heavy_batch(passages: list[str], queries: int = 64, chars: int = 2000) -> list[str]:
    """`queries` texts of exactly `chars` characters, cut from the demo passages (each from its own offset)."""
    text = " ".join(passages)
    while len(text) < chars + queries * 97:
        text += " " + text
    return [text[i * 97 : i * 97 + chars] for i in range(queries)]


async def mixed_load(port: int, heavy: list[str], shorts: list[str], clients: int, duration: float, timeout: float):
    """Run the load for `duration` seconds; a request still open at the end counts with the time it had waited
    (so those latencies are lower bounds)."""
    import httpx

    short_rows, heavy_rows = [], []  # (status or "open" / "timeout", seconds)
    url = f"http://{HOST}:{port}/v1/search"
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http_client:

        async def one(rows: list, body: dict, key: str) -> None:
            started = time.monotonic()
            try:
                response = await http_client.post(url, json=body, headers={"X-API-Key": key})
                rows.append((response.status_code, time.monotonic() - started))
            except httpx.TimeoutException:
                rows.append(("timeout", time.monotonic() - started))
            except asyncio.CancelledError:
                rows.append(("open", time.monotonic() - started))
                raise

        async def heavy_client() -> None:
            while True:
                await one(heavy_rows, {"queries": heavy, "k": K, "fields": ["lang"]}, MIXED_KEYS[0])

        async def short_client(i: int) -> None:
            for j in itertools.count(i, clients):
                await one(short_rows, {"query": shorts[j % len(shorts)], "k": K}, MIXED_KEYS[1 + i])

        busy, started = machine_busy_s(), time.monotonic()
        tasks = [asyncio.create_task(heavy_client())] + [asyncio.create_task(short_client(i)) for i in range(clients)]
        await asyncio.sleep(duration)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        cores = (machine_busy_s() - busy) / (time.monotonic() - started)
    return short_rows, heavy_rows, round(cores, 2)


def summarize(rows: list) -> dict:
    import numpy as np

    seconds = np.array([s for _, s in rows]) if rows else np.zeros(1)
    return {
        "requests": len(rows),
        "statuses": dict(Counter(str(status) for status, _ in rows)),
        "p50_ms": round(float(np.percentile(seconds, 50)) * 1000, 1),
        "p99_ms": round(float(np.percentile(seconds, 99)) * 1000, 1),
        "max_ms": round(float(seconds.max()) * 1000, 1),
    }


def run_mixed(args, index: Path, log_dir: Path) -> dict:
    passages = [json.loads(line)["text"] for line in (DEMO / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    shorts = [json.loads(line)["text"] for line in (DEMO / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    heavy = heavy_batch(passages)
    flags = ["--timeout", str(args.mixed_timeout)] + [f for key in MIXED_KEYS for f in ("--api-key", key)]
    roots = ([("before", Path(args.before_root).resolve())] if args.before_root else []) + [("after", ROOT)]
    result = {
        "command": shlex.join(["python", "benchmarks/server_load.py", *sys.argv[1:]]),
        "machine": machine_facts(),
        "load": {
            "heavy": f"1 client, 1 request at a time: {len(heavy)} queries x {len(heavy[0])} characters",
            "short": f"{args.mixed_clients} clients, 1 request at a time each: demo queries (k={K})",
            "duration_s": args.duration,
            "server_flags": f"--timeout {args.mixed_timeout} and one --api-key per client",
        },
        "runs": [],
    }
    for name, root in roots:
        port = free_port()
        command = [sys.executable, "-m", "xretrieve", "serve", "--index", str(index), "--port", str(port), *flags]
        server = Server(f"mixed-{name}", command, port, log_dir, cwd=root, env={"PYTHONPATH": str(root)})
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        try:
            server.start()
            server.wait_ready()
            for text in shorts[:5]:  # warm-up, discarded
                httpx_post(port, {"query": text, "k": K}, MIXED_KEYS[1])
            result["idle_wait_s"] = wait_for_idle(args.idle_wait)
            short_rows, heavy_rows, cores = asyncio.run(
                mixed_load(port, heavy, shorts, args.mixed_clients, args.duration, args.mixed_timeout)
            )
        finally:
            server.stop()
        row = {
            "name": name,
            "root": str(root),
            "commit": commit.stdout.strip(),
            "short": summarize(short_rows),
            "heavy": summarize(heavy_rows),
            "machine_cores_busy": cores,
            "log_problems": server.log_problems(),
        }
        result["runs"].append(row)
        print(f"  {name}: short {row['short']}  heavy {row['heavy']}  cores busy {cores}", flush=True)
    return result


def httpx_post(port: int, body: dict, key: str) -> int:
    import httpx

    return httpx.post(f"http://{HOST}:{port}/v1/search", json=body, headers={"X-API-Key": key}, timeout=60).status_code


def render_mixed(result: dict) -> str:
    load = result["load"]
    lines = [
        "# Server under a mixed load: short queries beside one client's big batches",
        "",
        f"Generated by `{result['command']}`. Index: the demo corpus, embedded multilingual-e5-small, Flat. "
        f"Load for {load['duration_s']:g} s per server, on 127.0.0.1: {load['heavy']}; {load['short']}. Servers run "
        f"with {load['server_flags']}, one at a time. Machine: {result['machine']['cpu_count']} CPUs, shared with "
        "other work (`cores busy` is the whole machine's use during the run, from /proc/stat). Latencies of "
        "requests still open at the end count with the time they had waited.",
        "",
        "| server | commit | short requests | short p50 / p99 / max ms | short statuses | heavy requests "
        "| heavy p50 ms | heavy statuses | cores busy |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | --- | ---: |",
    ]
    for run in result["runs"]:
        short, heavy = run["short"], run["heavy"]
        lines.append(
            f"| {run['name']} | {run['commit']} | {short['requests']} | {short['p50_ms']} / {short['p99_ms']} / "
            f"{short['max_ms']} | {short['statuses']} | {heavy['requests']} | {heavy['p50_ms']} | {heavy['statuses']} "
            f"| {run['machine_cores_busy']} |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, flags = text.partition("=")
    if not flags:
        raise SystemExit(f"--variant {text!r}: expected NAME='--flag value ...'")
    return name, shlex.split(flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="runs/server-load/index", help="built from the demo corpus if missing")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per concurrency level")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of discarded load per server")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--variant", action="append", default=[], help="NAME='xretrieve serve flags' to measure too")
    parser.add_argument("--variant-concurrency", default="8,32")
    parser.add_argument("--idle-wait", type=float, default=20.0, help="seconds to wait for a quiet machine per run")
    parser.add_argument(
        "--retry-until",
        type=float,
        default=330.0,
        help="redo disturbed runs until this many seconds into the benchmark",
    )
    parser.add_argument("--out", default=str(RESULTS / "server_load"), help="writes OUT.md and OUT.json")
    parser.add_argument("--mixed", action="store_true", help="the mixed load (big batches beside short queries)")
    parser.add_argument("--before-root", help="--mixed: also measure the xretrieve checked out in this folder")
    parser.add_argument("--mixed-clients", type=int, default=16, help="--mixed: clients sending short queries")
    parser.add_argument("--mixed-timeout", type=float, default=120.0, help="--mixed: the servers' --timeout")
    parser.add_argument("--baseline-server", action="store_true", help="run the naive server (internal)")
    parser.add_argument("--port", type=int, default=8001, help="with --baseline-server")
    args = parser.parse_args()

    if args.baseline_server:
        run_baseline_server(args.index, args.port)
        return
    if shutil.which("wrk") is None and not args.mixed:
        raise SystemExit("wrk not found: apt-get install -y wrk")

    started = time.monotonic()
    index = Path(args.index)
    index = index if index.is_absolute() else ROOT / index
    if not (index / "manifest.json").exists():
        print(f"building {index} ...", flush=True)
        command = [sys.executable, "-m", "xretrieve", "index", "--corpus", str(DEMO / "corpus.jsonl")]
        subprocess.run(command + ["--out", str(index), "--quiet"], cwd=ROOT, check=True, timeout=600)
    if args.mixed:
        log_dir = ROOT / "runs" / "server-load" / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        result = run_mixed(args, index, log_dir)
        result["wall_s"] = round(time.monotonic() - started, 1)
        out = Path(args.out + "_mixed")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        out.with_suffix(".md").write_text(render_mixed(result), encoding="utf-8")
        print(render_mixed(result))
        return
    queries = [json.loads(line)["text"] for line in (DEMO / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    levels = [int(c) for c in args.concurrency.split(",")]
    variant_levels = [int(c) for c in args.variant_concurrency.split(",")]
    log_dir = ROOT / "runs" / "server-load" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    result: dict = {
        "command": shlex.join(["python", "benchmarks/server_load.py", *sys.argv[1:]]),
        "wrk_version": wrk_version(),
        "machine": machine_facts(),
        "index": str(index.relative_to(ROOT)) if index.is_relative_to(ROOT) else str(index),
        "index_rows": json.loads((index / "manifest.json").read_text(encoding="utf-8")).get("rows"),
        "queries": len(queries),
        "k": K,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "idle_waits_s": [],
    }
    result["idle_waits_s"].append(wait_for_idle(args.idle_wait))
    result["encode_floor"] = encode_floor_ms(index, queries)
    print(f"model alone: {result['encode_floor']}", flush=True)

    def xretrieve_server(name: str, flags: list[str]) -> Server:
        port = free_port()
        command = [sys.executable, "-m", "xretrieve", "serve", "--index", str(index), "--port", str(port), *flags]
        return Server(name, command, port, log_dir)

    port = free_port()
    naive_command = [sys.executable, str(Path(__file__).resolve()), "--baseline-server", "--index", str(index)]
    servers = {
        "xretrieve": xretrieve_server("xretrieve", []),
        "naive": Server("naive", naive_command + ["--port", str(port)], port, log_dir),
    }
    variants = dict(parse_variant(v) for v in args.variant)
    for name, flags in variants.items():
        servers[f"xretrieve-{name}"] = xretrieve_server(f"xretrieve-{name}", flags)

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "search.lua"
        write_lua(script, queries)
        try:
            for server in servers.values():  # all load at once: one wait, not one per server
                server.start()
            for server in servers.values():
                server.wait_ready()
            result["startup_s"] = {name: round(server.startup_s, 1) for name, server in servers.items()}
            probe = {"query": queries[0], "k": K}
            hits = {
                name: [h["id"] for h in http("POST", s.port, "/v1/search", probe)[1]["hits"]]
                for name, s in servers.items()
            }
            # every server must answer the same thing, or the comparison means nothing
            result["same_hits"] = all(ids == hits["xretrieve"] for ids in hits.values())
            for server in servers.values():
                run_wrk(server, script, 8, args.warmup)  # warm-up, discarded
                server.drain()

            def clean_run(server: Server, connections: int) -> dict:
                """A level measured while the machine is otherwise quiet: on a shared machine, a run that other
                processes disturbed is redone (while the time budget lasts); the least disturbed one is kept."""
                attempts = []
                while True:
                    waited = wait_for_idle(args.idle_wait if time.monotonic() < retry_until else 0)
                    result["idle_waits_s"].append(waited)
                    attempts.append(measure_level(server, script, connections, args.duration))
                    if attempts[-1]["other_cores"] <= OTHER_LOAD_WARN or time.monotonic() > retry_until:
                        break
                best = min(attempts, key=lambda row: row["other_cores"])
                best["attempts"] = len(attempts)
                best["discarded"] = [
                    {k: row[k] for k in ("qps", "p50_ms", "p99_ms", "other_cores")}
                    for row in attempts
                    if row is not best
                ]
                return best

            retry_until = started + args.retry_until
            result["xretrieve"], result["naive"] = [], []
            for connections in levels:
                for name in ("xretrieve", "naive"):
                    result[name].append(clean_run(servers[name], connections))
            result["variants"] = [
                {"name": name, "flags": shlex.join(flags), "rows": []} for name, flags in variants.items()
            ]
            for connections in variant_levels:
                for variant in result["variants"]:
                    variant["rows"].append(clean_run(servers[f"xretrieve-{variant['name']}"], connections))
        finally:
            for server in servers.values():
                server.stop()
    result["log_problems"] = {name: n for name, s in servers.items() if (n := s.log_problems())}
    result["wall_s"] = round(time.monotonic() - started, 1)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(render(result), encoding="utf-8")
    print(render(result))
    print(f"wrote {out.with_suffix('.md')} and .json in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
