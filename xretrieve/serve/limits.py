"""Connection limits uvicorn lacks: a body size and deadline (`BodyLimit`), a cap on open connections and a
deadline for each request's head (`guarded_h11`)."""

from __future__ import annotations

import asyncio

from xretrieve.config.serve import ServerConfig
from xretrieve.serve.gate import reply_error


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
            return await reply_error(send, 413, too_big)
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
                        return await reply_error(send, 413, too_big)
        except TimeoutError:
            return await reply_error(send, 408, f"request body not received within {self.timeout:g} s")
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
