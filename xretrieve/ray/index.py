"""`index --ray`: the core's index build (`xretrieve.index.run_build`) with the corpus encoded by Ray Data
actors and the shards built as Ray tasks. The embeddings and index folders must be at the same path on
every node (shared storage, or a copy)."""

from __future__ import annotations

from pathlib import Path

from xretrieve.config import EncodeConfig, IndexConfig
from xretrieve.encode import Embeddings
from xretrieve.index import IndexInputs, run_build
from xretrieve.index_shard import FaissDevice, build_shard, train_index
from xretrieve.model import model_identity
from xretrieve.ray.cluster import connected, result
from xretrieve.ray.encode import encode_corpus


def build_index(config: IndexConfig) -> Path:
    """The counterpart of `xretrieve.index.build_index` on the cluster at `config.ray`, in one Ray session
    for encoding and building."""
    with connected(config.ray):
        return run_build(IndexInputs(config), RayBuilder())


class RayBuilder:
    """The builder `run_build` uses on Ray: no model and no GPU on the driver (the GPUs are the workers')."""

    def identity(self, model: str | None) -> dict:
        return model_identity(model)

    def encode(self, config: EncodeConfig, docs: list) -> None:
        encode_corpus(config, docs=docs)

    def build_shards(
        self, config: IndexConfig, embeddings: Embeddings, todo: list[int], out: Path, plan: dict, dim: int
    ) -> tuple[bytes, dict[int, dict]]:
        return build_shards(config, embeddings.folder, todo, out, plan, dim)


def _train_task(config: IndexConfig, embeddings: str, dim: int) -> bytes:
    return train_index(config, Embeddings(embeddings), FaissDevice(config.device), dim)


def _build_task(config: IndexConfig, embeddings: str, index: int, trained: bytes, out: str, plan: dict) -> dict:
    return build_shard(Embeddings(embeddings), index, trained, FaissDevice(config.device), Path(out), plan)


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
        trained = result(ray, train.remote(config, str(embeddings), dim))
        shared = ray.put(trained)
        build = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=3)(_build_task)
        pending = {build.remote(config, str(embeddings), i, shared, str(out), plan): i for i in todo}
        records: dict[int, dict] = {}
        with tqdm(total=len(todo), desc="index shards (ray)", disable=not config.progress) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                records[pending.pop(done[0])] = result(ray, done[0])
                bar.update(1)
    return trained, records
