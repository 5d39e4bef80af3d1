"""The FastAPI app (`create_app`) and `xretrieve serve` on one machine (`serve`).

The key and the rate limit are checked in ASGI middleware before any of the body is read. The searcher is
loaded in the background (`/readyz` says when) and can be swapped for a new index while requests are served.
Serving on a Ray cluster is xretrieve.ray's, which runs this same app on its router.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from xretrieve.config.serve import ServerConfig
from xretrieve.errors import UserError
from xretrieve.serve.gate import Gate
from xretrieve.serve.limits import BodyLimit, uvicorn_config
from xretrieve.serve.loading import ServeState, load_problem, open_searcher

log = logging.getLogger("xretrieve.server")


def create_app(
    config: ServerConfig,
    load_searcher: Callable[[], Any] | None = None,
    reload_searcher: Callable[[str], Any] | None = None,
    lock=None,
):
    """The FastAPI app. `load_searcher` (default: `open_searcher` for `config.index`) runs in the background;
    `reload_searcher(folder)` (default: `open_searcher`, reusing the loaded encoder) serves /v1/admin/reload.
    `lock`: with `config.writable`, the index's writer lock, taken already (else the app takes it at load)."""
    from fastapi import FastAPI

    from xretrieve.serve.errors import add_error_handlers
    from xretrieve.serve.routes import routers

    state = ServeState(config, load_searcher, reload_searcher, lock)
    app = FastAPI(
        title="xretrieve",
        version="1",
        lifespan=state.lifespan,
        description="Cross-lingual dense retrieval: a query in any language, documents in many.",
    )
    app.state.xretrieve = state
    add_middleware(app, config)
    add_error_handlers(app)
    for router in routers(config):
        app.include_router(router)
    return app


def add_middleware(app, config: ServerConfig) -> None:
    """Added innermost first: CORS (outermost, so preflights and errors carry its headers), then the key and
    rate limit, then the body limit, all before FastAPI reads or validates anything."""
    app.add_middleware(BodyLimit, limit=config.max_body_bytes, timeout=config.body_timeout_s)
    app.add_middleware(
        Gate, keys=config.api_keys, rate_limit=config.rate_limit, max_header_bytes=config.max_header_bytes
    )
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"], allow_headers=["*"]
        )


def configure_logging() -> None:
    """xretrieve's own lines from INFO; other libraries' from WARNING (faiss's loader chatters at INFO)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("xretrieve").setLevel(logging.INFO)


def serve(config: ServerConfig) -> None:
    """`xretrieve serve` on this machine: uvicorn with the connection limits of `config`, until interrupted.
    A config that asks for Ray is served by `xretrieve.ray.serve` (the CLI chooses), not here."""
    import uvicorn

    from xretrieve.index import read_index_manifest

    if config.ray:
        raise UserError("serving on Ray goes through xretrieve.ray.serve (`xretrieve serve --ray`)")
    config.check_binding()
    read_index_manifest(config.index)  # no index folder there: fail now, not answer 503 for ever
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

    lock = None
    if config.writable:  # a second writer of the index stops here, before anything loads
        from xretrieve.live import WriterLock

        lock = WriterLock(config.index, f"xretrieve serve --writable on {config.host}:{config.port}")
    log.info("serving %s on http://%s:%d (loading in the background)", config.index, config.host, config.port)
    server = uvicorn.Server(uvicorn_config(create_app(config, load_searcher=load_or_stop, lock=lock), config))
    server.run()
    if failed:
        raise UserError(f"{config.index}: could not load the index: {load_problem(config.index, failed[0])}")
    log.info("stopped after %.0f s", time.perf_counter() - started)
