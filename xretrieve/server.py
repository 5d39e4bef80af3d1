"""The HTTP API: FastAPI app factory, `/v1/search` with dynamic micro-batching, documents, info, health.

Concurrent requests are queued and encoded together (up to `max_encode_batch` texts, waiting at most
`batch_wait_ms` for company), on one worker thread so the event loop never blocks on torch or FAISS. The
searcher is loaded once, in the background (`/readyz` says when), and can be swapped for a new index
while requests are being served: a batch keeps the searcher it started with.
"""

# No `from __future__ import annotations`: FastAPI must see the request models defined in
# create_app as real annotations, not strings it cannot resolve.
import asyncio
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from xretrieve.errors import UserError

log = logging.getLogger("xretrieve.server")
DOC_FIELDS = ("title", "text", "lang")


@dataclass
class ServerConfig:
    index: str
    model: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: tuple[str, ...] = ()
    allow_no_auth: bool = False  # explicit waiver for a non-loopback address without keys
    cors_origins: tuple[str, ...] = ()
    max_query_chars: int = 2000
    max_k: int = 1000
    max_batch: int = 64
    max_body_bytes: int = 1 << 20
    timeout_s: float = 30.0
    batch_wait_ms: float = 0.0
    max_encode_batch: int = 32
    # Ray Serve (`--ray`): a cluster address or "local"; replicas per shard and of the router; CPUs per replica
    ray: str | None = None
    shard_replicas: int = 1
    router_replicas: int = 1
    replica_cpus: float = 1.0

    def check_binding(self) -> None:
        if self.api_keys or self.allow_no_auth or is_loopback(self.host):
            return
        raise UserError(
            f"--host {self.host} is reachable from other machines: give --api-key (or XRETRIEVE_API_KEYS), "
            "or --allow-no-auth to serve without authentication on purpose"
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_unicode(text: str) -> bool:
    """False for strings JSON can carry but UTF-8 cannot encode (lone surrogates like "\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Request:
    __slots__ = ("texts", "k", "langs", "future")

    def __init__(self, texts: list[str], k: int, langs: list[str] | None, future: asyncio.Future):
        self.texts, self.k, self.langs, self.future = texts, k, langs, future


class SearchEngine:
    """Micro-batches concurrent requests: one encode per batch, on one worker thread."""

    def __init__(self, searcher, max_encode_batch: int = 32, batch_wait_ms: float = 0.0):
        self.searcher = searcher
        self.max_encode_batch, self.batch_wait = max_encode_batch, batch_wait_ms / 1000
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xretrieve-search")
        self.queue: asyncio.Queue[_Request] | None = None
        self.worker: asyncio.Task | None = None
        self.stats = {"requests": 0, "batches": 0, "queries": 0}

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.worker:
            self.worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def swap(self, searcher) -> None:
        self.searcher = searcher  # batches already running keep the searcher they took

    async def search(self, texts: list[str], k: int, langs: list[str] | None):
        """(the searcher that answered, its hits per text) or (searcher, UserError) for this request's mistake."""
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Request(texts, k, langs, future))
        return await future

    async def _run(self) -> None:
        # Requests that arrive while a batch is being searched wait in the queue and form the next
        # batch, so batching needs no added wait under load; `batch_wait` only helps sparse traffic.
        loop = asyncio.get_running_loop()
        held: _Request | None = None  # taken from the queue but too big for the batch before
        while True:
            batch = [held or await self.queue.get()]
            held, size = None, len(batch[0].texts)
            deadline = loop.time() + self.batch_wait
            while size < self.max_encode_batch:
                try:
                    item = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self.queue.get(), remaining)
                    except TimeoutError:
                        break
                if size + len(item.texts) > self.max_encode_batch:
                    held = item
                    break
                batch.append(item)
                size += len(item.texts)
            batch = [r for r in batch if not r.future.cancelled()]  # timed out while queued
            if not batch:
                continue
            searcher = self.searcher  # the whole batch, and its documents, come from one index
            try:
                results = await loop.run_in_executor(self.executor, self._search_batch, searcher, batch)
            except Exception as exc:  # noqa: BLE001 (handed to each waiting request)
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            for request, result in zip(batch, results, strict=True):
                if not request.future.done():
                    request.future.set_result((searcher, result))

    def _search_batch(self, searcher, batch: list[_Request]) -> list[Any]:
        texts = [t for request in batch for t in request.texts]
        vectors = searcher.encoder.encode_queries(texts, batch_size=max(len(texts), 1))
        self.stats["batches"] += 1
        self.stats["requests"] += len(batch)
        self.stats["queries"] += len(texts)
        results, start = [], 0
        for request in batch:
            part = vectors[start : start + len(request.texts)]
            start += len(request.texts)
            try:
                results.append(searcher.search_vectors(part, k=request.k, langs=request.langs))
            except UserError as exc:
                results.append(exc)  # this request's own mistake (e.g. an unknown language): a 4xx for it alone
        return results


class BodyLimit:
    """ASGI middleware: 413 for a body over `limit` bytes, whether it declares its length or streams it.

    The body is read here (at most `limit` bytes are kept) and replayed to the app, because the app
    turns any error raised while it reads the body into a generic 400.
    """

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._reject(send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await self._reject(send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send) -> None:
        from starlette.responses import JSONResponse

        response = JSONResponse({"error": f"request body larger than {self.limit} bytes"}, status_code=413)
        await response({"type": "http"}, None, send)


def create_app(
    config: ServerConfig,
    load_searcher: Callable[[], Any] | None = None,
    reload_searcher: Callable[[str], Any] | None = None,
):
    """The FastAPI app. `load_searcher` (default: a `Searcher` for `config.index`) runs in the background;
    `reload_searcher(folder)` (default: a `Searcher` for that folder) serves /v1/admin/reload."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from pydantic import BaseModel, Field
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def open_searcher(folder: str):
        from xretrieve.search import Searcher

        return Searcher(folder, model=config.model)

    load = load_searcher or (lambda: open_searcher(config.index))
    reopen = reload_searcher or open_searcher

    class SearchRequest(BaseModel):
        query: str | None = Field(None, description="one query; or give `queries`")
        queries: list[str] | None = Field(None, description="a batch of queries")
        k: int = Field(10, description=f"hits per query, 1..{config.max_k}")
        lang: list[str] | None = Field(None, description="only documents in these languages")
        fields: list[str] = Field(list(DOC_FIELDS), description="document fields to return: title, text, lang")

    class Hit(BaseModel):
        id: str
        score: float
        rank: int
        lang: str | None = None
        title: str | None = None
        text: str | None = None

    class Hits(BaseModel):
        hits: list[Hit]

    class BatchResults(BaseModel):
        results: list[Hits]

    class ReloadRequest(BaseModel):
        index: str | None = Field(None, description="index folder to serve from now on (default: the same)")

    class ApiError(Exception):
        def __init__(self, status: int, message: str):
            self.status, self.message = status, message

    state: dict[str, Any] = {"engine": None, "error": None}

    async def lifespan(app):
        async def load_in_background():
            try:
                searcher = await asyncio.to_thread(load)
                engine = SearchEngine(searcher, config.max_encode_batch, config.batch_wait_ms)
                await engine.start()
                state["engine"] = engine
                log.info("ready: %s", config.index)
            except Exception as exc:  # noqa: BLE001 (reported by /readyz)
                state["error"] = str(exc)
                log.error("could not load %s: %s", config.index, exc)

        loader = asyncio.create_task(load_in_background())
        yield
        loader.cancel()
        if state["engine"]:
            await state["engine"].stop()
        state["engine"] = state["error"] = None  # a restarted app loads afresh, not a stopped engine

    app = FastAPI(
        title="xretrieve",
        version="1",
        lifespan=lifespan,
        description="Cross-lingual dense retrieval: a query in any language, documents in many.",
    )

    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"], allow_headers=["*"]
        )

    app.add_middleware(BodyLimit, limit=config.max_body_bytes)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        details = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")} for e in exc.errors()
        ]
        summary = "; ".join(f"{d['field']}: {d['problem']}" for d in details) or "invalid request"
        return JSONResponse({"error": summary, "details": details}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.exception("internal error on %s", request.url.path)
        return JSONResponse({"error": "internal error"}, status_code=500)

    def authorize(request: Request) -> None:
        if not config.api_keys:
            return
        given = request.headers.get("x-api-key") or ""
        bearer = request.headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            given = given or bearer[7:].strip()
        if not any(hmac.compare_digest(given.encode(), key.encode()) for key in config.api_keys):
            raise ApiError(401, "missing or wrong API key (send it in the X-API-Key header)")

    def engine() -> SearchEngine:
        if state["engine"] is None:
            raise ApiError(
                503,
                "not ready: the index and model are still loading"
                if not state["error"]
                else f"index failed to load: {state['error']}",
            )
        return state["engine"]

    def check(body: SearchRequest) -> list[str]:
        if (body.query is None) == (body.queries is None):
            raise ApiError(422, "give exactly one of 'query' or 'queries'")
        texts = [body.query] if body.query is not None else body.queries
        if not texts:
            raise ApiError(422, "'queries' is empty")
        if len(texts) > config.max_batch:
            raise ApiError(422, f"{len(texts)} queries in one request; the limit is {config.max_batch}")
        for i, text in enumerate(texts):
            if not is_unicode(text):
                raise ApiError(422, f"query {i} is not valid Unicode (it holds a lone surrogate)")
            if not text.strip():
                raise ApiError(422, f"query {i} is empty")
            if len(text) > config.max_query_chars:
                raise ApiError(422, f"query {i} has {len(text)} characters; the limit is {config.max_query_chars}")
        if not 1 <= body.k <= config.max_k:
            raise ApiError(422, f"k must be between 1 and {config.max_k}")
        if not all(is_unicode(lang) for lang in body.lang or ()):
            raise ApiError(422, "lang is not valid Unicode (it holds a lone surrogate)")
        unknown = sorted(set(body.fields) - set(DOC_FIELDS))
        if unknown:
            raise ApiError(422, f"unknown fields {unknown}; choose from {list(DOC_FIELDS)}")
        return texts

    def hit_json(searcher, hit, rank: int, fields: list[str]) -> dict:
        out = {"id": hit.docid, "score": hit.score, "rank": rank}
        if "lang" in fields:
            out["lang"] = hit.lang
        if {"title", "text"} & set(fields):
            doc = searcher.document(hit.docid) or {}
            for name in ("title", "text"):
                if name in fields:
                    out[name] = doc.get(name)
        return out

    @app.post(
        "/v1/search",
        response_model=Hits | BatchResults,
        response_model_exclude_none=True,
        summary="Search one query or a batch",
    )
    async def search(body: SearchRequest, request: Request):
        authorize(request)
        texts = check(body)
        current = engine()
        try:
            searcher, results = await asyncio.wait_for(current.search(texts, body.k, body.lang), config.timeout_s)
        except TimeoutError:
            raise ApiError(504, f"search took longer than {config.timeout_s} s") from None
        if isinstance(results, UserError):
            raise ApiError(422, str(results))
        payload = [{"hits": [hit_json(searcher, h, r, body.fields) for r, h in enumerate(hits, 1)]} for hits in results]
        return payload[0] if body.query is not None else {"results": payload}

    @app.get("/v1/documents/{doc_id}", summary="One document by id")
    async def document(doc_id: str, request: Request):
        authorize(request)
        searcher = engine().searcher
        if searcher.docs is None:
            raise ApiError(404, "this index holds ids only (its corpus was missing when it was built)")
        doc = searcher.document(doc_id)
        if doc is None:
            raise ApiError(404, f"no document {doc_id!r}")
        return doc

    @app.get("/v1/info", summary="Index, model, documents per language, limits")
    async def info(request: Request):
        authorize(request)
        current = engine()
        manifest = current.searcher.manifest
        limits = {k: v for k, v in asdict(config).items() if k.startswith(("max_", "timeout", "batch_"))}
        return {
            "index": {k: manifest.get(k) for k in ("factory", "metric", "dim", "rows", "search_params")},
            "model": current.searcher.encoder.identity,
            "langs": manifest.get("langs", {}),
            "shards": len(manifest.get("shards", [])),
            "has_texts": current.searcher.docs is not None,
            "limits": limits,
            "stats": dict(current.stats),
        }

    @app.post("/v1/admin/reload", summary="Load an index (the same or another) and swap it in without downtime")
    async def reload(body: ReloadRequest, request: Request):
        if not config.api_keys:
            raise ApiError(403, "admin endpoints need the server to run with --api-key")
        authorize(request)
        current = engine()
        folder = body.index or config.index
        try:
            searcher = await asyncio.to_thread(reopen, folder)
        except UserError as exc:
            raise ApiError(422, str(exc)) from None
        current.swap(searcher)
        config.index = folder
        return {"index": folder, "rows": searcher.manifest.get("rows")}

    @app.get("/healthz", summary="The process is up")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="Model and index are loaded")
    async def readyz():
        if state["engine"] is None:
            return JSONResponse(
                {"status": "loading" if not state["error"] else "failed", "error": state["error"]}, status_code=503
            )
        return {"status": "ready"}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return (resources.files("xretrieve") / "static" / "search.html").read_text(encoding="utf-8")

    return app


def configure_logging() -> None:
    """xretrieve's own lines from INFO; other libraries' from WARNING (faiss's loader chatters at INFO)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("xretrieve").setLevel(logging.INFO)


def serve(config: ServerConfig) -> None:
    import uvicorn

    from xretrieve.index import INDEX_KIND
    from xretrieve.manifest import read_manifest

    config.check_binding()
    read_manifest(config.index, INDEX_KIND)  # no index folder there: fail now, not answer 503 for ever
    if config.ray:
        from xretrieve.distributed import serve_on_ray

        return serve_on_ray(config)
    configure_logging()
    started = time.perf_counter()
    failed: list[Exception] = []

    def load_or_stop():
        """The start-up load; if it fails, the server stops and the command exits non-zero (a failed
        /v1/admin/reload, later, leaves the server up with the index it has)."""
        from xretrieve.search import Searcher

        try:
            return Searcher(config.index, model=config.model)
        except Exception as exc:
            failed.append(exc)
            server.should_exit = True
            raise

    log.info("serving %s on http://%s:%d (loading in the background)", config.index, config.host, config.port)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config, load_searcher=load_or_stop), host=config.host, port=config.port, log_level="warning"
        )
    )
    server.run()
    if failed:
        raise UserError(f"{config.index}: could not load the index: {failed[0]}")
    log.info("stopped after %.0f s", time.perf_counter() - started)
