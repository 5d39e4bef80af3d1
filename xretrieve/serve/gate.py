"""The gate in front of the app: API keys, the rate limit and the size of a request's head, checked in ASGI
middleware before any of the body is read."""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable

CLIENT = "xretrieve.client"  # where the gate leaves the client's identity in the ASGI scope's state


async def reply_error(send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    """A JSON error that also closes the connection, so a body nobody reads is not drained first."""
    from starlette.responses import JSONResponse

    response = JSONResponse({"error": message}, status_code=status, headers={"connection": "close", **(headers or {})})
    await response({"type": "http"}, None, send)


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
            return await reply_error(send, 431, f"request head larger than {self.max_header_bytes} bytes")
        if not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        client = self.client(scope)
        if client is None:
            return await reply_error(send, 401, "missing or wrong API key (send it in the X-API-Key header)")
        wait = self.rate.wait(client) if self.rate else 0.0
        if wait:
            retry = math.ceil(wait)
            return await reply_error(send, 429, f"rate limit: retry in {retry} s", {"retry-after": str(retry)})
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
