"""The same encode, index and serve on a Ray cluster (extra `dist`): Ray Data for encoding, Ray tasks for
shard builds, Ray Serve for serving. The files, formats and code paths are those of one machine; only where
the work runs changes.

Shards are the unit of work everywhere, so a retried task redoes one whole shard and never duplicates or
drops rows. Encoding needs no shared storage: the driver reads the corpus and writes every shard, workers
only compute vectors. Index builds and serving read the embeddings and index folders on the workers, so
those folders must be at the same path on every node (shared storage, or a copy).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from xretrieve.config import EncodeConfig, IndexConfig
from xretrieve.errors import UserError
from xretrieve.formats import read_lines
from xretrieve.search import Searcher

LOCAL = "local"  # `--ray` without an address: start a Ray instance on this machine
APP_NAME = "xretrieve"
INSTALL_HINT = "--ray needs Ray, which the core install leaves out: pip install 'xretrieve[dist]' (in a checkout: "
INSTALL_HINT += "pip install -e '.[dist]')"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return ray


@contextlib.contextmanager
def connected(address: str) -> Iterator[Any]:
    """Ray, joined to the cluster at `address` or to a new local instance (`local`), as found afterwards:
    a connection made here is closed here, and a local instance started here is stopped with it."""
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    settings = {"include_dashboard": False} if address == LOCAL else {}
    try:
        ray.init(address=address, logging_level="warning", configure_logging=True, **settings)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise UserError(f"--ray {address}: cannot join the Ray cluster ({str(exc).splitlines()[0]})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _result(ray, ref):
    """ray.get, with a user's mistake inside a task (a UserError) raised as itself."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, UserError):
            raise exc.cause from None
        raise


# --- encoding -------------------------------------------------------------------------------------------


class _PassageEncoder:
    """A Ray Data actor: loads the model once, then turns one shard's passages per call into vectors."""

    def __init__(self, model: str | None, identity: dict, device: str | None, max_seq_length, batch_size: int):
        from xretrieve.model import BiEncoder

        self.encoder = BiEncoder(model, device=device, max_seq_length=max_seq_length)
        if self.encoder.identity != identity:
            raise UserError(
                f"model {model!r} on this node differs from the driver's ({self.encoder.identity.get('fingerprint')} "
                f"!= {identity.get('fingerprint')}): every node needs the same model files"
            )
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from xretrieve.encode import encode_texts

        vectors = [
            encode_texts(self.encoder, [str(t) for t in texts], self.batch_size, progress=False, desc="").tobytes()
            for texts in batch["texts"]
        ]
        return {"shard": batch["shard"], "vectors": np.array(vectors, dtype=object)}


def encode_shards(
    config: EncodeConfig, texts: dict[int, list[str]], identity: dict
) -> Iterator[tuple[int, np.ndarray]]:
    """(shard, float32 vectors) for each shard in `texts`, as a pool of encoder actors finishes them.

    One Ray Data row per shard: an actor that dies mid-shard is restarted and the shard's task retried,
    and the caller writes each shard once it arrives, atomically, so rows are neither lost nor doubled.
    """
    with connected(config.ray) as ray:
        from ray.data import ActorPoolStrategy, DataContext

        DataContext.get_current().enable_progress_bars = config.progress
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        workers = max(1, gpus or int(resources.get("CPU", 1)))
        actors = min(len(texts), workers)
        if len(texts) < workers:
            print(f"xretrieve: {len(texts)} shards to encode on {workers} workers: more --shards would use them all")
        rows = ray.data.from_items(
            [{"shard": index, "texts": shard_texts} for index, shard_texts in texts.items()],
            override_num_blocks=len(texts),
        )
        vectors = rows.map_batches(
            _PassageEncoder,
            fn_constructor_kwargs={
                "model": config.model,
                "identity": identity,
                "device": "cuda" if gpus else config.device,
                "max_seq_length": config.max_seq_length,
                "batch_size": config.batch_size,
            },
            batch_size=1,
            batch_format="numpy",
            compute=ActorPoolStrategy(size=actors),
            num_gpus=1 if gpus else 0,
            num_cpus=0 if gpus else 1,
        )  # Ray Data's actor pools restart a lost actor and retry its task (tests/test_distributed.py kills one)
        dim = identity["dim"]
        for row in vectors.iter_rows():
            yield int(row["shard"]), np.frombuffer(row["vectors"], dtype=np.float32).reshape(-1, dim)


# --- index builds ---------------------------------------------------------------------------------------


def _train_task(config: IndexConfig, embeddings: str, dim: int) -> bytes:
    from xretrieve.encode import Embeddings
    from xretrieve.index import _Device, _train

    return _train(config, Embeddings(embeddings), _Device(config.device), dim)


def _build_task(config: IndexConfig, embeddings: str, index: int, trained: bytes, out: str, plan: dict) -> dict:
    from xretrieve.encode import Embeddings
    from xretrieve.index import _build_shard, _Device

    return _build_shard(Embeddings(embeddings), index, trained, _Device(config.device), Path(out), plan)


def build_shards(
    config: IndexConfig, embeddings: Path, todo: list[int], out: Path, plan: dict, dim: int
) -> tuple[bytes, dict[int, dict]]:
    """Train once (one task), then one task per shard adds its vectors and writes its shard into `out`.

    Returns the trained empty index and each built shard's record.
    """
    from tqdm import tqdm

    with connected(config.ray) as ray:
        gpus = 1 if config.device == "cuda" else 0
        train = ray.remote(num_cpus=1, num_gpus=gpus)(_train_task)
        trained = _result(ray, train.remote(config, str(embeddings), dim))
        shared = ray.put(trained)
        build = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=3)(_build_task)
        pending = {build.remote(config, str(embeddings), i, shared, str(out), plan): i for i in todo}
        records: dict[int, dict] = {}
        with tqdm(total=len(todo), desc="index shards (ray)", disable=not config.progress) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                records[pending.pop(done[0])] = _result(ray, done[0])
                bar.update(1)
    return trained, records


# --- serving --------------------------------------------------------------------------------------------


class ShardServer:
    """A Ray Serve deployment holding one shard of an index: the candidates `Searcher` merges."""

    def __init__(self, index_dir: str, shard: int, params: str):
        from xretrieve.index import INDEX_KIND
        from xretrieve.live import generation_folder, live_settings
        from xretrieve.manifest import read_manifest
        from xretrieve.search import _Shard

        folder = Path(index_dir)
        manifest = read_manifest(folder, INDEX_KIND)
        data = folder / generation_folder(live_settings(manifest)["generation"])
        self.shard = _Shard.load(data, manifest["shards"][shard], params)

    def hits(self, vectors: np.ndarray, k: int, langs: frozenset[str] | None):
        return self.shard.hits(vectors, k, langs)


class ShardedSearcher(Searcher):
    """A `Searcher` whose shards are Ray Serve deployments: the same manifest checks, documents, query
    encoder and merge; each search fans out to every shard at once."""

    def __init__(self, index_dir: str | Path, shards: list, model: str | None = None, encoder=None):
        from xretrieve.index import INDEX_KIND
        from xretrieve.live import check_no_pending
        from xretrieve.manifest import read_manifest

        check_no_pending(
            index_dir, read_manifest(index_dir, INDEX_KIND), "serve --ray"
        )  # the shard deployments hold the base shards only
        self._handles = shards
        super().__init__(index_dir, model=model, encoder=encoder)

    def _open_shards(self, verify: bool) -> list:
        return self._handles  # each shard deployment verifies and opens its own files

    def _docids(self) -> list[str]:
        return [d for entry in self.manifest["shards"] for d in read_lines(self.data / f"{entry['name']}.docids.txt")]

    def _shard_hits(self, vectors: np.ndarray, k: int, langs: frozenset[str] | None) -> list:
        pending = [shard.hits.remote(vectors, k, langs) for shard in self.shards]
        return [response.result() for response in pending]


class _Router:
    """The ingress deployment; its FastAPI app is built on the replica (see `serve_app`)."""

    def __init__(self, *shards):
        pass  # the shards are bound here only to make them part of the application


def _no_reload(folder: str):
    raise UserError("reload is not available on Ray Serve: deploy the index again with `xretrieve serve --ray`")


def serve_app(config):
    """The Ray Serve application: one deployment per shard and a router running `server.create_app`."""
    import ray
    from ray import serve

    from xretrieve.index import INDEX_KIND
    from xretrieve.manifest import read_manifest
    from xretrieve.server import create_app

    manifest = read_manifest(config.index, INDEX_KIND)
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
    shard = serve.deployment(ShardServer, ray_actor_options=replica, num_replicas=config.shard_replicas)
    shards = [
        shard.options(name=name).bind(str(config.index), i, manifest.get("search_params", ""))
        for i, name in enumerate(names)
    ]

    def build_app():  # runs on the router replica, where the shard handles exist
        handles = [serve.get_deployment_handle(name, app_name=APP_NAME) for name in names]
        return create_app(
            config,
            load_searcher=lambda: ShardedSearcher(config.index, handles, model=config.model),
            reload_searcher=_no_reload,
        )

    router = serve.deployment(
        serve.ingress(build_app)(_Router),
        name="router",
        num_replicas=config.router_replicas,
        ray_actor_options=replica,
    )
    return router.bind(*shards)


def serve_on_ray(config) -> None:
    """`xretrieve serve --ray`, once `serve` has checked the binding: Serve's HTTP proxy on
    config.host:config.port runs the application until interrupted; it is then removed from the cluster."""
    import time

    with connected(config.ray):
        from ray import serve

        app = serve_app(config)  # a bad index or too few CPUs fail here, before anything is deployed
        serve.start(http_options={"host": config.host, "port": config.port})
        try:
            serve.run(app, name=APP_NAME, route_prefix="/")
            print(f"xretrieve: serving {config.index} on Ray Serve at http://{config.host}:{config.port}", flush=True)
            while True:
                time.sleep(3600)
        finally:
            serve.delete(APP_NAME)
