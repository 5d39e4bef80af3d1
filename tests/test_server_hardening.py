"""The server against hostile or careless clients and operators: keys, fair scheduling, quotas, connection
limits, reloads of malformed index folders, documents changed on disk, strict types and page headers.

Scheduling and connection tests use a slow fake searcher; only reload and document tests load a tiny model.
"""

import asyncio
import hashlib
import json
import shutil
import socket
import threading
import time

import numpy as np
import pytest
from conftest import write_corpus
from fastapi.testclient import TestClient
from test_server import run_engine

from xretrieve import cli
from xretrieve.config import IndexConfig
from xretrieve.errors import UserError
from xretrieve.index import build_index
from xretrieve.model import BiEncoder
from xretrieve.search import Hit, Searcher
from xretrieve.server import (
    FairQueue,
    Overloaded,
    RateLimit,
    SearchEngine,
    ServerConfig,
    create_app,
    read_api_keys,
    split_chunks,
    uvicorn_config,
)

KEY, KEY2 = "first-key-0123456789", "second-key-0123456789"


class SlowSearcher:
    """Stands in for a Searcher: each encode sleeps and records its texts; one hit per query; tokens are words."""

    def __init__(self, encode_seconds: float = 0.05):
        self.encode_seconds, self.batches = encode_seconds, []
        self.encoder = self
        self.identity = {"name": "slow"}
        self.manifest = {"rows": 1, "shards": [], "langs": {}}
        self.docs = None

    def token_lengths(self, texts):
        return [len(t.split()) for t in texts]

    def encode_queries(self, texts, batch_size):
        self.batches.append(list(texts))
        time.sleep(self.encode_seconds)
        return np.zeros((len(texts), 1), np.float32)

    def search_vectors(self, vectors, k, langs):
        return [[Hit("d0", 1.0, "en")] for _ in vectors]

    def document(self, docid):
        return None


def wait_ready(client, seconds=30):
    deadline = time.monotonic() + seconds
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "server never became ready"
        time.sleep(0.02)


def fake_client(searcher=None, **settings) -> TestClient:
    searcher = searcher or SlowSearcher(0.0)
    return TestClient(create_app(ServerConfig(index="(fake)", **settings), load_searcher=lambda: searcher))


# ----------------------------------------------------------------------------------------------------------
# keys


@pytest.mark.parametrize("key", ["", "   ", "short"])
def test_empty_or_short_keys_are_refused_not_taken_as_no_auth(key):
    with pytest.raises(UserError, match="api key 1 (is empty|has 5 characters)"):
        ServerConfig(index="x", api_keys=(key,))
    with pytest.raises(UserError, match="--api-key 1"):
        read_api_keys([key], "")


def test_an_empty_key_from_an_unset_variable_stops_serve_on_a_public_address(monkeypatch, capsys):
    started = []
    monkeypatch.setattr("xretrieve.serve.serve", started.append)
    monkeypatch.delenv("XRETRIEVE_API_KEYS", raising=False)
    assert cli.main(["serve", "--index", "x", "--host", "0.0.0.0", "--api-key", ""]) == 2
    assert "--api-key 1 is empty" in capsys.readouterr().err and started == []


def test_spaced_keys_from_the_environment_are_stripped_and_both_work(monkeypatch):
    configs = []
    monkeypatch.setattr("xretrieve.serve.serve", configs.append)
    monkeypatch.setenv("XRETRIEVE_API_KEYS", f"{KEY}, {KEY2} ")
    assert cli.main(["serve", "--index", "x"]) == 0
    assert configs[0].api_keys == (KEY, KEY2)
    with fake_client(api_keys=configs[0].api_keys) as client:
        wait_ready(client)
        for key in (KEY, KEY2):
            assert client.post("/v1/search", json={"query": "fox"}, headers={"X-API-Key": key}).status_code == 200
    monkeypatch.setenv("XRETRIEVE_API_KEYS", f"{KEY},")
    assert cli.main(["serve", "--index", "x"]) == 2  # a trailing comma is an empty key, not nothing
    monkeypatch.setenv("XRETRIEVE_API_KEYS", "  ")
    assert cli.main(["serve", "--index", "x"]) == 0 and configs[-1].api_keys == ()


def test_queue_limits_that_refuse_every_full_request_are_refused_at_start():
    with pytest.raises(UserError, match="--max-client-queue 8 must be at least --max-batch 64"):
        ServerConfig(index="x", max_client_queue=8)
    with pytest.raises(UserError, match="at most --max-queue 100"):
        ServerConfig(index="x", max_queue=100)


def test_401_comes_before_the_body_is_read():
    with fake_client(api_keys=(KEY,), max_body_bytes=200) as client:
        wait_ready(client)
        too_big = client.post("/v1/search", json={"query": "x" * 500})
        assert too_big.status_code == 401  # not 413
        malformed = client.post("/v1/search", content=b"{not json", headers={"content-type": "application/json"})
        assert malformed.status_code == 401  # not 422
        with_key = client.post("/v1/search", json={"query": "x" * 500}, headers={"X-API-Key": KEY})
        assert with_key.status_code == 413

    app = create_app(ServerConfig(index="(fake)", api_keys=(KEY,)), load_searcher=SlowSearcher)
    sent = []

    async def receive():
        raise AssertionError("the body was read before the key was checked")

    async def send(message):
        sent.append(message)

    headers = [(b"content-type", b"application/json"), (b"content-length", b"100")]
    scope = {"type": "http", "method": "POST", "path": "/v1/search", "headers": headers, "query_string": b""}
    asyncio.run(app(scope | {"raw_path": b"/v1/search", "root_path": "", "client": ("1.2.3.4", 5)}, receive, send))
    assert sent[0]["status"] == 401


# ----------------------------------------------------------------------------------------------------------
# fair scheduling


HEAVY = " ".join(["word"] * 16)  # 16 tokens: 4 of them fill a 64-token budget


def test_split_chunks_keeps_both_budgets():
    assert split_chunks([16] * 10, 64, 32) == [(0, 4, 16), (4, 8, 16), (8, 10, 16)]
    assert split_chunks([1, 1, 100, 1], 64, 32) == [(0, 2, 1), (2, 3, 100), (3, 4, 1)]  # padding counts
    assert split_chunks([1] * 5, 1000, 2) == [(0, 2, 1), (2, 4, 1), (4, 5, 1)]
    assert split_chunks([], 64, 32) == []


def test_a_small_query_waits_behind_at_most_one_chunk_of_three_heavy_batches():
    searcher = SlowSearcher(0.05)
    engine = SearchEngine(searcher, max_encode_batch=64, max_encode_tokens=64)
    finished = []

    async def scenario():
        async def one(name, client, texts):
            await engine.search(texts, 1, None, client)
            finished.append(name)

        heavy = [asyncio.create_task(one(f"heavy{i}", "big", [HEAVY] * 16)) for i in range(3)]
        while not searcher.batches:  # the first heavy chunk is being encoded
            await asyncio.sleep(0.005)
        small = asyncio.create_task(one("small", "other", ["three word query"]))
        await asyncio.gather(small, *heavy)

    run_engine(engine, scenario)
    small_batch = next(i for i, batch in enumerate(searcher.batches) if "three word query" in batch)
    assert small_batch == 1  # only the chunk that was running came first
    assert len(searcher.batches[0]) <= 4  # and that was one chunk (64 tokens), not a whole heavy request
    assert finished[0] == "small"
    assert sum(len(b) for b in searcher.batches) == 3 * 16 + 1  # all work done, none twice


def test_clients_are_served_in_turn():
    queue = FairQueue()

    async def scenario():
        loop = asyncio.get_running_loop()
        from xretrieve.server import _Chunk, _Request

        def request(client, n):
            r = _Request(None, n, 1, None, loop.create_future())
            queue.put(client, [_Chunk(r, i, [f"{client}{i}"], 1) for i in range(n)])

        request("a", 3)
        request("b", 2)  # a newcomer goes first
        request("c", 1)
        return [[c.texts[0] for c in queue.take(max_tokens=2, max_texts=2)] for _ in range(3)]

    # c and b are newcomers, so first; then whoever was served least recently; a's two last chunks together
    assert asyncio.run(scenario()) == [["c0", "b0"], ["a0", "b1"], ["a1", "a2"]]


def test_work_of_a_timed_out_request_is_dropped():
    searcher = SlowSearcher(0.05)
    engine = SearchEngine(searcher, max_encode_batch=64, max_encode_tokens=64)

    async def scenario():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(engine.search([HEAVY] * 64, 1, None, "big"), 0.12)  # 16 chunks of 0.05 s
        await asyncio.sleep(0.3)
        assert engine.queue.total == 0 and engine.queue.queued == {}
        return await engine.search(["after"], 1, None, "big")  # the client's quota was given back

    run_engine(engine, scenario)
    assert sum(len(b) for b in searcher.batches if "after" not in b) <= 16  # 3 or 4 chunks, not 64 texts


def test_work_of_a_client_that_left_is_dropped():
    searcher = SlowSearcher(0.05)
    app = create_app(
        ServerConfig(index="(fake)", max_encode_tokens=64, max_encode_batch=64), load_searcher=lambda: searcher
    )
    body = json.dumps({"queries": [HEAVY] * 64}).encode()

    async def scenario():
        async with app.router.lifespan_context(app):
            for _ in range(300):  # the searcher loads in the background
                statuses = []
                await call(app, "GET", "/readyz", b"", statuses)
                if statuses[0] == 200:
                    break
                await asyncio.sleep(0.01)
            statuses = []
            await call(app, "POST", "/v1/search", body, statuses, leave_after=0.12)
            await asyncio.sleep(0.3)
            return statuses

    statuses = asyncio.run(scenario())
    assert statuses == [499]
    assert sum(len(b) for b in searcher.batches) <= 16  # 3 or 4 chunks of 4, then nothing


async def call(app, method, path, body, statuses, leave_after=None):
    """One ASGI request; with `leave_after`, the client disconnects that many seconds after sending it."""
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if messages:
            return messages.pop()
        if leave_after is None:
            await asyncio.Event().wait()
        await asyncio.sleep(leave_after)
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "root_path": ""}
    await app(scope | {"headers": headers, "query_string": b"", "client": ("127.0.0.1", 1)}, receive, send)


def test_a_client_over_its_queue_share_gets_429_and_the_server_full_503():
    searcher = SlowSearcher(0.3)
    engine = SearchEngine(searcher, max_client_queue=3, max_queue=5)

    async def scenario():
        running = asyncio.ensure_future(engine.search(["q"], 1, None, "a"))
        while not searcher.batches:
            await asyncio.sleep(0.005)
        waiting = asyncio.ensure_future(engine.search(["q"] * 3, 1, None, "a"))  # queued: 3 of a's 3
        await asyncio.sleep(0.02)
        with pytest.raises(Overloaded) as mine:
            await engine.search(["q"], 1, None, "a")
        other = asyncio.ensure_future(engine.search(["q"] * 2, 1, None, "b"))  # 5 of 5 queued
        await asyncio.sleep(0.02)
        with pytest.raises(Overloaded) as full:
            await engine.search(["q"], 1, None, "c")
        await asyncio.gather(running, waiting, other)
        return mine.value.status, full.value.status

    assert run_engine(engine, scenario) == (429, 503)


def test_overload_answers_have_retry_after():
    with fake_client(SlowSearcher(0.5), max_client_queue=1, max_batch=1) as client:
        wait_ready(client)
        answers = {}

        def post(name):
            answers[name] = client.post("/v1/search", json={"query": name})

        first = threading.Thread(target=post, args=("first",))
        first.start()
        time.sleep(0.2)  # being encoded
        second = threading.Thread(target=post, args=("second",))
        second.start()
        time.sleep(0.1)  # waiting: this client's share is used
        post("third")
        first.join()
        second.join()
    assert answers["first"].status_code == answers["second"].status_code == 200
    assert answers["third"].status_code == 429 and answers["third"].headers["retry-after"] == "1"


def test_rate_limit():
    now = [0.0]
    limit = RateLimit(2.0, clock=lambda: now[0])
    assert [limit.wait("a"), limit.wait("a")] == [0.0, 0.0]  # a burst of 2
    assert limit.wait("a") == pytest.approx(0.5) and limit.wait("b") == 0.0
    now[0] = 0.5
    assert limit.wait("a") == 0.0 and limit.wait("a") == pytest.approx(0.5)

    with fake_client(rate_limit=1.0, max_body_bytes=100) as client:
        wait_ready(client)
        assert client.post("/v1/search", json={"query": "fox"}).status_code == 200
        again = client.post("/v1/search", json={"query": "x" * 500})
        assert again.status_code == 429 and again.headers["retry-after"] == "1"  # before the body: not 413
        assert client.get("/healthz").status_code == 200  # only /v1/ is limited


def test_timeout_is_504_with_retry_after():
    with fake_client(SlowSearcher(0.5), timeout_s=0.1) as client:
        wait_ready(client)
        response = client.post("/v1/search", json={"query": "fox"})
    assert response.status_code == 504 and response.headers["retry-after"] == "1"
    assert "longer than 0.1 s" in response.json()["error"]


# ----------------------------------------------------------------------------------------------------------
# connection limits, on a real socket


@pytest.fixture
def live_server():
    """Start uvicorn with `uvicorn_config` on a free loopback port; yields a function of settings -> port."""
    import uvicorn

    servers = []

    def start(**settings) -> int:
        config = ServerConfig(index="(fake)", port=0, **settings)
        server = uvicorn.Server(uvicorn_config(create_app(config, load_searcher=SlowSearcher), config))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return server.servers[0].sockets[0].getsockname()[1]

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def read_all(sock: socket.socket, seconds: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection (fails if it keeps it open)."""
    sock.settimeout(seconds)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_head_sent_too_slowly_is_cut_off(live_server):
    port = live_server(header_timeout_s=0.3)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
        started = time.monotonic()
        assert read_all(sock) == b""
        assert time.monotonic() - started < 2


def test_a_body_shorter_than_its_content_length_gets_408(live_server):
    port = live_server(body_timeout_s=0.3)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        head = b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        sock.sendall(head + b'{"query": ')
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408") and b"not received within 0.3 s" in answer


def test_a_head_over_the_size_limit_is_refused(live_server):
    port = live_server(max_header_bytes=4096)
    with socket.create_connection(("127.0.0.1", port)) as sock:  # whole, in one read: measured by the app
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 431")
    with socket.create_connection(("127.0.0.1", port)) as sock:  # unfinished past the limit: h11 stops buffering
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000)
        assert read_all(sock).startswith(b"HTTP/1.1 400")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Small: " + b"a" * 2000 + b"\r\nConnection: close\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 200")


def test_connections_over_the_cap_get_503_at_once(live_server):
    port = live_server(max_connections=2)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    try:
        time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port)) as extra:
            assert read_all(extra, 2.0).startswith(b"HTTP/1.1 503")
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.1)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 200")


# ----------------------------------------------------------------------------------------------------------
# reload, documents: a real index and a tiny model


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return BiEncoder(str(tiny_model))


@pytest.fixture(scope="module")
def index(tmp_path_factory, encoder):
    folder = tmp_path_factory.mktemp("hardening")
    corpus = write_corpus(folder / "corpus.jsonl", 20)
    return build_index(IndexConfig(out=str(folder / "idx"), corpus=str(corpus), progress=False), encoder=encoder)


@pytest.fixture
def served(index, tiny_model, tmp_path):
    """A server on a copy of the index (so tests may damage it), model given by --model, with a key."""
    folder = tmp_path / "served"
    shutil.copytree(index, folder)
    config = ServerConfig(index=str(folder), model=str(tiny_model), api_keys=(KEY,))
    with TestClient(create_app(config), headers={"X-API-Key": KEY}) as client:
        wait_ready(client)
        yield client, folder


def resign(folder, name):
    """Record `name`'s current checksum in the manifest, as an attacker able to write the folder would."""
    manifest = json.loads((folder / "manifest.json").read_text())
    digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    for files in [manifest["docs"]["files"]] + [s["files"] for s in manifest["shards"]]:
        if name in files:
            files[name] = digest
    (folder / "manifest.json").write_text(json.dumps(manifest))


def edit_manifest(change):
    def damage(folder):
        manifest = json.loads((folder / "manifest.json").read_text())
        change(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))

    return damage


def crafted_faiss(folder):
    (folder / "shard-00000.faiss").write_bytes(b"XXXX" + b"\x00" * 64)
    resign(folder, "shard-00000.faiss")


def pickled_offsets(folder):
    np.save(folder / "docs.offsets.npy", np.array([{"a": 1}] * 20, dtype=object), allow_pickle=True)
    resign(folder, "docs.offsets.npy")


MALFORMED = {
    "no shards": (edit_manifest(lambda m: m.pop("shards")), "'shards' must be a list"),
    "no model": (edit_manifest(lambda m: m.pop("model")), "'model' must be an object"),
    "shards a string": (edit_manifest(lambda m: m.update(shards="shard-00000")), "'shards' must be a list"),
    "shards of strings": (edit_manifest(lambda m: m.update(shards=["shard-00000"])), "'shards' must be a list"),
    "shard name a path": (
        edit_manifest(lambda m: m["shards"][0].update(name="../shard-00000")),
        "shards[0].name must be like",
    ),
    "crafted faiss, re-signed": (crafted_faiss, "cannot load the index (RuntimeError"),
    "pickled offsets, re-signed": (pickled_offsets, "docs.offsets.npy: not a plain .npy array"),
    "manifest not json": (lambda f: (f / "manifest.json").write_text("{"), "not valid JSON"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_reload_of_a_malformed_folder_is_a_4xx_and_the_old_index_keeps_serving(served, tmp_path, case):
    client, folder = served
    before = client.post("/v1/search", json={"query": "the quick brown fox", "k": 3}).json()
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    damage, message = MALFORMED[case]
    damage(bad)
    response = client.post("/v1/admin/reload", json={"index": str(bad)})
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]
    assert client.post("/v1/search", json={"query": "the quick brown fox", "k": 3}).json() == before
    assert client.get("/v1/info").json()["index"]["rows"] == 20


def test_reload_reuses_the_encoder_of_the_same_model(served, monkeypatch):
    client, folder = served

    def no_second_model(*args, **kwargs):
        raise AssertionError("a second copy of the model was loaded")

    monkeypatch.setattr("xretrieve.model.BiEncoder", no_second_model)
    response = client.post("/v1/admin/reload", json={})
    assert response.status_code == 200 and response.json()["rows"] == 20


def test_reloads_are_serialised(index, encoder):
    inside, most = [0], [0]
    lock = threading.Lock()

    def slow_reload(folder):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.2)
        with lock:
            inside[0] -= 1
        return Searcher(folder, encoder=encoder)

    config = ServerConfig(index=str(index), api_keys=(KEY,))
    app = create_app(config, load_searcher=lambda: Searcher(index, encoder=encoder), reload_searcher=slow_reload)
    with TestClient(app, headers={"X-API-Key": KEY}) as client:
        wait_ready(client)
        statuses = []
        threads = [
            threading.Thread(target=lambda: statuses.append(client.post("/v1/admin/reload", json={}).status_code))
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert statuses == [200] * 3 and most[0] == 1


def test_documents_changed_on_disk_do_not_leak_into_answers(served):
    client, folder = served
    original = client.get("/v1/documents/d3").json()
    docs = folder / "docs.jsonl"
    docs.write_text(docs.read_text().replace(original["text"], "REPLACED " * 3))  # in place, same inode
    assert client.get("/v1/documents/d3").json() == original
    hits = client.post("/v1/search", json={"query": original["text"], "k": 20}).json()["hits"]
    assert all("REPLACED" not in (h.get("text") or "") for h in hits)


def test_a_damaged_document_row_is_a_clear_error_for_that_request_only(served, tmp_path):
    client, folder = served
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    lines = (bad / "docs.jsonl").read_bytes().split(b"\n")
    lines[3] = b"#" * len(lines[3])  # same length: the offsets still hold
    (bad / "docs.jsonl").write_bytes(b"\n".join(lines))
    resign(bad, "docs.jsonl")
    assert client.post("/v1/admin/reload", json={"index": str(bad)}).status_code == 200
    broken = client.get("/v1/documents/d3")
    assert broken.status_code == 500 and "row 3 is not a JSON document" in broken.json()["error"]
    assert client.get("/v1/documents/d4").status_code == 200


# ----------------------------------------------------------------------------------------------------------
# minor


@pytest.mark.parametrize("k", ["10", True, 3.0, None])
def test_k_must_be_an_integer(k):
    with fake_client() as client:
        wait_ready(client)
        response = client.post("/v1/search", json={"query": "fox", "k": k})
        assert response.status_code == 422 and response.json()["details"][0]["field"] == "body.k"
        assert client.post("/v1/search", json={"query": "fox", "k": 3}).status_code == 200


def test_the_page_forbids_framing_and_foreign_scripts():
    with fake_client() as client:
        page = client.get("/")
    assert page.headers["x-frame-options"] == "DENY"
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    script = page.text.split("<script>", 1)[1].split("</script>", 1)[0]
    import base64

    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert policy["script-src"] == f"'sha256-{digest}'"  # the page's own script and nothing else


def test_counting_tokens_while_another_thread_encodes(encoder):
    # The server counts a request's tokens on one thread while the worker encodes on another; on one shared
    # fast tokenizer the count switched padding off under the encode ("Unable to create tensor"): 500s.
    from conftest import WORDS

    texts = [" ".join(WORDS[:n]) for n in range(1, 30, 3)]
    expected = encoder.encode_queries(texts, batch_size=len(texts))
    stop, failures = threading.Event(), []

    def count():
        while not stop.is_set():
            try:
                assert encoder.token_lengths(texts[::-1]) == [len(t.split()) for t in texts[::-1]]
            except Exception as exc:  # noqa: BLE001 (reported below)
                failures.append(exc)
                return

    counters = [threading.Thread(target=count) for _ in range(2)]
    for thread in counters:
        thread.start()
    try:
        for _ in range(100):
            np.testing.assert_allclose(encoder.encode_queries(texts, batch_size=len(texts)), expected, atol=1e-6)
    finally:
        stop.set()
        for thread in counters:
            thread.join()
    assert failures == []
    # what encoding costs: a text past the model's 64 positions counts as 64 tokens
    assert encoder.token_lengths([" ".join(["fox"] * 100), "fox"]) == [encoder.model.max_seq_length, 1]
