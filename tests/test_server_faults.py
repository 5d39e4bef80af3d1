"""A real `xretrieve serve` process killed with SIGKILL under load, then restarted on the same port.

During the outage clients must fail fast with connection errors (not hang); after the restart every
request must succeed with the same hits as an in-process `Searcher`.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from conftest import write_corpus

from xretrieve.config import IndexConfig
from xretrieve.index import build_index
from xretrieve.model import BiEncoder
from xretrieve.search import Searcher

HOST = "127.0.0.1"
QUERIES = ["the quick brown fox", "der schnelle braune fuchs", "water river sea", "la nuit tombe sur la ville"]
K = 5
CLIENT_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
READY_TIMEOUT_S = 240.0  # generous: a loaded 2-core machine can take a minute to import torch and faiss


@pytest.fixture(scope="module")
def served_index(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp("faults")
    corpus = write_corpus(folder / "corpus.jsonl", 40)
    encoder = BiEncoder(str(tiny_model))
    index = build_index(IndexConfig(out=str(folder / "idx"), corpus=str(corpus), progress=False), encoder=encoder)
    expected = Searcher(index, encoder=BiEncoder(str(tiny_model))).search(QUERIES, k=K)
    return Path(index), {q: [(h.docid, h.score) for h in hits] for q, hits in zip(QUERIES, expected, strict=True)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(index: Path, model: Path, port: int, log_path: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "xretrieve", "serve", "--index", str(index), "--model", str(model)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log_path, "a", encoding="utf-8") as log:
        return subprocess.Popen(command + ["--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_ready(proc: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://{HOST}:{port}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"server not ready after {READY_TIMEOUT_S:.0f} s:\n{log_path.read_text()[-3000:]}")


class Load:
    """Threads posting queries in a loop until stopped (bounded in count and time); each outcome is recorded
    with the phase that was current when its request started."""

    def __init__(self, port: int, expected: dict, threads: int = 3, max_requests: int = 20000, max_s: float = 600.0):
        self.url, self.expected = f"http://{HOST}:{port}/v1/search", expected
        self.phase, self.stop = "up", threading.Event()
        self.outcomes: list[tuple[str, str, float]] = []  # (phase, outcome, seconds)
        self.lock = threading.Lock()
        self.max_requests, self.deadline = max_requests, time.monotonic() + max_s
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def _run(self, offset: int) -> None:
        with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
            i = offset
            while (
                not self.stop.is_set() and time.monotonic() < self.deadline and len(self.outcomes) < self.max_requests
            ):
                query, i = QUERIES[i % len(QUERIES)], i + 1
                phase, started = self.phase, time.monotonic()
                outcome = self._one(client, query)
                with self.lock:
                    self.outcomes.append((phase, outcome, time.monotonic() - started))
                if outcome != "ok":
                    time.sleep(0.02)  # a client retrying a dead server, not a spin

    def _one(self, client: httpx.Client, query: str) -> str:
        try:
            response = client.post(self.url, json={"query": query, "k": K, "fields": ["lang"]})
        except httpx.ConnectError:
            return "refused"
        except httpx.TimeoutException:
            return "timeout"
        except httpx.TransportError:  # the connection dropped mid-request (the kill)
            return "dropped"
        if response.status_code != 200:
            return f"http:{response.status_code}"
        hits = [(h["id"], h["score"]) for h in response.json()["hits"]]
        want = self.expected[query]
        same = [d for d, _ in hits] == [d for d, _ in want] and all(
            abs(a - b) < 1e-4 for (_, a), (_, b) in zip(hits, want, strict=True)
        )
        return "ok" if same else "wrong"

    def count(self, phase: str) -> Counter:
        with self.lock:
            return Counter(outcome for p, outcome, _ in self.outcomes if p == phase)

    def wait_for(self, phase: str, outcome: str, n: int, seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while self.count(phase)[outcome] < n:
            assert time.monotonic() < deadline, (
                f"{phase}: fewer than {n} {outcome!r} in {seconds} s: {self.count(phase)}"
            )
            time.sleep(0.02)


def test_sigkill_under_load_then_restart_serves_correct_results(served_index, tiny_model, tmp_path):
    index, expected = served_index
    port, log_path = free_port(), tmp_path / "server.log"
    procs: list[subprocess.Popen] = []
    try:
        procs.append(start_server(index, tiny_model, port, log_path))
        wait_ready(procs[-1], port, log_path)
        with Load(port, expected) as load:
            load.wait_for("up", "ok", 20)

            procs[-1].send_signal(signal.SIGKILL)
            procs[-1].wait(timeout=10)
            load.phase = "down"
            load.wait_for("down", "refused", 10)

            load.phase = "restarting"
            procs.append(start_server(index, tiny_model, port, log_path))
            wait_ready(procs[-1], port, log_path)
            load.phase = "restarted"
            load.wait_for("restarted", "ok", 30)

        up, down, restarting, restarted = (load.count(p) for p in ("up", "down", "restarting", "restarted"))
        # before the kill: correct answers; a request in flight at the kill may see its connection drop
        assert up["ok"] >= 20 and set(up) <= {"ok", "dropped", "refused"}, up
        # the outage: every request fails at once with a connection error, none hangs until its timeout
        assert down["refused"] >= 10 and set(down) <= {"refused", "dropped"}, down
        slowest = max(s for p, _, s in load.outcomes if p == "down")
        assert slowest < 1.0, f"a request took {slowest:.2f} s to fail while the server was down"
        # while the new process starts: refused until it binds, then 503 until the index is loaded
        # (a request sent just before /readyz turned 200 may already be answered)
        assert set(restarting) <= {"refused", "dropped", "http:503", "ok"}, restarting
        # after /readyz: every request succeeds with the Searcher's hits
        assert set(restarted) == {"ok"}, restarted

        with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
            for query in QUERIES:
                response = client.post(f"http://{HOST}:{port}/v1/search", json={"query": query, "k": K})
                assert response.status_code == 200
                hits = response.json()["hits"]
                assert [h["id"] for h in hits] == [d for d, _ in expected[query]]
                assert [h["score"] for h in hits] == pytest.approx([s for _, s in expected[query]], abs=1e-5)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert all(proc.poll() is not None for proc in procs)
