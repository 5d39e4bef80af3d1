"""`serve`'s settings (`ServerConfig`) and the API keys it checks."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from xretrieve.errors import UserError

MIN_KEY_CHARS = 16


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
    max_encode_tokens: int = 2048  # padded tokens (texts x longest) per encode batch and per chunk
    rate_limit: float = 0.0  # requests a second per client under /v1/; 0: no limit
    max_client_queue: int = 256  # queries of one client waiting to be encoded
    max_queue: int = 4096  # queries of all clients waiting to be encoded
    max_connections: int = 512
    max_header_bytes: int = 16384
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    translate: bool = True  # translate-test, when the index records it
    # Ray Serve (`--ray`): a cluster address or "local"; replicas per shard and of the router; CPUs per replica
    ray: str | None = None
    shard_replicas: int = 1
    router_replicas: int = 1
    replica_cpus: float = 1.0

    def __post_init__(self) -> None:
        self.api_keys = tuple(checked_key(key, f"api key {i + 1}") for i, key in enumerate(self.api_keys))
        if not self.max_batch <= self.max_client_queue <= self.max_queue:
            raise UserError(
                f"--max-client-queue {self.max_client_queue} must be at least --max-batch {self.max_batch} (or a "
                f"full request is always refused) and at most --max-queue {self.max_queue}"
            )

    def check_binding(self) -> None:
        if self.api_keys or self.allow_no_auth or is_loopback(self.host):
            return
        raise UserError(
            f"--host {self.host} is reachable from other machines: give --api-key (or XRETRIEVE_API_KEYS), "
            "or --allow-no-auth to serve without authentication on purpose"
        )


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
        keys += [checked_key(key, f"XRETRIEVE_API_KEYS entry {i + 1}") for i, key in enumerate(env.split(","))]
    return tuple(keys)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
