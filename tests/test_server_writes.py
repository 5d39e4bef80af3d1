"""`serve --writable`: POST /v1/documents, DELETE /v1/documents/{id} and POST /v1/admin/compact; their key and
loopback rules, limits and semantics (read your writes, whole batches, durable over kill -9, one writer)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import WORDS, FakeEncoder, write_corpus
from fastapi.testclient import TestClient

from xretrieve.config import IndexConfig
from xretrieve.errors import UserError
from xretrieve.index import build_index
from xretrieve.live import WriterLock
from xretrieve.search import Searcher
from xretrieve.server import ServerConfig, create_app

KEY = "k" * 24
LOOPBACK = ("127.0.0.1", 50000)


@pytest.fixture
def index(tmp_path) -> Path:
    out = tmp_path / "idx"
    build_index(IndexConfig(out=str(out), corpus=str(write_corpus(tmp_path / "c.jsonl", 40)), progress=False), ENCODER)
    return out


ENCODER = FakeEncoder()


def client_for(index: Path, client=LOOPBACK, **settings) -> TestClient:
    config = ServerConfig(index=str(index), **{"writable": True, **settings})
    app = create_app(config, load_searcher=lambda: Searcher(index, encoder=ENCODER, docs_in_memory=True))
    return TestClient(app, client=client)


def ready(client: TestClient, seconds: float = 30) -> TestClient:
    deadline = time.monotonic() + seconds
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").json()
        time.sleep(0.05)
    return client


def top(client: TestClient, text: str, k: int = 5, **headers) -> list[str]:
    response = client.post("/v1/search", json={"query": text, "k": k}, headers=headers)
    assert response.status_code == 200, response.json()
    return [hit["id"] for hit in response.json()["hits"]]


def test_writes_are_read_at_once_and_survive_a_restart(index):
    with client_for(index) as client:
        ready(client)
        docs = [
            {"id": "new1", "text": "a brand new passage", "lang": "en"},
            {"id": "d5", "text": "replaced", "title": "T"},
        ]
        response = client.post("/v1/documents", json={"documents": docs})
        assert response.status_code == 200 and response.json() == {"upserted": 2}
        assert top(client, "a brand new passage")[0] == "new1"  # read your writes
        assert client.get("/v1/documents/d5").json() == {"id": "d5", "title": "T", "text": "replaced", "lang": ""}
        assert client.delete("/v1/documents/d7").json() == {"deleted": 1}
        assert client.get("/v1/documents/d7").status_code == 404
        assert client.delete("/v1/documents/d7").status_code == 404
        assert client.delete("/v1/documents/no-such").status_code == 404
        info = client.get("/v1/info").json()
        assert info["index"]["rows"] == 40 and info["langs"][""] == 1
        assert info["live"] == {
            "writable": True,
            "generation": 0,
            "pending": {"upserted": 2, "removed_from_base": 2, "last_seq": 2},
            "compacting": False,
        }
    with client_for(index, writable=False) as client:  # a new process would replay the same log
        ready(client)
        assert top(client, "a brand new passage")[0] == "new1"
        assert client.get("/v1/documents/d7").status_code == 404
        assert client.post("/v1/documents", json={"documents": docs}).status_code == 403


def test_a_read_only_server_says_how_to_write(index):
    with client_for(index, writable=False) as client:
        ready(client)
        response = client.post("/v1/documents", json={"documents": [{"id": "x", "text": "y"}]})
        assert response.status_code == 403 and "--writable" in response.json()["error"]
        assert client.delete("/v1/documents/d1").status_code == 403
        assert client.post("/v1/admin/compact").status_code == 403
        assert client.get("/v1/documents/d1").status_code == 200


def test_writes_need_a_key_when_keys_are_set_and_loopback_when_not(index):
    body = {"documents": [{"id": "x", "text": "some text"}]}
    with client_for(index, client=("203.0.113.9", 4000)) as client:
        ready(client)
        response = client.post("/v1/documents", json=body)
        assert response.status_code == 403 and "loopback" in response.json()["error"]
        assert client.delete("/v1/documents/d1").status_code == 403
        assert client.get("/v1/documents/d1").status_code == 200  # reads stay open
    with client_for(index, client=("203.0.113.9", 4000), api_keys=(KEY,)) as client:
        ready(client)
        assert client.post("/v1/documents", json=body).status_code == 401
        assert client.post("/v1/documents", json=body, headers={"X-API-Key": "w" * 24}).status_code == 401
        assert client.post("/v1/documents", json=body, headers={"X-API-Key": KEY}).status_code == 200
        assert client.delete("/v1/documents/x", headers={"X-API-Key": KEY}).json() == {"deleted": 1}


@pytest.mark.parametrize(
    "documents, problem",
    [
        ([], "'documents' is empty"),
        ([{"id": f"n{i}", "text": "t"} for i in range(4)], "4 documents in one request; the limit is 3"),
        ([{"id": "a", "text": "ok"}, {"id": "b", "text": "   "}], "documents[1]: field 'text' is missing or empty"),
        ([{"text": "no id"}], "documents[0]: field 'id' is missing or empty"),
        ([{"id": "a b", "text": "x"}], "contains whitespace"),
        ([{"id": "a", "text": "x" * 51}], "documents[0]: longer than 50 characters"),
        ([{"id": "a", "text": "x", "title": 5}], "field 'title' must be a string"),
        ([{"id": "a", "text": "\ud800"}], "not valid Unicode"),
        ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], "id 'a' appears twice in one batch"),
        ("nope", "documents"),
    ],
)
def test_bad_writes_are_refused_whole_with_a_4xx(index, documents, problem):
    with client_for(index, max_write_batch=3, max_document_chars=50) as client:
        ready(client)
        body = json.dumps({"documents": documents})  # ASCII, escapes kept: a lone surrogate travels as \ud800
        response = client.post("/v1/documents", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422 and problem in response.json()["error"]
        assert client.get("/v1/info").json()["live"]["pending"]["upserted"] == 0
        assert client.get("/v1/documents/a").status_code == 404


def test_the_write_rate_limit_answers_429_with_retry_after(index):
    with client_for(index, write_rate_limit=0.5) as client:
        ready(client)
        body = {"documents": [{"id": "x", "text": "some text"}]}
        assert client.post("/v1/documents", json=body).status_code == 200
        refused = client.post("/v1/documents", json=body)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert client.post("/v1/search", json={"query": "x"}).status_code == 200  # searches are not writes


def test_a_second_writer_is_refused_clearly(index):
    with WriterLock(index, "xretrieve add"):
        with client_for(index) as client:
            time.sleep(0.2)
            response = client.get("/readyz")
            assert response.status_code == 503 and "another writer is changing this index" in response.json()["error"]
        from xretrieve.serve import serve

        with pytest.raises(UserError, match="another writer is changing this index"):
            serve(ServerConfig(index=str(index), writable=True, port=1))


def test_compact_over_http_keeps_searches_and_writes_going(index):
    with client_for(index) as client:
        ready(client)
        client.post("/v1/documents", json={"documents": [{"id": "n1", "text": "first new one", "lang": "en"}]})
        client.delete("/v1/documents/d3")
        response = client.post("/v1/admin/compact")
        assert response.json() == {"generation": 1, "compacted": True}
        assert top(client, "first new one")[0] == "n1" and client.get("/v1/documents/d3").status_code == 404
        live = client.get("/v1/info").json()["live"]
        assert live["generation"] == 1 and live["pending"]["upserted"] == 0
        client.post("/v1/documents", json={"documents": [{"id": "n2", "text": "second new one", "lang": "en"}]})
        assert client.post("/v1/admin/compact").json() == {"generation": 2, "compacted": True}
        assert client.post("/v1/admin/compact").json() == {"generation": None, "compacted": False}
        assert client.post("/v1/admin/reload", json={}).status_code in (403, 409)
    reader = Searcher(index, encoder=ENCODER)
    assert reader.generation == 2 and reader.exists("n1") and reader.exists("n2") and not reader.exists("d3")


def test_a_write_during_compaction_is_carried_into_the_new_generation(index):
    from xretrieve.compact import compact_live
    from xretrieve.formats import Document
    from xretrieve.update import LiveWriter

    lock = WriterLock(index, "test")
    searcher = Searcher(index, encoder=ENCODER)
    writer = LiveWriter(searcher, lock)
    writer.upsert([Document("before", "logged before the compaction", "", "en")])
    swapped = []

    def open_generation(manifest):
        # the compaction has built the new generation; a write arrives before the switch
        writer.upsert([Document("during", "logged while it was built", "", "en")])
        writer.delete(["d1"])
        return Searcher(index, encoder=ENCODER, manifest=manifest)

    assert compact_live(writer, open_generation, swapped.append) == 1
    [fresh] = swapped
    assert writer.searcher is fresh and fresh.generation == 1
    assert fresh.exists("before") and fresh.exists("during") and not fresh.exists("d1")
    assert fresh.changes.seq == 3 and set(fresh.changes.added) == {"during"}  # "before" is in the base now
    writer.upsert([Document("after", "logged after it", "", "en")])
    writer.close()
    lock.release()
    reader = Searcher(index, encoder=ENCODER)
    assert [reader.exists(d) for d in ("before", "during", "after", "d1")] == [True, True, True, False]
    assert np.allclose(reader.search(["logged while it was built"], k=1)[0][0].score, 1.0)


# --- a real server process: kill -9, concurrent searches, and the CLI as a second writer --------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "xretrieve", "serve", "--index", str(index), "--port", str(port), "--writable"]
    command += ["--write-rate-limit", "0"]  # the test writes back to back; the limit has its own test
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not become ready")


def test_a_real_server_keeps_acknowledged_writes_over_kill_9_and_never_shows_half_a_batch(tiny_model, tmp_path):
    from xretrieve import cli

    corpus = write_corpus(tmp_path / "corpus.jsonl", 30)
    index = tmp_path / "idx"
    assert cli.main(["index", "--corpus", str(corpus), "--out", str(index), "--model", str(tiny_model), "--quiet"]) == 0
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(index, port)
    problems: list[str] = []
    try:
        # a search that returns every document (k=200) must see each batch of 5 whole or not at all
        batches = [
            [{"id": f"b{b}-{i}", "text": f"{WORDS[b]} {WORDS[b + 12]} {b}", "lang": "en"} for i in range(5)]
            for b in range(12)
        ]
        done = threading.Event()

        def searcher_client(offset: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as http:
                while not done.is_set():
                    for b in range(offset, len(batches), 2):
                        response = http.post("/v1/search", json={"query": batches[b][0]["text"], "k": 200})
                        if response.status_code != 200:
                            problems.append(f"search {response.status_code}")
                            continue
                        seen = sum(hit["id"].startswith(f"b{b}-") for hit in response.json()["hits"])
                        if seen not in (0, 5):
                            problems.append(f"batch {b}: {seen} of 5 documents visible")

        threads = [threading.Thread(target=searcher_client, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        with httpx.Client(base_url=url, timeout=30) as http:
            for b, batch in enumerate(batches):
                assert http.post("/v1/documents", json={"documents": batch}).json() == {"upserted": 5}
                hits = http.post("/v1/search", json={"query": batch[0]["text"], "k": 200}).json()["hits"]
                found = sorted(hit["id"] for hit in hits if hit["id"].startswith(f"b{b}-"))
                assert found == sorted(doc["id"] for doc in batch)  # read your writes
            assert http.delete("/v1/documents/d2").status_code == 200
        done.set()
        for thread in threads:
            thread.join()
        assert problems == []
        # a second writer, the CLI, is refused while the server writes
        assert cli.main(["delete", "--index", str(index), "--ids", "d3"]) == 2
    finally:
        server.send_signal(signal.SIGKILL)  # acknowledged writes must survive this
        server.wait()
    assert server.returncode == -signal.SIGKILL
    server = start_server(index, port)
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.get("/v1/documents/b11-4").json()["text"] == batches[11][0]["text"]
            assert http.get("/v1/documents/d2").status_code == 404
            assert http.get("/v1/documents/d3").status_code == 200
            hits = http.post("/v1/search", json={"query": batches[7][0]["text"], "k": 200}).json()["hits"]
            assert len(hits) == 30 - 1 + 60 and sum(hit["id"].startswith("b7-") for hit in hits) == 5
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert json.loads((index / "manifest.json").read_text()).get("live") is None  # nothing compacted here
    assert os.path.getsize(index / "live" / "wal-000000.log") > 0


def test_serve_on_ray_refuses_writes_in_one_line(index, capsys):
    from xretrieve import cli

    assert cli.main(["serve", "--index", str(index), "--ray", "--writable"]) == 2
    err = capsys.readouterr().err
    assert "serve --ray --writable: writes are not served on Ray" in err and "Traceback" not in err


def test_a_full_disk_answers_507_and_applies_nothing(index, monkeypatch):
    import xretrieve.live

    real = xretrieve.live.os.pwrite
    with client_for(index) as client:
        ready(client)

        def full(fd, data, offset):
            real(fd, data[: len(data) // 2], offset)  # half of the record reaches the file, then the disk is full
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(xretrieve.live.os, "pwrite", full)
        response = client.post("/v1/documents", json={"documents": [{"id": "x", "text": "never made"}]})
        assert response.status_code == 507 and "No space left on device" in response.json()["error"]
        assert client.get("/v1/documents/x").status_code == 404
        monkeypatch.setattr(xretrieve.live.os, "pwrite", real)
        assert client.post("/v1/documents", json={"documents": [{"id": "y", "text": "made"}]}).status_code == 200
    reader = Searcher(index, encoder=ENCODER)  # the half record was cut off: the log reads cleanly
    assert reader.exists("y") and not reader.exists("x") and reader.changes.seq == 1


def test_a_batch_is_encoded_in_chunks_within_the_search_budgets(index):
    docs = [{"id": f"c{i}", "text": f"chunked passage number {i}", "lang": "en"} for i in range(5)]
    with client_for(index, max_encode_batch=8) as client:
        ready(client)
        before = ENCODER.calls
        assert client.post("/v1/documents", json={"documents": docs}).status_code == 200
        assert ENCODER.calls - before == 3  # 2 + 2 + 1 (a quarter of 8): a search waits behind one at most
        searcher = client.app.state.xretrieve.current().searcher
        stored = np.stack([searcher.changes.added[d["id"]].vector for d in docs])
        np.testing.assert_array_equal(stored, ENCODER.encode_passages([d["text"] for d in docs]))


def test_waiting_searches_go_before_write_work_but_writes_get_their_turn(index, monkeypatch):
    """The engine runs write chunks as background work: with searches waiting, SEARCH_TURNS batches of them
    between two writes; with none waiting, a write at once."""
    import asyncio

    from xretrieve.serve import batching

    order: list[str] = []
    real = batching._search_batch
    monkeypatch.setattr(batching, "_search_batch", lambda batch: order.append("s") or real(batch))
    searcher = Searcher(index, encoder=ENCODER)
    gate = threading.Event()

    async def scenario() -> None:
        engine = batching.SearchEngine(searcher, max_encode_batch=1)
        await engine.start()
        first = asyncio.ensure_future(engine.write(lambda: gate.wait(10) and order.append("w")))
        await asyncio.sleep(0.05)  # the worker is busy with the first write
        searches = [asyncio.ensure_future(engine.search([f"q{i}"], 3, None, f"c{i}")) for i in range(10)]
        writes = [asyncio.ensure_future(engine.write(order.append, "w")) for _ in range(2)]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(first, *searches, *writes)
        alone = await engine.write(lambda: "done")  # no search waits: it runs at once
        await engine.stop()
        assert alone == "done"

    asyncio.run(scenario())
    turns = batching.SEARCH_TURNS
    assert order == ["w"] + ["s"] * turns + ["w"] + ["s"] * turns + ["w"] + ["s"] * (10 - 2 * turns)
