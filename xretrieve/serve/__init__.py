"""`xretrieve serve`: the HTTP API (FastAPI), its fair micro-batching, gate and connection limits.

Modules: `config` (ServerConfig, API keys), `gate` (keys and rate limit, ASGI), `limits` (body and connection
limits), `batching` (FairQueue, SearchEngine), `loading` (opening and reloading an index: the app's state),
`errors`, `routes/` (one module per group of routes), `app` (create_app, serve). Serving on Ray is
xretrieve.ray's, built on these.
"""

from xretrieve.config.serve import MIN_KEY_CHARS, ServerConfig, checked_key, is_loopback, read_api_keys
from xretrieve.serve.app import configure_logging, create_app, serve
from xretrieve.serve.batching import FairQueue, Overloaded, SearchEngine, padded_tokens, split_chunks
from xretrieve.serve.gate import CLIENT, Gate, RateLimit
from xretrieve.serve.limits import BodyLimit, guarded_h11, uvicorn_config
from xretrieve.serve.loading import ServeState, load_problem, open_searcher

__all__ = [
    "CLIENT",
    "MIN_KEY_CHARS",
    "BodyLimit",
    "FairQueue",
    "Gate",
    "Overloaded",
    "RateLimit",
    "SearchEngine",
    "ServeState",
    "ServerConfig",
    "checked_key",
    "configure_logging",
    "create_app",
    "guarded_h11",
    "is_loopback",
    "load_problem",
    "open_searcher",
    "padded_tokens",
    "read_api_keys",
    "serve",
    "split_chunks",
    "uvicorn_config",
]
