"""Settings of the core verbs: encode, index, search, save-model and demo."""

from __future__ import annotations

from dataclasses import dataclass

from xretrieve.config.fields import (
    batch_size_option,
    checkpoint_every_option,
    device_option,
    model_option,
    option,
    parse_langs,
    progress_option,
    ray_option,
    seed_option,
    shard_option,
)
from xretrieve.errors import UserError
from xretrieve.formats import check_tag

STORAGE_DTYPES = ("float32", "float16")
POOLING_MODES = ("mean", "cls", "max", "lasttoken")  # save-model --pooling; model.py checks against it too
CORPUS_HELP = "corpus .jsonl (id, text, title?, lang?) or .tsv (id, text)"
SEARCH_TRANSLATE_HELP = "search with the queries as given, even if the index records translate-test"


@dataclass
class EncodeConfig:
    """Encode a corpus into sharded embeddings (resumable)."""

    corpus: str = option(help=CORPUS_HELP, input_file=True)
    out: str = option(help="embeddings folder")
    model: str | None = model_option()
    shard: tuple[int, int] | None = shard_option("encode only shard i of n, e.g. 0/4", unset="all --shards")
    num_shards: int = option(1, "number of shards when encoding all", flag="--shards")
    batch_size: int = batch_size_option()
    dtype: str = option("float32", "storage type", choices=STORAGE_DTYPES)
    max_seq_length: int | None = option(None, "truncate passages to this many tokens", unset="the model's maximum")
    device: str | None = device_option()
    # passages: an interrupted shard keeps its finished chunks of this size
    checkpoint_every: int = checkpoint_every_option()
    progress: bool = progress_option()
    ray: str | None = ray_option(
        "encode shards in parallel with a pool of encoder actors (a GPU each where there are GPUs)"
    )

    def __post_init__(self) -> None:
        if self.checkpoint_every < 1:
            raise UserError(f"--checkpoint-every {self.checkpoint_every}: must be at least 1")
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
    """Build a sharded FAISS index from a corpus or stored embeddings."""

    out: str = option(help="index folder, e.g. indexes/NAME")
    embeddings: str | None = option(None, "index the embeddings folder written by `xretrieve encode`", one_of="source")
    corpus: str | None = option(None, "encode this corpus, then index it", one_of="source", input_file=True)
    model: str | None = model_option()
    factory: str = option(
        "auto",
        "FAISS factory string, e.g. Flat, HNSW32, IVF1024,PQ48,RFlat; auto: Flat up to 50,000 rows per shard, else "
        "IVF{about 4*sqrt(rows)},SQfp16 searched with nprobe=48 (IVF4096,SQfp16 at 1 M rows)",
    )
    num_shards: int = option(1, "shards when encoding a corpus", flag="--shards")
    # at least 39 vectors per IVF list: 4096 lists need 160k
    train_size: int = option(200_000, "vectors sampled to train IVF/PQ")
    device: str = option("cpu", "build on GPU with faiss-gpu", choices=("cpu", "cuda"))
    batch_size: int = batch_size_option()
    dtype: str = option("float32", "storage type of the embeddings", choices=STORAGE_DTYPES)
    keep_embeddings: bool = option(False, "keep OUT/embeddings after indexing a corpus")
    seed: int = seed_option()
    checkpoint_every: int = checkpoint_every_option()
    progress: bool = progress_option()
    ray: str | None = ray_option("encode and build shards as parallel tasks")
    translate: str | None = option(
        None,
        "record translate-test: searches also encode each query translated into the documents' languages",
        choices=("apertium",),
        unset="no translate-test",
    )
    translate_weight: float = option(0.6, "weight of the translations against the query (0..1)")
    translate_targets: list[str] | None = option(
        None, "languages to translate queries into", parse=parse_langs, unset="the documents'"
    )
    translate_max_targets: int = option(
        1, "translations per query, into the reachable languages with the most documents first (0: all)"
    )

    def __post_init__(self) -> None:
        if self.translate is not None and self.translate != "apertium":
            raise UserError(f"--translate {self.translate!r}: the only backend is apertium")
        if not 0.0 <= self.translate_weight <= 1.0:
            raise UserError(f"--translate-weight {self.translate_weight}: must be in [0, 1]")
        if self.translate_max_targets < 0:
            raise UserError(f"--translate-max-targets {self.translate_max_targets}: must be 0 (all) or more")
        if (self.embeddings is None) == (self.corpus is None):
            raise UserError("index: give exactly one of --corpus or --embeddings")
        if self.device not in ("cpu", "cuda"):
            raise UserError(f"--device {self.device!r}: choose cpu or cuda")
        if self.train_size < 1:
            raise UserError(f"--train-size {self.train_size}: must be at least 1")


@dataclass
class SearchConfig:
    """Search an index with a queries file; write a TREC run."""

    index: str = option(help="index folder")
    queries: str = option(help="queries .jsonl (id, text, lang?) or .tsv (id, text)", input_file=True)
    out: str = option(help="TREC run file (provenance goes to OUT.json)")
    k: int = option(100, "hits per query")
    langs: list[str] | None = option(
        None, "only documents in these languages, e.g. en,fi", flag="--lang", parse=parse_langs, unset="all"
    )
    model: str | None = model_option(unset="the index's model")
    batch_size: int = batch_size_option()
    search_params: str | None = option(
        None, "FAISS parameters, e.g. nprobe=64 or efSearch=256", unset="the index manifest's"
    )
    tag: str = option("xretrieve", "run tag (last TREC column)")
    device: str | None = device_option("torch device for the query encoder")
    translate: bool = option(True, SEARCH_TRANSLATE_HELP, flag="--no-translate")
    progress: bool = progress_option()

    def __post_init__(self) -> None:
        if self.k < 1:
            raise UserError(f"--k {self.k}: must be at least 1")
        if self.batch_size < 1:
            raise UserError(f"--batch-size {self.batch_size}: must be at least 1")
        check_tag(self.tag)


@dataclass
class SaveModelConfig:
    """Save a transformers model as a sentence-transformers folder with the pooling, length, prompts and
    normalisation you give; xretrieve then reads them from the folder."""

    out: str = option(help="new model folder")
    model: str | None = model_option(help="the transformers model to save: name or folder")
    pooling: str = option("mean", "how token vectors become one", choices=POOLING_MODES)
    max_seq_length: int | None = option(None, "longest input in tokens", unset="the model's own")
    query_prompt: str = option("", "text put before every query, e.g. 'query: '")
    passage_prompt: str = option("", "text put before every passage")
    normalize: bool = option(False, "L2-normalise embeddings")


@dataclass
class DemoConfig:
    """Index the bundled mixed-language corpus and answer its sample queries."""

    out: str = option("indexes/demo", "index folder")
    model: str | None = model_option()
    show: int = option(3, "hits to print per query")
    progress: bool = progress_option()
