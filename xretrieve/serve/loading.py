"""Loading an index to serve, in the background, and swapping in another while requests are served: the
state every route reads from `request.app.state.xretrieve`.

A request is answered by the index that was current when it arrived. A failed reload leaves the old index
serving; the server's configuration is never changed, the folder being served is `ServeState.index`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xretrieve.config.serve import ServerConfig
from xretrieve.errors import UserError
from xretrieve.live import WriterLock
from xretrieve.serve.batching import SearchEngine
from xretrieve.serve.errors import ApiError
from xretrieve.serve.gate import RateLimit
from xretrieve.update import LiveWriter

log = logging.getLogger("xretrieve.server")


def open_searcher(folder: str, model: str | None, encoder=None, translate: bool = True, translator=None, manifest=None):
    """A Searcher for `folder`, serving documents from a verified copy in memory; `encoder` is reused when
    it is the model the index names (or `model`), so a reload does not load a second copy of it, and so is
    `translator` (its long-lived Apertium pipelines). `manifest`: a generation not yet switched in (compaction)."""
    from xretrieve.index import read_index_manifest
    from xretrieve.search import Searcher

    manifest = read_index_manifest(folder) if manifest is None else manifest
    wanted = model or manifest["model"]["name"]
    if os.path.isdir(wanted):
        wanted = str(Path(wanted).resolve())  # as BiEncoder names a model folder
    reuse = encoder if encoder is not None and getattr(encoder, "name", None) == wanted else None
    searcher = Searcher(
        folder,
        model=model,
        encoder=reuse,
        translate=translate,
        translator=translator,
        manifest=manifest,
        docs_in_memory=True,
    )
    if searcher.translate is not None:
        searcher.translate.warm_up(
            (searcher.manifest.get("adapt") or {}).get("langs", [])
        )  # start pipelines and the language guesser now, not on the first query
    return searcher


def load_problem(folder: str, exc: Exception) -> str:
    """One line naming what failed when an index folder would not load."""
    if isinstance(exc, UserError):
        return str(exc)
    last = (str(exc).strip().splitlines() or [""])[-1]
    return f"{folder}: cannot load the index ({type(exc).__name__}: {last})"


class ServeState:
    """The search engine once the index has loaded (or why it did not), the folder it serves, and how to
    load (`load_searcher()`) and reload (`reload_searcher(folder)`) it; defaults: `open_searcher`."""

    def __init__(
        self,
        config: ServerConfig,
        load_searcher: Callable[[], Any] | None = None,
        reload_searcher: Callable[[str], Any] | None = None,
        lock=None,
    ):
        self.config, self.index = config, config.index
        self.engine: SearchEngine | None = None
        self.error: str | None = None
        self.load = load_searcher or (lambda: open_searcher(self.index, config.model, translate=config.translate))
        self.reopen = reload_searcher or self._reopen
        self.reloading = asyncio.Lock()  # one reload at a time: each holds a whole index in memory while it loads
        self.lock = lock  # --writable: the index's writer lock (taken here at load when not given)
        self.writer = None  # --writable: the LiveWriter of the loaded index
        self.write_rate = RateLimit(config.write_rate_limit) if config.writable and config.write_rate_limit else None

    def _reopen(self, folder: str, manifest: dict | None = None):
        """`open_searcher`, reusing the loaded encoder and query translator (its pipelines are running)."""
        translate = getattr(self.engine.searcher, "translate", None)
        translator = translate.translator if translate is not None else None
        config = self.config
        return open_searcher(folder, config.model, self.engine.searcher.encoder, config.translate, translator, manifest)

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        """The app's lifespan: the index loads in the background (`/readyz` says when)."""
        loader = asyncio.create_task(self._load())
        yield
        loader.cancel()
        if self.engine:
            await self.engine.stop()
        if self.writer is not None:
            self.writer.close()
        if self.lock is not None:
            self.lock.release()
        self.engine = self.error = self.writer = self.lock = None  # a restarted app loads afresh

    async def _load(self) -> None:
        config = self.config
        try:
            if config.writable and self.lock is None:
                self.lock = await asyncio.to_thread(WriterLock, self.index, "xretrieve serve --writable")
            searcher = await asyncio.to_thread(self.load)
            if config.writable:
                self.writer = LiveWriter(searcher, self.lock, batch_size=config.max_encode_batch)
            engine = SearchEngine(
                searcher,
                config.max_encode_batch,
                config.batch_wait_ms,
                config.max_encode_tokens,
                config.max_client_queue,
                config.max_queue,
            )
            await engine.start()
            self.engine = engine
            log.info("ready: %s", self.index)
        except Exception as exc:  # noqa: BLE001 (reported by /readyz)
            self.error = load_problem(self.index, exc)
            log.error("could not load %s: %s", self.index, exc)

    def current(self) -> SearchEngine:
        """The engine serving now; 503 while the index loads or after it failed to."""
        if self.engine is None:
            message = "not ready: the index and model are still loading"
            raise ApiError(503, message if not self.error else f"index failed to load: {self.error}")
        return self.engine

    async def reload(self, folder: str | None):
        """Load `folder` (default: the one served now) and swap it in; a failure is a 422 and changes nothing."""
        current = self.current()
        if self.writer is not None:
            raise ApiError(
                409, "a writable server does not reload: it holds the writes of its index; restart it instead"
            )
        folder = folder or self.index
        async with self.reloading:
            try:
                searcher = await asyncio.to_thread(self.reopen, folder)
            except Exception as exc:  # noqa: BLE001 (any failure leaves the old index serving)
                if not isinstance(exc, UserError):
                    log.exception("reload of %s failed", folder)
                raise ApiError(422, load_problem(folder, exc)) from None
            current.swap(searcher)
            self.index = folder
        return folder, searcher

    async def compact(self) -> int | None:
        """Fold the served index's changes into a new generation while searches and writes go on (409 while
        another compaction runs); returns the new generation, None when nothing was pending."""
        from xretrieve.compact import compact_live

        engine = self.current()
        if self.reloading.locked():
            raise ApiError(409, "a compaction is already running")
        async with self.reloading:
            return await asyncio.to_thread(
                compact_live, self.writer, lambda manifest: self.reopen(self.index, manifest), engine.swap
            )
