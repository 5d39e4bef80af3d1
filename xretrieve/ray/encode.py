"""`encode --ray`: Ray Data actors compute the vectors, the driver writes every shard (no shared storage)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from xretrieve.config import EncodeConfig
from xretrieve.encode import EncodeJob, encode_texts
from xretrieve.errors import UserError
from xretrieve.formats import Document
from xretrieve.manifest import check_free_space
from xretrieve.model import model_identity
from xretrieve.ray.cluster import connected


def encode_corpus(config: EncodeConfig, docs: list[Document] | None = None) -> Path:
    """The counterpart of `xretrieve.encode.encode_corpus` on the cluster at `config.ray`: the same job and
    files; the driver reads the model's identity from its folder (no weights) and writes each shard as it
    arrives, whole and atomically, so a retried shard is neither lost nor doubled."""
    job = EncodeJob(config, docs)  # the corpus and the folder before the cluster
    with connected(config.ray):
        identity = model_identity(config.model)
        job.start(identity).report_resume(with_chunks=False)
        if job.todo:
            largest = max(job.rows(index) for index in job.todo)
            check_free_space(job.out, largest * job.bytes_per_row(), "the largest shard")
            for index, vectors in encode_shards(config, {index: job.texts(index) for index in job.todo}, identity):
                job.write_shard(index, vectors)
    return job.finish(None)


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
