"""Alias of `xretrieve.serve`, where the HTTP API now lives (split by role: config, gate, limits, batching,
loading, routes, app). Every name importable here before the split still is."""

from xretrieve.config.serve import MIN_KEY_CHARS, ServerConfig, checked_key, is_loopback, read_api_keys
from xretrieve.index import SHARD_NAME
from xretrieve.index import read_index_manifest as check_index_manifest
from xretrieve.serve import app as _app
from xretrieve.serve.app import add_middleware, configure_logging, create_app, log
from xretrieve.serve.batching import (
    FairQueue,
    Overloaded,
    SearchEngine,
    _Chunk,
    _deliver,
    _encode_group,
    _query_vectors,
    _Request,
    _search_batch,
    padded_tokens,
    split_chunks,
)
from xretrieve.serve.errors import ApiError
from xretrieve.serve.gate import CLIENT, Gate, RateLimit
from xretrieve.serve.gate import reply_error as _reply
from xretrieve.serve.limits import BodyLimit, guarded_h11, uvicorn_config
from xretrieve.serve.loading import ServeState, load_problem, open_searcher
from xretrieve.serve.routes.admin import translate_info as _translate_info
from xretrieve.serve.routes.page import page_headers
from xretrieve.serve.routes.search import DOC_FIELDS, is_unicode
from xretrieve.serve.routes.search import _client_gone as _client_gone

__all__ = [
    "CLIENT",
    "DOC_FIELDS",
    "MIN_KEY_CHARS",
    "SHARD_NAME",
    "ApiError",
    "BodyLimit",
    "FairQueue",
    "Gate",
    "Overloaded",
    "RateLimit",
    "SearchEngine",
    "ServeState",
    "ServerConfig",
    "add_middleware",
    "check_index_manifest",
    "checked_key",
    "configure_logging",
    "create_app",
    "guarded_h11",
    "is_loopback",
    "is_unicode",
    "load_problem",
    "log",
    "open_searcher",
    "padded_tokens",
    "page_headers",
    "read_api_keys",
    "serve",
    "split_chunks",
    "uvicorn_config",
    "_Chunk",
    "_Request",
    "_client_gone",
    "_deliver",
    "_encode_group",
    "_query_vectors",
    "_reply",
    "_search_batch",
    "_translate_info",
]


def serve(config: ServerConfig) -> None:
    """`xretrieve serve` as before the split: on this machine (`xretrieve.serve.serve`), or with `config.ray`
    on a Ray cluster (`xretrieve.ray.serve`). This alias sits above both layers; the core never imports Ray."""
    if config.ray:
        from xretrieve.ray import serve as serve_on_ray

        return serve_on_ray(config)
    return _app.serve(config)
