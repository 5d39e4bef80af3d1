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
    checkpoint_every: int = 1000  # passages: an interrupted shard keeps its finished chunks of this size
    progress: bool = True
    ray: str | None = None  # run on Ray: a cluster address, or "local" to start one here

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
    out: str
    embeddings: str | None = None  # build from stored embeddings, or ...
    corpus: str | None = None  # ... encode this corpus first (into OUT/embeddings)
    model: str | None = None
    factory: str = "auto"  # Flat for small shards, tuned IVF above (index.auto_factory)
    num_shards: int = 1
    train_size: int = 200_000  # at least 39 vectors per IVF list: 4096 lists need 160k
    device: str = "cpu"
    batch_size: int = 32
    dtype: str = "float32"
    keep_embeddings: bool = False
    seed: int = 0
    checkpoint_every: int = 1000  # passages per encoding checkpoint (EncodeConfig)
    progress: bool = True
    ray: str | None = None  # run on Ray: a cluster address, or "local" to start one here
    translate: str | None = None  # record translate-test: searches translate queries with this backend
    translate_weight: float = 0.6  # weight of the translations against the query (0..1)
    translate_targets: list[str] | None = None  # languages to translate into; default: the documents'
    translate_max_targets: int = 1  # translations per query (the biggest reachable languages first); 0: all

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
    translate: bool = True  # translate-test, when the index records it (--no-translate turns it off)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.k < 1:
            raise UserError(f"--k {self.k}: must be at least 1")
        if self.batch_size < 1:
            raise UserError(f"--batch-size {self.batch_size}: must be at least 1")
        check_tag(self.tag)


# --- training (xretrieve/train.py) ---------------------------------------------------------------------------------

PRECISIONS = ("fp32", "fp16", "bf16")
BATCH_MODES = ("mixed", "same-language")


@dataclass
class TrainConfig:
    train_data: str
    out: str
    model: str | None = None
    corpus: str | None = None  # joins passages given as bare docids
    max_steps: int | None = None  # None: `epochs` passes
    epochs: float = 1.0
    batch_size: int = 32
    mini_batch_size: int | None = None  # cached (GradCache) MNRL with this chunk size: big batches, small memory
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    temperature: float = 0.05
    negatives: int | None = None  # hard negatives per query; None: as many as every example has
    batches: str = "mixed"  # or "same-language": in-batch negatives from the positive's language only
    language_alpha: float = 1.0  # languages drawn with weight n**alpha: 1 proportional, 0 uniform
    max_seq_length: int | None = None
    query_prompt: str | None = None  # overrides the model's saved prompt
    passage_prompt: str | None = None
    dev_corpus: str | None = None
    dev_queries: str | None = None
    dev_qrels: str | None = None
    eval_steps: int = 100
    save_steps: int = 100
    checkpoints: str | None = None  # default OUT.checkpoints, beside the model folder
    save_total_limit: int = 2
    resume: bool = False
    seed: int = 0
    precision: str = "fp32"
    device: str | None = None  # None: cuda when available
    logging_steps: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.batches not in BATCH_MODES:
            raise UserError(f"--batches {self.batches!r}: choose one of {', '.join(BATCH_MODES)}")
        if self.batch_size < 2:
            raise UserError(f"--batch-size {self.batch_size}: in-batch negatives need at least 2")
        if self.mini_batch_size is not None and self.mini_batch_size < 1:
            raise UserError(f"--mini-batch-size {self.mini_batch_size}: must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"--max-steps {self.max_steps}: must be at least 1")
        if self.temperature <= 0:
            raise UserError(f"--temperature {self.temperature}: must be positive")
        if self.negatives is not None and self.negatives < 0:
            raise UserError(f"--negatives {self.negatives}: must be 0 or more")
        if self.language_alpha < 0:
            raise UserError(f"--language-alpha {self.language_alpha}: must be 0 or more")
        dev = (self.dev_corpus, self.dev_queries, self.dev_qrels)
        if any(dev) and not all(dev):
            raise UserError("dev evaluation needs all of --dev-corpus, --dev-queries and --dev-qrels")


@dataclass
class DistillConfig:
    parallel: str  # source<TAB>translation[<TAB>...] or jsonl {"source", "translation"}
    out: str
    teacher: str | None = None
    student: str | None = None  # default: a copy of the teacher
    max_steps: int | None = None
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_seq_length: int | None = None
    checkpoints: str | None = None
    save_steps: int = 100
    save_total_limit: int = 2
    resume: bool = False
    seed: int = 0
    precision: str = "fp32"
    device: str | None = None
    logging_steps: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"--max-steps {self.max_steps}: must be at least 1")


@dataclass
class MineConfig:
    train_data: str
    index: str
    out: str
    corpus: str | None = None
    model: str | None = None
    negatives: int = 8  # per query, hardest first
    min_rank: int = 1  # rank window: candidates ranked min_rank..max_rank (1-based)
    max_rank: int = 100
    margin: float = 0.0  # keep a candidate only if its score <= the positive's score - margin
    duplicate_threshold: float = 0.9  # character 3-gram Jaccard with a positive at or above this: a duplicate
    langs: list[str] | None = None
    batch_size: int = 32
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.negatives < 1:
            raise UserError(f"--negatives {self.negatives}: must be at least 1")
        if not 1 <= self.min_rank <= self.max_rank:
            raise UserError(f"--min-rank {self.min_rank} / --max-rank {self.max_rank}: need 1 <= min <= max")
        if not 0 < self.duplicate_threshold <= 1:
            raise UserError(f"--duplicate-threshold {self.duplicate_threshold}: must be in (0, 1]")


GENERATOR_BACKENDS = ("seq2seq", "apertium", "llm")
MT_BACKENDS = ("apertium",)
AUGMENT_MODES = ("sum", "mean")


def parse_lang_weights(text: str | None) -> dict[str, float]:
    """'es=1,fr=0.5' -> {'es': 1.0, 'fr': 0.5}; languages not named weigh 1."""
    weights = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        lang, sep, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not sep or not lang.strip() or weight < 0:
            raise UserError(f"--lang-weights {text!r}: expected LANG=WEIGHT pairs with weights >= 0, e.g. es=1,fr=0.5")
        weights[lang.strip()] = weight
    return weights


@dataclass
class GenerateConfig:
    corpus: str
    out: str
    langs: list[str]
    backend: str = "seq2seq"
    generator: str | None = None  # seq2seq model name or folder
    num_queries: int = 5  # per passage and language (sampling backends)
    top_k: int = 10
    max_new_tokens: int = 64
    max_input_tokens: int = 512
    max_words: int = 32  # translation backend: words of title + leading sentence translated
    seed: int = 0
    shard: tuple[int, int] | None = None  # only the shards j with j % n == i
    shard_size: int = 1000  # passages per resumable unit
    batch_size: int = 16
    device: str | None = None
    # llm backend (xretrieve/llm.py): an OpenAI-compatible endpoint URL or a local causal LM folder
    llm: str | None = None
    llm_model: str | None = None
    temperature: float = 0.7  # 0: greedy
    max_query_words: int = 32  # longer replies are dropped
    concurrency: int = 8  # requests in flight to an endpoint
    timeout: float = 60.0  # seconds per request
    retries: int = 5  # after a 429, a 5xx or a timeout
    progress: bool = True

    def __post_init__(self) -> None:
        if self.backend not in GENERATOR_BACKENDS:
            raise UserError(f"--backend {self.backend!r}: choose one of {', '.join(GENERATOR_BACKENDS)}")
        if self.backend == "seq2seq" and not self.generator:
            raise UserError("--backend seq2seq needs --generator (a seq2seq model name or folder)")
        if (self.backend == "llm") != bool(self.llm):
            raise UserError(
                "--backend llm and --llm URL|FOLDER (an OpenAI-compatible endpoint or a causal LM) go together"
            )
        if not self.langs:
            raise UserError("--langs: give at least one target language, e.g. es,fr")
        for name in ("num_queries", "top_k", "max_new_tokens", "max_input_tokens", "max_words"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        if self.shard_size < 1 or self.batch_size < 1:
            raise UserError("--shard-size and --batch-size must be at least 1")
        check_llm_settings(self)


def check_llm_settings(config: GenerateConfig | SynthesizeConfig) -> None:
    for name in ("max_query_words", "concurrency", "max_new_tokens"):
        if getattr(config, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(config, name)}: must be at least 1")
    if config.temperature < 0:
        raise UserError(f"--temperature {config.temperature}: must be 0 (greedy) or more")
    if config.timeout <= 0:
        raise UserError(f"--timeout {config.timeout}: must be positive")
    if config.retries < 0:
        raise UserError(f"--retries {config.retries}: must be 0 or more")


@dataclass
class SynthesizeConfig:
    corpus: str
    out: str  # train.jsonl; its settings and counts go to OUT.json
    langs: list[str]
    llm: str | None = None  # exactly one backend: an OpenAI-compatible endpoint URL or a causal LM folder ...
    llm_model: str | None = None  # the model name the endpoint serves
    mt: str | None = None  # ... or "apertium": offline translation, no LLM
    per_passage: int = 1  # queries per passage and language
    sample: int | None = None  # only this many passages, drawn with `seed`
    seed: int = 0
    negatives: int | None = None  # mine this many hard negatives per query (mine-negatives)
    index: str | None = None  # index to mine from; default: a Flat index of the corpus in OUT.index/
    model: str | None = None  # encoder of that default index (default: the embedded model)
    shard: tuple[int, int] | None = None  # only the shards j with j % n == i
    shard_size: int = 100  # passages per resumable unit
    max_words: int = 32  # apertium: words of each text translated
    max_query_words: int = 32  # llm: longer queries are dropped
    max_new_tokens: int = 256  # llm: room for the summary and the query
    temperature: float = 0.7  # llm: 0 is greedy
    concurrency: int = 8
    timeout: float = 60.0
    retries: int = 5
    batch_size: int = 32  # local causal LM: prompts per forward pass (the CLI's default too)
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if (self.llm is None) == (self.mt is None):
            raise UserError("synthesize: give exactly one backend: --llm URL|FOLDER or --mt apertium")
        if self.mt is not None and self.mt not in MT_BACKENDS:
            raise UserError(f"--mt {self.mt!r}: choose one of {', '.join(MT_BACKENDS)}")
        if not self.langs:
            raise UserError("--langs: give at least one target language, e.g. sw,te")
        for name in ("per_passage", "shard_size", "max_words", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        for name in ("sample", "negatives"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"--{name} {getattr(self, name)}: must be at least 1")
        if self.index is not None and self.negatives is None:
            raise UserError("--index is where --negatives are mined from: give --negatives N too")
        check_llm_settings(self)


@dataclass
class TrainGeneratorConfig:
    model: str  # the seq2seq model to fine-tune (name or folder)
    out: str
    train: str | None = None  # Tevatron/xretrieve train.jsonl, or SWIM-IR jsonl with layout swim-ir ...
    layout: str = "tevatron"
    queries: str | None = None  # ... or queries + qrels + corpus (MIRACL, XOR-TyDi after `convert`)
    qrels: str | None = None
    corpus: str | None = None
    default_lang: str | None = None  # for pairs whose query carries no language
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 16
    learning_rate: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_input_tokens: int = 256
    max_target_tokens: int = 64
    save_steps: int = 500
    keep_checkpoints: int = 2
    seed: int = 0
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if (self.train is None) == (self.queries is None):
            raise UserError("train-generator: give --train, or --queries with --qrels and --corpus")
        if self.queries is not None and (self.qrels is None or self.corpus is None):
            raise UserError("train-generator: --queries needs --qrels and --corpus")
        if self.layout not in ("tevatron", "swim-ir"):
            raise UserError(f"--layout {self.layout!r}: choose tevatron (also xretrieve's train.jsonl) or swim-ir")
        if self.epochs < 1 or self.batch_size < 1 or self.save_steps < 1 or self.keep_checkpoints < 1:
            raise UserError("--epochs, --batch-size, --save-steps and --keep-checkpoints must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"--max-steps {self.max_steps}: must be at least 1")


@dataclass
class AugmentConfig:
    embeddings: str
    generated: str
    out: str
    alpha: float = 0.01
    mode: str = "sum"
    lang_weights: dict[str, float] | None = None  # weight of each query language; others weigh 1
    renormalize: bool = False
    model: str | None = None  # query encoder; default: the model the embeddings name
    shard: tuple[int, int] | None = None  # only this embeddings shard (i, n must match the folder's shards)
    batch_size: int = 64
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.mode not in AUGMENT_MODES:
            raise UserError(f"--mode {self.mode!r}: choose one of {', '.join(AUGMENT_MODES)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise UserError(f"--alpha {self.alpha}: must be in [0, 1]")
        if self.batch_size < 1:
            raise UserError(f"--batch-size {self.batch_size}: must be at least 1")


@dataclass
class AdaptConfig:
    """`xretrieve adapt`: the defaults are the settings that measured best on held-out data
    (benchmarks/results/adapt_xling.md)."""

    corpus: str
    out: str
    langs: list[str]  # the languages users ask in: passages get queries in them, queries are translated from them
    model: str | None = None  # the base model (default: the embedded model)
    llm: str | None = None  # synthesize and generate queries with an LLM (URL or folder) instead of Apertium
    llm_model: str | None = None
    train_steps: int = 40  # translate-train budget; 0: no fine-tuning
    train_batch_size: int = 32
    learning_rate: float = 5e-5
    temperature: float = 0.01  # contrastive temperature (e5's own)
    max_seq_length: int = 128  # while fine-tuning
    alpha: float = 0.2  # xQG: (1 - a) passage + a mean(generated queries)
    translate: bool = True  # record translate-test in the index
    translate_weight: float = 0.6
    factory: str = "auto"
    batch_size: int = 32
    precision: str | None = None  # None: bf16 where fine-tuning runs on a GPU, else fp32
    device: str | None = None
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.langs:
            raise UserError("--langs: give the languages users ask in, e.g. en,es,fr")
        from xretrieve.languages import check_languages

        check_languages(self.langs)
        if self.train_steps < 0:
            raise UserError(f"--train-steps {self.train_steps}: must be 0 (no fine-tuning) or more")
        for name in ("alpha", "translate_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be in [0, 1]")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise UserError(f"--precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.train_batch_size < 2 or self.batch_size < 1:
            raise UserError("--train-batch-size must be at least 2 and --batch-size at least 1")
