"""`serve --ray`: Ray Serve, one deployment per index shard behind a router that runs the same FastAPI app
(`xretrieve.serve.create_app`) with a `Searcher` whose shards are those deployments."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from xretrieve.config.serve import ServerConfig
from xretrieve.errors import UserError
from xretrieve.index import read_index_manifest
from xretrieve.live import check_no_pending, generation_folder, live_settings
from xretrieve.ray.cluster import connected
from xretrieve.search import Searcher
from xretrieve.shard_search import IndexShard

APP_NAME = "xretrieve"


def serve(config: ServerConfig) -> None:
    """The counterpart of `xretrieve.serve.serve` on the cluster at `config.ray`: Serve's HTTP proxy on
    config.host:config.port runs the application until interrupted; it is then removed from the cluster."""
    config.check_binding()
    manifest = read_index_manifest(config.index)  # no index folder there: fail now, not answer 503 for ever
    if manifest.get("translate") and config.translate:
        print(
            f"xretrieve: warning: {config.index} records translate-test, but serve --ray searches queries as "
            "they are (its router has no translator); serve without --ray to translate",
            file=sys.stderr,
        )
    return serve_on_ray(config)


class ShardServer:
    """A Ray Serve deployment holding one shard of an index: the candidates `Searcher` merges."""

    def __init__(self, index_dir: str, shard: int, params: str):
        folder = Path(index_dir)
        manifest = read_index_manifest(folder)
        data = folder / generation_folder(live_settings(manifest)["generation"])
        self.shard = IndexShard.load(data, manifest["shards"][shard], params)

    def hits(self, vectors: np.ndarray, k: int, langs: frozenset[str] | None):
        return self.shard.hits(vectors, k, langs)


class ShardedSearcher(Searcher):
    """A `Searcher` whose shards are Ray Serve deployments: the same manifest checks, documents, query
    encoder and merge; each search fans out to every shard at once."""

    def __init__(self, index_dir: str | Path, shards: list, model: str | None = None, encoder=None):
        manifest = read_index_manifest(index_dir)
        check_no_pending(index_dir, manifest, "serve --ray")  # the shard deployments hold the base shards only
        super().__init__(index_dir, model=model, encoder=encoder, shards=shards, manifest=manifest)

    def shard_hits(self, vectors: np.ndarray, k: int, langs: frozenset[str] | None) -> list:
        pending = [shard.hits.remote(vectors, k, langs) for shard in self.shards]
        return [response.result() for response in pending]


class _Router:
    """The ingress deployment; its FastAPI app is built on the replica (see `serve_app`)."""

    def __init__(self, *shards):
        pass  # the shards are bound here only to make them part of the application


def _no_reload(folder: str):
    raise UserError("reload is not available on Ray Serve: deploy the index again with `xretrieve serve --ray`")


def serve_app(config: ServerConfig):
    """The Ray Serve application: one deployment per shard and a router running `create_app`."""
    import ray
    from ray import serve as ray_serve

    manifest = read_index_manifest(config.index)
    names = [entry["name"] for entry in manifest["shards"]]
    replicas = len(names) * config.shard_replicas + config.router_replicas
    cpus = ray.cluster_resources().get("CPU", 0)
    if replicas * config.replica_cpus > cpus:  # Ray Serve would wait for them forever
        raise UserError(
            f"{len(names)} shards x {config.shard_replicas} replicas + {config.router_replicas} router replicas at "
            f"{config.replica_cpus} CPUs each need {replicas * config.replica_cpus:g} CPUs; the cluster has {cpus:g}: "
            "lower --replica-cpus or --shard-replicas, or add nodes"
        )
    replica = {"num_cpus": config.replica_cpus}
    shard = ray_serve.deployment(ShardServer, ray_actor_options=replica, num_replicas=config.shard_replicas)
    shards = [
        shard.options(name=name).bind(str(config.index), i, manifest.get("search_params", ""))
        for i, name in enumerate(names)
    ]

    def build_app():  # runs on the router replica, where the shard handles exist
        from xretrieve.serve.app import create_app

        handles = [ray_serve.get_deployment_handle(name, app_name=APP_NAME) for name in names]
        return create_app(
            config,
            load_searcher=lambda: ShardedSearcher(config.index, handles, model=config.model),
            reload_searcher=_no_reload,
        )

    router = ray_serve.deployment(
        ray_serve.ingress(build_app)(_Router),
        name="router",
        num_replicas=config.router_replicas,
        ray_actor_options=replica,
    )
    return router.bind(*shards)


def serve_on_ray(config: ServerConfig) -> None:
    """Deploy `serve_app` on the cluster and keep it up until interrupted."""
    import time

    with connected(config.ray):
        from ray import serve as ray_serve

        app = serve_app(config)  # a bad index or too few CPUs fail here, before anything is deployed
        ray_serve.start(http_options={"host": config.host, "port": config.port})
        try:
            ray_serve.run(app, name=APP_NAME, route_prefix="/")
            print(f"xretrieve: serving {config.index} on Ray Serve at http://{config.host}:{config.port}", flush=True)
            while True:
                time.sleep(3600)
        finally:
            ray_serve.delete(APP_NAME)
