"""The HTTP API: FastAPI app factory, `/v1/search` with fair micro-batching, documents, info, health.

A request's queries are split into chunks of at most `max_encode_tokens` padded tokens and queued per
client (its API key, or its address without keys). The worker takes clients in turn, least recently served
first, one chunk each while the token budget lasts, and encodes what it took together on one thread, so
the event loop never blocks on torch or FAISS and a small request waits behind at most one chunk of anybody
else's work. Work of a request that timed out or whose client left is dropped before it is encoded.

The key and the rate limit are checked in ASGI middleware before any of the body is read. The searcher is
loaded in the background (`/readyz` says when) and can be swapped for a new index while requests are served:
a request is answered by the index that was current when it arrived.
"""

# No `from __future__ import annotations`: FastAPI must see the request models defined in
# create_app as real annotations, not strings it cannot resolve.
import asyncio
import hmac
import logging
import math
import os
import re
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

from xretrieve.config.serve import MIN_KEY_CHARS, ServerConfig, checked_key, is_loopback, read_api_keys  # noqa: F401
from xretrieve.errors import UserError

log = logging.getLogger("xretrieve.server")
DOC_FIELDS = ("title", "text", "lang")
CLIENT = "xretrieve.client"  # where the gate leaves the client's identity in the ASGI scope's state
SHARD_NAME = re.compile(r"shard-\d{5}")


def is_unicode(text: str) -> bool:
    """False for strings JSON can carry but UTF-8 cannot encode (lone surrogates like "\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ----------------------------------------------------------------------------------------------------------
# fair scheduling


class Overloaded(Exception):
    """Work refused at the door: 429 for a client over its own share, 503 when the server is full."""

    def __init__(self, status: int, message: str, retry_after: int = 1):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


class _Request:
    """One request's queries, answered chunk by chunk by the searcher that was current when it arrived."""

    __slots__ = ("searcher", "k", "langs", "query_lang", "future", "hits", "left", "queued")

    def __init__(
        self,
        searcher,
        size: int,
        k: int,
        langs: list[str] | None,
        future: asyncio.Future,
        query_lang: str | None = None,
    ):
        self.searcher, self.k, self.langs, self.future = searcher, k, langs, future
        self.query_lang = query_lang
        self.hits: list = [None] * size
        self.left = size  # queries not yet answered
        self.queued = size  # queries not yet taken into a batch


class _Chunk:
    __slots__ = ("request", "start", "texts", "longest")

    def __init__(self, request: _Request, start: int, texts: list[str], longest: int):
        self.request, self.start, self.texts, self.longest = request, start, texts, longest


def padded_tokens(texts: int, longest: int) -> int:
    """What a batch costs the encoder: every text is padded to the longest."""
    return texts * longest


def split_chunks(lengths: list[int], max_tokens: int, max_texts: int) -> list[tuple[int, int, int]]:
    """(start, end, longest) of consecutive runs of texts within both budgets; a text over the token budget
    goes alone."""
    chunks, start, longest = [], 0, 0
    for i, length in enumerate(lengths):
        top = max(longest, length)
        if i > start and (i - start + 1 > max_texts or padded_tokens(i - start + 1, top) > max_tokens):
            chunks.append((start, i, longest))
            start, top = i, length
        longest = top
    if lengths:
        chunks.append((start, len(lengths), longest))
    return chunks


class FairQueue:
    """Chunks waiting per client; a batch takes clients least recently served first, one chunk each per round.

    A client that arrives is put first; a client that was served goes last (and keeps its place while it has
    nothing queued, so sending requests one after another does not jump the line)."""

    def __init__(self):
        self.lines: OrderedDict[str, deque[_Chunk]] = OrderedDict()
        self.queued: dict[str, int] = {}  # queries waiting per client
        self.total = 0
        self.ready = asyncio.Event()

    def put(self, client: str, chunks: list[_Chunk]) -> None:
        if client not in self.lines:
            if len(self.lines) > 4096:  # forget idle clients; they come back first, as the least served are
                for idle in [c for c, line in self.lines.items() if not line]:
                    del self.lines[idle]
            self.lines[client] = deque()
            self.lines.move_to_end(client, last=False)
        self.lines[client].extend(chunks)
        size = sum(len(chunk.texts) for chunk in chunks)
        self.queued[client] = self.queued.get(client, 0) + size
        self.total += size
        self.ready.set()

    def forget(self, client: str, size: int) -> None:
        """`size` queries of `client` no longer wait: taken into a batch, or their request ended."""
        self.queued[client] -= size
        self.total -= size
        if not self.queued[client]:
            del self.queued[client]

    def take(self, max_tokens: int, max_texts: int) -> list[_Chunk]:
        batch, texts, longest, taken = [], 0, 0, True
        while taken:
            taken = False
            for client in list(self.lines):
                line = self.lines[client]
                while line and line[0].request.future.done():  # timed out, client gone, or failed
                    line.popleft()
                if not line:
                    continue
                chunk = line[0]
                size, top = texts + len(chunk.texts), max(longest, chunk.longest)
                if batch and (size > max_texts or padded_tokens(size, top) > max_tokens):
                    continue
                batch.append(line.popleft())
                texts, longest, taken = size, top, True
                chunk.request.queued -= len(chunk.texts)
                self.forget(client, len(chunk.texts))
                self.lines.move_to_end(client)
        if not any(self.lines.values()):
            self.ready.clear()
        return batch


class RateLimit:
    """A token bucket per client: `rate` requests a second on average, up to max(1, rate) at once."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, max(1.0, rate), clock
        self.buckets: dict[str, tuple[float, float]] = {}  # client: (tokens, when)

    def wait(self, client: str) -> float:
        """0.0 when the client may go (its request is counted), else the seconds until it may."""
        now = self.clock()
        tokens, then = self.buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens < 1:
            self.buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate
        self.buckets[client] = (tokens - 1, now)
        if len(self.buckets) > 10000:  # full buckets hold nothing worth keeping
            full = [c for c, (t, w) in self.buckets.items() if t + (now - w) * self.rate >= self.burst]
            for idle in full:
                del self.buckets[idle]
        return 0.0


class SearchEngine:
    """Fair micro-batching: one encode per batch of chunks, on one worker thread."""

    def __init__(
        self,
        searcher,
        max_encode_batch: int = 32,
        batch_wait_ms: float = 0.0,
        max_encode_tokens: int = 2048,
        max_client_queue: int = 256,
        max_queue: int = 4096,
    ):
        self.searcher = searcher
        self.max_encode_batch, self.batch_wait = max_encode_batch, batch_wait_ms / 1000
        self.max_encode_tokens, self.max_client_queue, self.max_queue = max_encode_tokens, max_client_queue, max_queue
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xretrieve-search")
        self.queue: FairQueue | None = None
        self.worker: asyncio.Task | None = None
        self.stats = {"requests": 0, "batches": 0, "queries": 0, "chunks": 0, "refused": 0}

    async def start(self) -> None:
        self.queue = FairQueue()
        self.worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.worker:
            self.worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def swap(self, searcher) -> None:
        self.searcher = searcher  # requests already queued keep the searcher they came in with

    async def search(
        self, texts: list[str], k: int, langs: list[str] | None, client: str = "", query_lang: str | None = None
    ):
        """(the searcher that answered, its hits per text) or (searcher, UserError) for this request's mistake.
        Raises Overloaded when the client's share or the whole queue is full."""
        searcher = self.searcher
        self._admit(client, len(texts))
        lengths = await asyncio.to_thread(searcher.encoder.token_lengths, texts)
        self._admit(client, len(texts))  # again: others may have queued while this one was tokenized
        future = asyncio.get_running_loop().create_future()
        request = _Request(searcher, len(texts), k, langs, future, query_lang)
        chunks = [
            _Chunk(request, start, texts[start:end], longest)
            for start, end, longest in split_chunks(lengths, self.max_encode_tokens, self.max_encode_batch)
        ]

        def ended(_) -> None:  # answered, timed out or abandoned: what still waits no longer counts
            if request.queued:
                self.queue.forget(client, request.queued)

        future.add_done_callback(ended)
        self.queue.put(client, chunks)
        self.stats["requests"] += 1
        return await future

    def _admit(self, client: str, size: int) -> None:
        if self.queue.queued.get(client, 0) + size > self.max_client_queue:
            self.stats["refused"] += 1
            raise Overloaded(429, f"too many queries of yours are waiting (the limit is {self.max_client_queue})")
        if self.queue.total + size > self.max_queue:
            self.stats["refused"] += 1
            raise Overloaded(503, f"the server is busy ({self.queue.total} queries waiting)")

    async def _run(self) -> None:
        # Chunks that arrive while a batch is searched wait in the queue and form the next batch, so batching
        # needs no added wait under load; `batch_wait` only helps sparse traffic find company.
        loop = asyncio.get_running_loop()
        while True:
            await self.queue.ready.wait()
            if self.batch_wait and self.queue.total < self.max_encode_batch:
                await asyncio.sleep(self.batch_wait)
            batch = self.queue.take(self.max_encode_tokens, self.max_encode_batch)
            if not batch:
                continue
            try:
                answers = await loop.run_in_executor(self.executor, _search_batch, batch)
            except Exception as exc:  # noqa: BLE001 (handed to each waiting request)
                for chunk in batch:
                    if not chunk.request.future.done():
                        chunk.request.future.set_exception(exc)
                continue
            self.stats["batches"] += 1
            self.stats["chunks"] += len(batch)
            self.stats["queries"] += sum(len(chunk.texts) for chunk in batch)
            for chunk, answer in zip(batch, answers, strict=True):
                _deliver(chunk, answer)


def _encode_group(chunk: _Chunk) -> tuple:
    """Chunks with the same key are encoded in one call: one encoder, and for translate-test one searcher and
    one language filter (the filter chooses the languages a query is translated into)."""
    searcher = chunk.request.searcher
    if getattr(searcher, "translate", None) is None:
        return (id(searcher.encoder),)
    return (id(searcher.encoder), id(searcher), tuple(chunk.request.langs or ()))


def _search_batch(batch: list[_Chunk]) -> list[Any]:
    """Per chunk, its hits or its request's UserError."""
    groups: dict[tuple, list[int]] = {}
    for i, chunk in enumerate(batch):
        groups.setdefault(_encode_group(chunk), []).append(i)
    answers: list[Any] = [None] * len(batch)
    for members in groups.values():
        try:
            vectors = _query_vectors([batch[i] for i in members])
        except UserError as exc:
            # a request's queries could not be prepared (a language to guess without lingua): a 4xx for it;
            # where chunks shared the encode, each is tried alone so that only that request gets it
            for i in members:
                answers[i] = exc if len(members) == 1 else _search_batch([batch[i]])[0]
            continue
        start = 0
        for i in members:
            chunk = batch[i]
            part, start = vectors[start : start + len(chunk.texts)], start + len(chunk.texts)
            try:
                answers[i] = chunk.request.searcher.search_vectors(part, k=chunk.request.k, langs=chunk.request.langs)
            except UserError as exc:
                answers[i] = exc  # this request's own mistake (e.g. an unknown language): a 4xx for it alone
    return answers


def _query_vectors(chunks: list[_Chunk]):
    """The vectors of chunks of one encode group, in one encode call (translations included)."""
    texts = [t for chunk in chunks for t in chunk.texts]
    first = chunks[0].request
    if getattr(first.searcher, "translate", None) is None:
        return first.searcher.encoder.encode_queries(texts, batch_size=len(texts))
    query_langs = [chunk.request.query_lang for chunk in chunks for _ in chunk.texts]
    return first.searcher.query_vectors(texts, query_langs, first.langs, batch_size=len(texts))


def _deliver(chunk: _Chunk, answer: Any) -> None:
    request = chunk.request
    if request.future.done():
        return
    if isinstance(answer, UserError):
        request.future.set_result((request.searcher, answer))
        return
    request.hits[chunk.start : chunk.start + len(chunk.texts)] = answer
    request.left -= len(chunk.texts)
    if not request.left:
        request.future.set_result((request.searcher, request.hits))


# ----------------------------------------------------------------------------------------------------------
# ASGI middleware and connection limits


async def _reply(send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    """A JSON error that also closes the connection, so a body nobody reads is not drained first."""
    from starlette.responses import JSONResponse

    response = JSONResponse({"error": message}, status_code=status, headers={"connection": "close", **(headers or {})})
    await response({"type": "http"}, None, send)


class Gate:
    """ASGI middleware in front of the app: 431 for a head over `max_header_bytes`; under /v1/, 401 without a
    valid API key and 429 over the rate limit; all before any of the body is read. The client's identity
    (its key's number, or its address without keys) goes into the scope's state for fair scheduling."""

    def __init__(self, app, keys: tuple[str, ...], rate_limit: float, max_header_bytes: int):
        self.app, self.keys, self.max_header_bytes = app, [key.encode() for key in keys], max_header_bytes
        self.rate = RateLimit(rate_limit) if rate_limit > 0 else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # h11 bounds only a head still incomplete after a read; one that arrives whole is measured here
        head = (
            len(scope.get("raw_path") or b"")
            + len(scope["query_string"])
            + sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        )
        if head > self.max_header_bytes:
            return await _reply(send, 431, f"request head larger than {self.max_header_bytes} bytes")
        if not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        client = self.client(scope)
        if client is None:
            return await _reply(send, 401, "missing or wrong API key (send it in the X-API-Key header)")
        wait = self.rate.wait(client) if self.rate else 0.0
        if wait:
            retry = math.ceil(wait)
            return await _reply(send, 429, f"rate limit: retry in {retry} s", {"retry-after": str(retry)})
        scope.setdefault("state", {})[CLIENT] = client
        await self.app(scope, receive, send)

    def client(self, scope) -> str | None:
        if not self.keys:
            return f"addr:{scope['client'][0]}" if scope.get("client") else "addr:?"
        headers = dict(scope["headers"])
        given = headers.get(b"x-api-key", b"").strip()
        bearer = headers.get(b"authorization", b"")
        if not given and bearer[:7].lower() == b"bearer ":
            given = bearer[7:].strip()
        if not given:
            return None
        matches = [hmac.compare_digest(given, key) for key in self.keys]  # all compared: no early exit
        return f"key:{matches.index(True)}" if any(matches) else None


class BodyLimit:
    """ASGI middleware: 413 for a body over `limit` bytes, whether it declares its length or streams it, and
    408 for one not received within `timeout` seconds (a Content-Length that promises more than comes).

    The body is read here and replayed to the app, because the app turns any error raised while it reads
    the body into a generic 400.
    """

    def __init__(self, app, limit: int, timeout: float):
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = f"request body larger than {self.limit} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _reply(send, 413, too_big)
        body = bytearray()
        try:
            async with asyncio.timeout(self.timeout):
                more = True
                while more:
                    message = await receive()
                    if message["type"] != "http.request":  # the client went away
                        return
                    body += message.get("body", b"")
                    more = message.get("more_body", False)
                    if len(body) > self.limit:
                        return await _reply(send, 413, too_big)
        except TimeoutError:
            return await _reply(send, 408, f"request body not received within {self.timeout:g} s")
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def guarded_h11(max_connections: int, header_timeout_s: float) -> type:
    """uvicorn's h11 protocol with a cap on open connections and a deadline for each request's head.

    uvicorn has neither: half-open connections pile up until the process runs out of file descriptors, and a
    head sent a byte at a time is waited for forever. h11 (unlike httptools) also bounds the head's size, by
    uvicorn's `h11_max_incomplete_event_size`. Bodies have their deadline in `BodyLimit`."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11(H11Protocol):
        head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                transport.close()
                return
            self._await_head()

        def _await_head(self) -> None:
            self._stop_head_timer()
            self.head_timer = self.loop.call_later(header_timeout_s, self._head_late)

        def _stop_head_timer(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None

        def _head_late(self) -> None:
            # no request in progress: the head is late, or a body is still trickling after the answer
            if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
                self.transport.close()

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE and self.head_timer is not None:
                self._stop_head_timer()  # the head is in; the body's deadline is BodyLimit's

        def on_response_complete(self) -> None:
            self._await_head()  # before super(): a pipelined request it handles stops the timer again
            super().on_response_complete()

        def connection_lost(self, exc) -> None:
            self._stop_head_timer()
            super().connection_lost(exc)

    return GuardedH11


def uvicorn_config(app, config: ServerConfig):
    """The uvicorn settings that enforce the connection limits of `config`."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level="warning",
        http=guarded_h11(config.max_connections, config.header_timeout_s),
        h11_max_incomplete_event_size=config.max_header_bytes,
    )


# ----------------------------------------------------------------------------------------------------------
# loading an index


def check_index_manifest(folder: str | Path) -> dict:
    """The index manifest, its shape checked before anything is opened: a UserError names the field."""
    from xretrieve.docstore import DOCS_FILE, OFFSETS_FILE
    from xretrieve.index import INDEX_KIND
    from xretrieve.manifest import MANIFEST_NAME, read_manifest

    manifest = read_manifest(folder, INDEX_KIND)
    where = Path(folder) / MANIFEST_NAME

    def files_of(value, field: str) -> dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise UserError(f"{where}: {field} must be an object of file name: sha256")
        if any("/" in name or "\\" in name or name.startswith(".") for name in value):
            raise UserError(f"{where}: {field} names a file outside the index folder")
        return value

    model = manifest.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not isinstance(model.get("dim"), int):
        raise UserError(f"{where}: 'model' must be an object with a 'name' and an integer 'dim'")
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not all(isinstance(entry, dict) for entry in shards):
        raise UserError(f"{where}: 'shards' must be a list of shard objects")
    for i, entry in enumerate(shards):
        if not isinstance(entry.get("name"), str) or not SHARD_NAME.fullmatch(entry["name"]):
            raise UserError(f"{where}: shards[{i}].name must be like 'shard-00000'")
        files_of(entry.get("files"), f"shards[{i}].files")
    docs = manifest.get("docs")
    if docs is not None:
        files = files_of(docs.get("files") if isinstance(docs, dict) else None, "docs.files")
        if not {DOCS_FILE, OFFSETS_FILE} <= set(files):
            raise UserError(f"{where}: docs.files must list {DOCS_FILE} and {OFFSETS_FILE}")
    return manifest


def open_searcher(folder: str, model: str | None, encoder=None, translate: bool = True, translator=None):
    """A Searcher for `folder`, serving documents from a verified copy in memory; `encoder` is reused when
    it is the model the index names (or `model`), so a reload does not load a second copy of it, and so is
    `translator` (its long-lived Apertium pipelines)."""
    from xretrieve.docstore import DocStore
    from xretrieve.search import Searcher

    manifest = check_index_manifest(folder)
    wanted = model or manifest["model"]["name"]
    if os.path.isdir(wanted):
        wanted = str(Path(wanted).resolve())  # as BiEncoder names a model folder
    reuse = encoder if encoder is not None and getattr(encoder, "name", None) == wanted else None
    searcher = Searcher(folder, model=model, encoder=reuse, translate=translate, translator=translator)
    if searcher.translate is not None:
        searcher.translate.warm_up(
            (searcher.manifest.get("adapt") or {}).get("langs", [])
        )  # start pipelines and the language guesser now, not on the first query
    if searcher.docs is not None:
        searcher.docs = DocStore(searcher.folder, list(searcher.docs.rows), searcher.manifest["docs"]["files"])
    return searcher


def _translator(state: dict):
    """The loaded index's query translator, kept across reloads (its pipelines are already running)."""
    engine = state.get("engine")
    translate = getattr(engine.searcher, "translate", None) if engine else None
    return translate.translator if translate is not None else None


def _translate_info(searcher) -> dict | None:
    translate = getattr(searcher, "translate", None)
    if translate is None:
        return None
    return {"weight": translate.weight, "targets": translate.targets, "stats": dict(translate.stats)}


def load_problem(folder: str, exc: Exception) -> str:
    """One line naming what failed when an index folder would not load."""
    if isinstance(exc, UserError):
        return str(exc)
    last = (str(exc).strip().splitlines() or [""])[-1]
    return f"{folder}: cannot load the index ({type(exc).__name__}: {last})"


# ----------------------------------------------------------------------------------------------------------
# the app


def page_headers(html: str) -> dict[str, str]:
    """A CSP letting only the page's own inline script and style run, talking only to this server; no framing."""
    import base64
    import hashlib

    def allowed(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.DOTALL)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)

    policy = (
        f"default-src 'none'; script-src {allowed('script')}; style-src {allowed('style')}; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "content-security-policy": policy,
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
    }


async def _client_gone(receive) -> None:
    """Returns when the client disconnects (the body was read already, so the next message is that)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def create_app(
    config: ServerConfig,
    load_searcher: Callable[[], Any] | None = None,
    reload_searcher: Callable[[str], Any] | None = None,
):
    """The FastAPI app. `load_searcher` (default: `open_searcher` for `config.index`) runs in the background;
    `reload_searcher(folder)` (default: `open_searcher`, reusing the loaded encoder) serves /v1/admin/reload."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from pydantic import BaseModel, Field
    from starlette.exceptions import HTTPException as StarletteHTTPException

    state: dict[str, Any] = {"engine": None, "error": None}
    load = load_searcher or (lambda: open_searcher(config.index, config.model, translate=config.translate))
    reopen = reload_searcher or (
        lambda folder: open_searcher(
            folder, config.model, state["engine"].searcher.encoder, config.translate, _translator(state)
        )
    )
    reloading = asyncio.Lock()  # one reload at a time: each holds a whole index in memory while it loads

    class SearchRequest(BaseModel):
        query: str | None = Field(None, description="one query; or give `queries`")
        queries: list[str] | None = Field(None, description="a batch of queries")
        k: int = Field(10, strict=True, description=f"hits per query, 1..{config.max_k} (an integer)")
        lang: list[str] | None = Field(None, description="only documents in these languages")
        query_lang: str | None = Field(
            None, description="the queries' language, for translate-test (guessed when absent)", max_length=16
        )
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
        def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
            self.status, self.message, self.headers = status, message, headers

    async def lifespan(app):
        async def load_in_background():
            try:
                searcher = await asyncio.to_thread(load)
                engine = SearchEngine(
                    searcher,
                    config.max_encode_batch,
                    config.batch_wait_ms,
                    config.max_encode_tokens,
                    config.max_client_queue,
                    config.max_queue,
                )
                await engine.start()
                state["engine"] = engine
                log.info("ready: %s", config.index)
            except Exception as exc:  # noqa: BLE001 (reported by /readyz)
                state["error"] = load_problem(config.index, exc)
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

    # Added innermost first: CORS (outermost, so preflights and errors carry its headers), then the key and
    # rate limit, then the body limit, all before FastAPI reads or validates anything.
    app.add_middleware(BodyLimit, limit=config.max_body_bytes, timeout=config.body_timeout_s)
    app.add_middleware(
        Gate, keys=config.api_keys, rate_limit=config.rate_limit, max_header_bytes=config.max_header_bytes
    )
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"], allow_headers=["*"]
        )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

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

    def document_of(searcher, docid: str) -> dict | None:
        try:
            return searcher.document(docid)
        except UserError as exc:  # a damaged store row: this request fails, clearly, the server goes on
            raise ApiError(500, f"document {docid!r} cannot be read: {exc}") from None

    def hit_json(searcher, hit, rank: int, fields: list[str]) -> dict:
        out = {"id": hit.docid, "score": hit.score, "rank": rank}
        if "lang" in fields:
            out["lang"] = hit.lang
        if {"title", "text"} & set(fields):
            doc = document_of(searcher, hit.docid) or {}
            for name in ("title", "text"):
                if name in fields:
                    out[name] = doc.get(name)
        return out

    async def answer(request: Request, work):
        """`work`'s result; its work is dropped when the client leaves (499) or the timeout passes (504)."""
        task, gone = asyncio.ensure_future(work), asyncio.ensure_future(_client_gone(request.receive))
        try:
            done, _ = await asyncio.wait({task, gone}, timeout=config.timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            task.cancel()  # no-op when it finished; else its queued chunks are dropped
        if task in done:
            try:
                return task.result()
            except Overloaded as exc:
                raise ApiError(exc.status, str(exc), {"retry-after": str(exc.retry_after)}) from None
        if gone in done:
            raise ApiError(499, "the client closed the connection")
        raise ApiError(504, f"search took longer than {config.timeout_s} s", {"retry-after": "1"})

    @app.post(
        "/v1/search",
        response_model=Hits | BatchResults,
        response_model_exclude_none=True,
        summary="Search one query or a batch",
    )
    async def search(body: SearchRequest, request: Request):
        texts = check(body)
        current = engine()
        searcher, results = await answer(
            request, current.search(texts, body.k, body.lang, request.scope["state"][CLIENT], body.query_lang or None)
        )
        if isinstance(results, UserError):
            raise ApiError(422, str(results))
        payload = [{"hits": [hit_json(searcher, h, r, body.fields) for r, h in enumerate(hits, 1)]} for hits in results]
        return payload[0] if body.query is not None else {"results": payload}

    @app.get("/v1/documents/{doc_id}", summary="One document by id")
    async def document(doc_id: str):
        searcher = engine().searcher
        if searcher.docs is None:
            raise ApiError(404, "this index holds ids only (its corpus was missing when it was built)")
        doc = document_of(searcher, doc_id)
        if doc is None:
            raise ApiError(404, f"no document {doc_id!r}")
        return doc

    @app.get("/v1/info", summary="Index, model, documents per language, limits")
    async def info():
        current = engine()
        manifest = current.searcher.manifest
        limits = {
            k: v
            for k, v in asdict(config).items()
            if k.startswith(("max_", "timeout", "batch_", "rate_", "header_", "body_"))
        }
        return {
            "index": {k: manifest.get(k) for k in ("factory", "metric", "dim", "rows", "search_params")},
            "model": current.searcher.encoder.identity,
            "langs": manifest.get("langs", {}),
            "shards": len(manifest.get("shards", [])),
            "has_texts": current.searcher.docs is not None,
            "translate": _translate_info(current.searcher),
            "limits": limits,
            "stats": dict(current.stats),
        }

    @app.post("/v1/admin/reload", summary="Load an index (the same or another) and swap it in without downtime")
    async def reload(body: ReloadRequest):
        if not config.api_keys:
            raise ApiError(403, "admin endpoints need the server to run with --api-key")
        current = engine()
        folder = body.index or config.index
        async with reloading:
            try:
                searcher = await asyncio.to_thread(reopen, folder)
            except Exception as exc:  # noqa: BLE001 (any failure leaves the old index serving)
                if not isinstance(exc, UserError):
                    log.exception("reload of %s failed", folder)
                raise ApiError(422, load_problem(folder, exc)) from None
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

    html = (resources.files("xretrieve") / "static" / "search.html").read_text(encoding="utf-8")
    headers = page_headers(html)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(html, headers=headers)

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
    manifest = read_manifest(config.index, INDEX_KIND)  # no index folder there: fail now, not answer 503 for ever
    if config.ray:
        from xretrieve.distributed import serve_on_ray

        if manifest.get("translate") and config.translate:
            print(
                f"xretrieve: warning: {config.index} records translate-test, but serve --ray searches queries as "
                "they are (its router has no translator); serve without --ray to translate",
                file=sys.stderr,
            )

        return serve_on_ray(config)
    configure_logging()
    started = time.perf_counter()
    failed: list[Exception] = []

    def load_or_stop():
        """The start-up load; if it fails, the server stops and the command exits non-zero (a failed
        /v1/admin/reload, later, leaves the server up with the index it has)."""
        try:
            return open_searcher(config.index, config.model, translate=config.translate)
        except Exception as exc:
            failed.append(exc)
            server.should_exit = True
            raise

    log.info("serving %s on http://%s:%d (loading in the background)", config.index, config.host, config.port)
    server = uvicorn.Server(uvicorn_config(create_app(config, load_searcher=load_or_stop), config))
    server.run()
    if failed:
        raise UserError(f"{config.index}: could not load the index: {load_problem(config.index, failed[0])}")
    log.info("stopped after %.0f s", time.perf_counter() - started)
