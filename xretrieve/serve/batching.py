"""Fair micro-batching of search requests.

A request's queries are split into chunks of at most `max_encode_tokens` padded tokens and queued per
client (its API key, or its address without keys). The worker takes clients in turn, least recently served
first, one chunk each while the token budget lasts, and encodes what it took together on one thread, so
the event loop never blocks on torch or FAISS and a small request waits behind at most one chunk of anybody
else's work. Work of a request that timed out or whose client left is dropped before it is encoded.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from xretrieve.errors import UserError


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


SEARCH_TURNS = 4  # search batches that go before a waiting write when both wait (benchmarks/live_updates.py)


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
        self.stats = {"requests": 0, "batches": 0, "queries": 0, "chunks": 0, "refused": 0, "writes": 0}
        self.writes: deque[tuple[Callable, tuple, asyncio.Future]] = deque()  # `write` jobs waiting

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

    async def write(self, fn: Callable, *args) -> Any:
        """`fn(*args)` on the worker thread, as background work (encoding documents to write): searches that
        wait go first, up to SEARCH_TURNS batches of them between two writes."""
        future = asyncio.get_running_loop().create_future()
        self.writes.append((fn, args, future))
        self.queue.ready.set()
        return await future

    async def _run_write(self) -> None:
        fn, args, future = self.writes.popleft()
        if future.done():  # its request is gone: nothing of it is applied
            return
        try:
            result = await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        except Exception as exc:  # noqa: BLE001 (handed to the waiting request)
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)
        self.stats["writes"] += 1

    async def _run(self) -> None:
        # Chunks that arrive while a batch is searched wait in the queue and form the next batch, so batching
        # needs no added wait under load; `batch_wait` only helps sparse traffic find company.
        loop = asyncio.get_running_loop()
        turns = 0  # search batches since the last write
        while True:
            await self.queue.ready.wait()
            if self.writes and (self.queue.total == 0 or turns >= SEARCH_TURNS):
                turns = 0
                await self._run_write()
                if self.writes:
                    self.queue.ready.set()
                continue
            if self.batch_wait and self.queue.total < self.max_encode_batch:
                await asyncio.sleep(self.batch_wait)
            batch = self.queue.take(self.max_encode_tokens, self.max_encode_batch)
            if self.writes:
                self.queue.ready.set()  # take() clears it when no search waits; a write still does
            if not batch:
                continue
            turns += 1
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
