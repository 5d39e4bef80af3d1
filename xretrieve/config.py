"""One settings dataclass per verb. No torch or faiss here: the CLI builds these cheaply."""

from __future__ import annotations

from dataclasses import dataclass

from xretrieve.errors import UserError
from xretrieve.formats import check_tag

STORAGE_DTYPES = ("float32", "float16")


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n), with 0 <= i < n."""
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise UserError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {text}: shard index must be in 0..{count - 1} (shards count from 0)")
    return index, count


def parse_langs(text: str | None) -> list[str] | None:
    if not text:
        return None
    langs = [lang.strip() for lang in text.split(",") if lang.strip()]
    return langs or None


@dataclass
class EncodeConfig:
    corpus: str
    out: str
    model: str | None = None
    shard: tuple[int, int] | None = None  # only this shard (i, n); None = all `num_shards`
    num_shards: int = 1
    batch_size: int = 32
    dtype: str = "float32"
    max_seq_length: int | None = None
    device: str | None = None
    progress: bool = True
    ray: str | None = None  # run on Ray: a cluster address, or "local" to start one here

    def __post_init__(self) -> None:
        if self.dtype not in STORAGE_DTYPES:
            raise UserError(f"--dtype {self.dtype!r}: choose one of {', '.join(STORAGE_DTYPES)}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.num_shards < 1:
            raise UserError(f"--shards {self.num_shards}: must be at least 1")
        if self.shard is not None:
            self.num_shards = self.shard[1]


@dataclass
class IndexConfig:
    out: str
    embeddings: str | None = None  # build from stored embeddings, or ...
    corpus: str | None = None  # ... encode this corpus first (into OUT/embeddings)
    model: str | None = None
    factory: str = "Flat"
    num_shards: int = 1
    train_size: int = 100_000
    device: str = "cpu"
    batch_size: int = 32
    dtype: str = "float32"
    keep_embeddings: bool = False
    seed: int = 0
    progress: bool = True
    ray: str | None = None  # run on Ray: a cluster address, or "local" to start one here

    def __post_init__(self) -> None:
        if (self.embeddings is None) == (self.corpus is None):
            raise UserError("index: give exactly one of --corpus or --embeddings")
        if self.device not in ("cpu", "cuda"):
            raise UserError(f"--device {self.device!r}: choose cpu or cuda")
        if self.train_size < 1:
            raise UserError(f"--train-size {self.train_size}: must be at least 1")


@dataclass
class SearchConfig:
    index: str
    queries: str
    out: str
    k: int = 100
    langs: list[str] | None = None
    model: str | None = None
    batch_size: int = 32
    search_params: str | None = None
    tag: str = "xretrieve"
    device: str | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise UserError(f"--k {self.k}: must be at least 1")
        if self.batch_size < 1:
            raise UserError(f"--batch-size {self.batch_size}: must be at least 1")
        check_tag(self.tag)
