"""The HTTP API, started for real: TestClient for endpoints, limits and auth; one test over a real socket."""

import json
import threading
import time

import pytest
from conftest import write_corpus
from fastapi.testclient import TestClient

from xretrieve.config import IndexConfig
from xretrieve.errors import UserError
from xretrieve.index import build_index
from xretrieve.model import BiEncoder
from xretrieve.search import Searcher
from xretrieve.server import ServerConfig, create_app

KEY = "s3cret-0123456789abcdef"


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return BiEncoder(str(tiny_model))


@pytest.fixture(scope="module")
def index(tmp_path_factory, encoder):
    folder = tmp_path_factory.mktemp("server")
    corpus = write_corpus(folder / "corpus.jsonl", 40)
    return build_index(
        IndexConfig(out=str(folder / "idx"), corpus=str(corpus), num_shards=2, progress=False), encoder=encoder
    )


def wait_ready(client, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("server never became ready")


@pytest.fixture
def make_client(index, encoder):
    clients = []

    def make(**settings):
        config = ServerConfig(index=str(index), **settings)
        client = TestClient(create_app(config, load_searcher=lambda: Searcher(config.index, encoder=encoder)))
        client.__enter__()
        clients.append(client)
        wait_ready(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_search_one_query_matches_the_searcher(make_client, index, encoder):
    client = make_client()
    response = client.post("/v1/search", json={"query": "the quick brown fox", "k": 5})
    assert response.status_code == 200
    hits = response.json()["hits"]
    expected = Searcher(index, encoder=encoder).search(["the quick brown fox"], k=5)[0]
    assert [h["id"] for h in hits] == [h.docid for h in expected]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert hits[0]["score"] == pytest.approx(expected[0].score, abs=1e-5)
    corpus = {
        json.loads(line)["id"]: json.loads(line) for line in (index.parent / "corpus.jsonl").read_text().splitlines()
    }
    assert all(h["text"] == corpus[h["id"]]["text"] and h["lang"] == corpus[h["id"]]["lang"] for h in hits)


def test_batch_language_filter_and_fields(make_client):
    client = make_client()
    response = client.post(
        "/v1/search", json={"queries": ["water river", "der hund"], "k": 4, "lang": ["fi", "ja"], "fields": ["lang"]}
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 2
    for result in results:
        assert len(result["hits"]) == 4
        assert {h["lang"] for h in result["hits"]} <= {"fi", "ja"}
        assert all("text" not in h and "title" not in h for h in result["hits"])


def test_documents_info_health(make_client):
    client = make_client()
    assert client.get("/v1/documents/d3").json()["id"] == "d3"
    missing = client.get("/v1/documents/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    info = client.get("/v1/info").json()
    assert info["index"]["rows"] == 40 and info["shards"] == 2 and info["langs"]["fi"] == 8
    assert info["model"]["dim"] == 32 and info["has_texts"] is True
    assert client.get("/healthz").json() == {"status": "ok"}
    assert "/v1/search" in client.get("/openapi.json").json()["paths"]
    assert "<form" in client.get("/").text


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"query": "x" * 101}, 422, "101 characters; the limit is 100"),
        ({"query": "fox", "k": 51}, 422, "k must be between 1 and 50"),
        ({"query": "fox", "k": 0}, 422, "k must be between 1 and 50"),
        ({"queries": ["a"] * 9}, 422, "9 queries in one request; the limit is 8"),
        ({"queries": []}, 422, "'queries' is empty"),
        ({"query": "   "}, 422, "query 0 is empty"),
        ({}, 422, "exactly one of 'query' or 'queries'"),
        ({"query": "a", "queries": ["b"]}, 422, "exactly one of"),
        ({"query": "fox", "lang": ["xx"]}, 422, "no documents in xx"),
        ({"query": "fox", "fields": ["body"]}, 422, "unknown fields"),
        ({"query": 5}, 422, "query"),
        ({"query": "fox", "k": "ten"}, 422, "k"),
    ],
)
def test_bad_requests_get_a_4xx_json_error(make_client, body, status, message):
    client = make_client(max_query_chars=100, max_k=50, max_batch=8)
    response = client.post("/v1/search", json=body)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_malformed_json_and_oversized_body(make_client):
    client = make_client(max_body_bytes=200)
    response = client.post("/v1/search", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "error" in response.json()
    response = client.post("/v1/search", json={"query": "x" * 300})
    assert response.status_code == 413 and "larger than 200 bytes" in response.json()["error"]


def test_streamed_body_over_the_limit(make_client):
    client = make_client(max_body_bytes=200)

    def chunks():
        yield b'{"query": "'
        for _ in range(10):
            yield b"x" * 50
        yield b'"}'

    response = client.post("/v1/search", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "larger than 200 bytes" in response.json()["error"]


def test_request_timeout(make_client):
    client = make_client(timeout_s=0.05, batch_wait_ms=500, max_encode_batch=64)
    response = client.post("/v1/search", json={"query": "fox"})
    assert response.status_code == 504 and "longer than 0.05 s" in response.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_api_keys(make_client):
    client = make_client(api_keys=(KEY,))
    assert client.post("/v1/search", json={"query": "fox"}).status_code == 401
    assert client.post("/v1/search", json={"query": "fox"}, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/v1/search", json={"query": "fox"}, headers={"X-API-Key": KEY}).status_code == 200
    assert client.get("/v1/info", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert client.get("/v1/documents/d1").status_code == 401
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200


def test_non_loopback_binding_needs_keys_or_an_explicit_waiver():
    with pytest.raises(UserError, match="--api-key"):
        ServerConfig(index="x", host="0.0.0.0").check_binding()
    ServerConfig(index="x", host="0.0.0.0", api_keys=(KEY,)).check_binding()
    ServerConfig(index="x", host="0.0.0.0", allow_no_auth=True).check_binding()
    ServerConfig(index="x", host="127.0.0.1").check_binding()
    ServerConfig(index="x", host="::1").check_binding()


def test_cors_is_off_by_default_and_on_when_asked(make_client):
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in make_client().options("/v1/search", headers=preflight).headers
    allowed = make_client(cors_origins=("https://example.org",)).options("/v1/search", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == "https://example.org"


def test_not_ready_until_loaded(index, encoder):
    release = threading.Event()

    def slow_loader():
        release.wait(10)
        return Searcher(index, encoder=encoder)

    with TestClient(create_app(ServerConfig(index=str(index)), load_searcher=slow_loader)) as client:
        assert client.get("/readyz").status_code == 503
        response = client.post("/v1/search", json={"query": "fox"})
        assert response.status_code == 503 and "still loading" in response.json()["error"]
        assert client.get("/healthz").status_code == 200
        release.set()
        wait_ready(client)
        assert client.post("/v1/search", json={"query": "fox"}).status_code == 200


def test_concurrent_requests_are_encoded_together(make_client):
    client = make_client(batch_wait_ms=200, max_encode_batch=64)
    statuses = []

    def one(i):
        statuses.append(client.post("/v1/search", json={"query": f"water river {i}", "k": 3}).status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 12
    stats = client.get("/v1/info").json()["stats"]
    assert stats["requests"] == 12 and stats["batches"] < 12


def test_reload_swaps_in_another_index_without_dropping_requests(make_client, index, tmp_path, encoder):
    other = build_index(
        IndexConfig(out=str(tmp_path / "other"), corpus=str(write_corpus(tmp_path / "c.jsonl", 10)), progress=False),
        encoder=encoder,
    )
    client = make_client(api_keys=(KEY,))
    headers = {"X-API-Key": KEY}
    failures = []
    stop = threading.Event()

    def keep_searching():
        while not stop.is_set():
            if client.post("/v1/search", json={"query": "fox", "k": 3}, headers=headers).status_code != 200:
                failures.append(1)

    worker = threading.Thread(target=keep_searching)
    worker.start()
    response = client.post("/v1/admin/reload", json={"index": str(other)}, headers=headers)
    stop.set()
    worker.join()
    assert response.status_code == 200 and response.json()["rows"] == 10
    assert failures == []
    assert client.get("/v1/info", headers=headers).json()["index"]["rows"] == 10
    assert client.post("/v1/admin/reload", json={"index": str(tmp_path / "none")}, headers=headers).status_code == 422


def test_reload_needs_keys(make_client):
    assert make_client().post("/v1/admin/reload", json={}).status_code == 403


def test_real_socket(index, encoder):
    import httpx
    import uvicorn

    config = ServerConfig(index=str(index))
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config, load_searcher=lambda: Searcher(index, encoder=encoder)),
            host="127.0.0.1",
            port=0,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        while httpx.get(f"{base}/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        response = httpx.post(f"{base}/v1/search", json={"query": "the lazy dog", "k": 2})
        assert response.status_code == 200 and len(response.json()["hits"]) == 2
    finally:
        server.should_exit = True
        thread.join(10)


class RecordingSearcher:
    """Stands in for a Searcher in SearchEngine tests: slow encodes, records each batch's size."""

    def __init__(self, name: str, encode_seconds: float = 0.05):
        self.name, self.encode_seconds, self.batch_sizes = name, encode_seconds, []
        self.encoder = self

    def encode_queries(self, texts, batch_size):
        self.batch_sizes.append(len(texts))
        time.sleep(self.encode_seconds)
        return [[float(len(t))] for t in texts]

    def token_lengths(self, texts):
        return [len(t.split()) for t in texts]

    def search_vectors(self, vectors, k, langs):
        return [[(self.name, v[0])] for v in vectors]


def run_engine(engine, coroutine_factory):
    import asyncio

    async def main():
        await engine.start()
        try:
            return await coroutine_factory()
        finally:
            await engine.stop()

    return asyncio.run(main())


def test_requests_queued_during_a_batch_form_the_next_without_any_wait():
    import asyncio

    from xretrieve.server import SearchEngine

    searcher = RecordingSearcher("a")
    engine = SearchEngine(searcher, max_encode_batch=4, batch_wait_ms=0)

    async def many():
        return await asyncio.gather(*(engine.search([f"q{i}" * (i + 1)], 1, None) for i in range(10)))

    answers = run_engine(engine, many)
    assert [result[0][0][1] for _, result in answers] == [2.0 * (i + 1) for i in range(10)]  # each its own
    assert max(searcher.batch_sizes) <= 4 and sum(searcher.batch_sizes) == 10
    assert len(searcher.batch_sizes) < 10  # batched, though nobody waited for company


def test_a_request_bigger_than_the_encode_batch_is_split_and_answered_in_order():
    import asyncio

    from xretrieve.server import SearchEngine

    searcher = RecordingSearcher("a")
    engine = SearchEngine(searcher, max_encode_batch=3, batch_wait_ms=0)

    async def mixed():
        return await asyncio.gather(
            engine.search(["x"], 1, None, "c1"),
            engine.search(["y" * i for i in range(1, 6)], 1, None, "c2"),
            engine.search(["zz"], 1, None, "c3"),
        )

    answers = run_engine(engine, mixed)
    values = [[hits[0][1] for hits in result] for _, result in answers]
    assert values == [[1.0], [1.0, 2.0, 3.0, 4.0, 5.0], [2.0]]  # each text's own answer, in the request's order
    assert max(searcher.batch_sizes) <= 3 and sum(searcher.batch_sizes) == 7


def test_hits_come_with_the_searcher_that_found_them_across_a_swap():
    import asyncio

    from xretrieve.server import SearchEngine

    old, new = RecordingSearcher("old", encode_seconds=0.2), RecordingSearcher("new")
    engine = SearchEngine(old, batch_wait_ms=0)

    async def swap_mid_search():
        first = asyncio.ensure_future(engine.search(["q"], 1, None))
        await asyncio.sleep(0.05)  # the first batch is being encoded by `old`
        engine.swap(new)
        second = await engine.search(["q"], 1, None)
        return await first, second

    (searcher1, result1), (searcher2, result2) = run_engine(engine, swap_mid_search)
    assert searcher1 is old and result1[0][0][0] == "old"
    assert searcher2 is new and result2[0][0][0] == "new"


def test_the_app_serves_again_after_a_restart(index, encoder):
    config = ServerConfig(index=str(index))
    app = create_app(config, load_searcher=lambda: Searcher(config.index, encoder=encoder))
    for _ in range(2):
        with TestClient(app) as client:
            wait_ready(client)
            assert client.post("/v1/search", json={"query": "fox", "k": 2}).status_code == 200
