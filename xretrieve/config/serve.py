"""Settings of `xretrieve serve`, and the API-key and address checks they need.

Declared here, with the other verbs' settings, so that the CLI reads every flag from one place without
importing the server; the server imports ServerConfig from here.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from xretrieve.config.fields import model_option, option, ray_option
from xretrieve.errors import UserError

MIN_KEY_CHARS = 16
API_KEYS_ENV = "XRETRIEVE_API_KEYS"


def checked_key(key: str, where: str) -> str:
    """The key without surrounding spaces; an empty or short one is refused, never taken as "no auth"."""
    key = key.strip()
    if len(key) < MIN_KEY_CHARS:
        problem = "is empty" if not key else f"has {len(key)} characters"
        raise UserError(f"{where} {problem}: API keys need at least {MIN_KEY_CHARS} (e.g. `openssl rand -hex 16`)")
    return key


def read_api_keys(flags: list[str], env: str) -> tuple[str, ...]:
    """The keys of the repeated --api-key flags and of XRETRIEVE_API_KEYS (comma-separated; unset or blank:
    none), each stripped and checked."""
    keys = [checked_key(key, f"--api-key {i + 1}") for i, key in enumerate(flags)]
    if env.strip():
        keys += [checked_key(key, f"{API_KEYS_ENV} entry {i + 1}") for i, key in enumerate(env.split(","))]
    return tuple(keys)


def api_keys_flag(flags: list[str] | None) -> tuple[str, ...]:
    """--api-key's values and then the environment's keys: the keys `serve` accepts."""
    return read_api_keys(flags or [], os.environ.get(API_KEYS_ENV, ""))


def origins_flag(origins: list[str] | None) -> tuple[str, ...]:
    return tuple(origins or ())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ServerConfig:
    """Serve an index over HTTP: POST /v1/search, a search page at /, OpenAPI at /docs."""

    index: str = option(help="index folder")
    model: str | None = model_option(unset="the index's model")
    host: str = option("127.0.0.1", "bind address (127.0.0.1 is loopback only)")
    port: int = option(8000, "TCP port")
    api_keys: tuple[str, ...] = option(
        (),
        f"accepted API key, 16+ characters (repeatable; also {API_KEYS_ENV}=a,b)",
        flag="--api-key",
        repeat=True,
        parse=api_keys_flag,
        secret=True,
    )
    # explicit waiver for a non-loopback address without keys
    allow_no_auth: bool = option(False, "serve a non-loopback address without API keys")
    cors_origins: tuple[str, ...] = option(
        (),
        "allow browser requests from this origin (repeatable)",
        flag="--cors-origin",
        repeat=True,
        parse=origins_flag,
    )
    max_query_chars: int = option(2000, "longest query in characters")
    max_k: int = option(1000, "most hits a request may ask for")
    max_batch: int = option(64, "queries per request")
    max_body_bytes: int = option(1 << 20, "longest request body")
    timeout_s: float = option(30.0, "seconds per search request (then 504)", flag="--timeout")
    batch_wait_ms: float = option(0.0, "extra wait for company, in ms")
    max_encode_batch: int = option(32, "texts encoded together at most")
    # padded tokens (texts x longest) per encode batch and per chunk
    max_encode_tokens: int = option(2048, "padded tokens encoded together at most (texts x longest)")
    # requests a second per client under /v1/; 0: no limit
    rate_limit: float = option(0.0, "requests a second per client (0: none; then 429)")
    max_client_queue: int = option(256, "queries one client may have waiting (then 429)")
    max_queue: int = option(4096, "queries all clients may have waiting (then 503)")
    max_connections: int = option(512, "open connections (more are answered 503)")
    max_header_bytes: int = option(16384, "request line and headers (then 431)")
    header_timeout_s: float = option(10.0, "seconds to send a request's head", flag="--header-timeout")
    body_timeout_s: float = option(30.0, "seconds to send a request's body (then 408)", flag="--body-timeout")
    # translate-test, when the index records it
    translate: bool = option(
        True, "search with the queries as given, even if the index records translate-test", flag="--no-translate"
    )
    writable: bool = option(
        False,
        "accept writes: POST /v1/documents, DELETE /v1/documents/{id}, POST /v1/admin/compact (with API keys "
        "configured they need one; without, only clients on loopback may write)",
    )
    max_write_batch: int = option(256, "documents per POST /v1/documents")
    max_document_chars: int = option(100_000, "characters of one written document's title and text")
    write_rate_limit: float = option(10.0, "write requests a second per client (0: none; then 429)")
    # Ray Serve (`--ray`): a cluster address or "local"; replicas per shard and of the router; CPUs per replica
    ray: str | None = ray_option("serve with Ray Serve, a deployment per shard behind a router")
    shard_replicas: int = option(1, "--ray: replicas of each shard deployment")
    router_replicas: int = option(1, "--ray: replicas of the router (query encoder)")
    replica_cpus: float = option(1.0, "--ray: CPUs reserved per replica")

    def __post_init__(self) -> None:
        self.api_keys = tuple(checked_key(key, f"api key {i + 1}") for i, key in enumerate(self.api_keys))
        if not self.max_batch <= self.max_client_queue <= self.max_queue:
            raise UserError(
                f"--max-client-queue {self.max_client_queue} must be at least --max-batch {self.max_batch} (or a "
                f"full request is always refused) and at most --max-queue {self.max_queue}"
            )

        if self.max_write_batch < 1 or self.max_document_chars < 1 or self.write_rate_limit < 0:
            raise UserError(
                "--max-write-batch and --max-document-chars must be at least 1, --write-rate-limit 0 or more"
            )
        if self.writable and self.ray:
            raise UserError(
                "serve --ray --writable: writes are not served on Ray (each shard deployment holds a read-only copy); "
                "serve --writable on one machine, or write with xretrieve add/delete, compact and deploy again"
            )

    def check_binding(self) -> None:
        if self.api_keys or self.allow_no_auth or is_loopback(self.host):
            return
        raise UserError(
            f"--host {self.host} is reachable from other machines: give --api-key (or XRETRIEVE_API_KEYS), "
            "or --allow-no-auth to serve without authentication on purpose"
        )
