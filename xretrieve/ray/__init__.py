"""The same encode, index and serve on a Ray cluster (extra `dist`): Ray Data for encoding, Ray tasks for
shard builds, Ray Serve for serving. A layer on top of the core: it uses the core's public shard-level
functions (`encode.EncodeJob`, `index.run_build`, `index_shard.train_index`/`build_shard`, `search.IndexShard`,
`serve.create_app`), and no core module imports it; the CLI chooses it for `--ray`. The files, formats and
code paths are those of one machine; only where the work runs changes.

Shards are the unit of work everywhere, so a retried task redoes one whole shard and never duplicates or
drops rows. Encoding needs no shared storage: the driver reads the corpus and writes every shard, workers
only compute vectors. Index builds and serving read the embeddings and index folders on the workers, so
those folders must be at the same path on every node (shared storage, or a copy).

Ray itself is imported only inside functions: `import xretrieve.ray` works on a core install, and `--ray`
there fails with `INSTALL_HINT`.
"""

from xretrieve.ray.cluster import INSTALL_HINT, LOCAL, connected
from xretrieve.ray.encode import encode_corpus, encode_shards
from xretrieve.ray.index import build_index, build_shards
from xretrieve.ray.serving import APP_NAME, ShardedSearcher, ShardServer, serve, serve_app, serve_on_ray

__all__ = [
    "APP_NAME",
    "INSTALL_HINT",
    "LOCAL",
    "ShardServer",
    "ShardedSearcher",
    "build_index",
    "build_shards",
    "connected",
    "encode_corpus",
    "encode_shards",
    "serve",
    "serve_app",
    "serve_on_ray",
]
