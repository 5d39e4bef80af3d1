"""Settings of the xQG verbs (generate-queries, train-generator, augment) and the LLM flags that
generate-queries and synthesize share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xretrieve.config.fields import (
    batch_size_option,
    device_option,
    model_option,
    option,
    parse_lang_weights,
    parse_langs,
    progress_option,
    seed_option,
    shard_option,
)
from xretrieve.errors import UserError

GENERATOR_BACKENDS = ("seq2seq", "apertium", "llm")
MT_BACKENDS = ("apertium",)
AUGMENT_MODES = ("sum", "mean")
TRAIN_LAYOUTS = ("tevatron", "swim-ir")
PARALLEL_SHARD_HELP = "only shards j with j % n == i, e.g. 0/4, for parallel processes"


# --- the LLM backend's flags (xretrieve/xqg/llm.py) -----------------------------------------------------------------


def llm_option(help: str = "") -> Any:
    return option(
        None,
        help
        or "an OpenAI-compatible endpoint (http://host:port/v1; key from XRETRIEVE_LLM_API_KEY or OPENAI_API_KEY), "
        "or a local Hugging Face causal LM folder",
        metavar="URL|FOLDER",
    )


def llm_model_option() -> Any:
    return option(None, "the model name the endpoint serves", unset="the endpoint's choice")


def max_new_tokens_option(default: int) -> Any:
    return option(default, "tokens generated per reply")


def temperature_option() -> Any:
    return option(0.7, "sampling temperature; 0: greedy")


def max_query_words_option() -> Any:
    return option(32, "drop longer queries")


def concurrency_option() -> Any:
    return option(8, "requests in flight to the endpoint")


def timeout_option() -> Any:
    return option(60.0, "seconds per request")


def retries_option() -> Any:
    return option(5, "retries after a 429, a 5xx or a timeout")


def check_llm_settings(config: Any) -> None:
    for name in ("max_query_words", "concurrency", "max_new_tokens"):
        if getattr(config, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(config, name)}: must be at least 1")
    if config.temperature < 0:
        raise UserError(f"--temperature {config.temperature}: must be 0 (greedy) or more")
    if config.timeout <= 0:
        raise UserError(f"--timeout {config.timeout}: must be positive")
    if config.retries < 0:
        raise UserError(f"--retries {config.retries}: must be 0 or more")


# --- verbs ------------------------------------------------------------------------------------------------------


@dataclass
class GenerateConfig:
    """Generate queries in other languages for each passage (xQG)."""

    corpus: str = option(help="corpus .jsonl (id, text, title?, lang?)", input_file=True)
    out: str = option(help="generated queries .jsonl (docid, lang, text, generator, seed)")
    langs: list[str] = option(help="target languages, e.g. es,fr,ja", parse=parse_langs)
    backend: str = option("seq2seq", "generator backend", choices=GENERATOR_BACKENDS)
    # `--model` named the generator before --generator did: kept as a deprecated spelling
    generator: str | None = option(
        None, "seq2seq backend: model name or folder (e.g. from train-generator)", deprecated=("--model",)
    )
    num_queries: int = option(5, "sampled queries per passage and language")
    top_k: int = option(10, "top-k sampling")
    max_new_tokens: int = max_new_tokens_option(64)
    max_input_tokens: int = option(512, "passage tokens the generator reads")
    max_words: int = option(32, "apertium: words of title + lead sentence translated")
    seed: int = seed_option()
    shard: tuple[int, int] | None = shard_option(PARALLEL_SHARD_HELP)
    shard_size: int = option(1000, "passages per resumable shard")
    batch_size: int = batch_size_option(help="passages generated for together")
    device: str | None = device_option()
    llm: str | None = llm_option()
    llm_model: str | None = llm_model_option()
    temperature: float = temperature_option()
    max_query_words: int = max_query_words_option()
    concurrency: int = concurrency_option()
    timeout: float = timeout_option()
    retries: int = retries_option()
    progress: bool = progress_option()

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


@dataclass
class TrainGeneratorConfig:
    """Fine-tune a seq2seq model to write queries for passages (xQG)."""

    # the seq2seq model to fine-tune; its flag was --model before --generator: kept as a deprecated spelling
    model: str = option(
        help="the seq2seq model to fine-tune: name or folder", flag="--generator", deprecated=("--model",)
    )
    out: str = option(help="generator folder (checkpoints in OUT/checkpoints; resumes)")
    train: str | None = option(
        None, "training pairs: Tevatron / xretrieve train.jsonl, or SWIM-IR with --layout", input_file=True
    )
    layout: str = option("tevatron", "layout of --train", choices=TRAIN_LAYOUTS)
    queries: str | None = option(
        None, "or: queries file (with --qrels and --corpus, e.g. MIRACL after convert)", input_file=True
    )
    qrels: str | None = option(None, "qrels of --queries", input_file=True)
    corpus: str | None = option(None, "corpus the qrels point into", input_file=True)
    default_lang: str | None = option(None, "language of queries that carry none")
    epochs: int = option(1, "passes over the pairs")
    max_steps: int | None = option(None, "stop after this many steps", unset="--epochs passes")
    batch_size: int = batch_size_option(help="pairs per step")
    learning_rate: float = option(3e-4, "learning rate")
    weight_decay: float = 0.0
    warmup_steps: int = option(0, "steps of linear warm-up")
    max_input_tokens: int = option(256, "passage tokens read")
    max_target_tokens: int = option(64, "query tokens learnt")
    save_steps: int = option(500, "checkpoint every N steps")
    keep_checkpoints: int = 2
    seed: int = seed_option()
    device: str | None = device_option()
    progress: bool = progress_option()

    def __post_init__(self) -> None:
        if (self.train is None) == (self.queries is None):
            raise UserError("train-generator: give --train, or --queries with --qrels and --corpus")
        if self.queries is not None and (self.qrels is None or self.corpus is None):
            raise UserError("train-generator: --queries needs --qrels and --corpus")
        if self.layout not in TRAIN_LAYOUTS:
            raise UserError(f"--layout {self.layout!r}: choose tevatron (also xretrieve's train.jsonl) or swim-ir")
        if self.epochs < 1 or self.batch_size < 1 or self.save_steps < 1 or self.keep_checkpoints < 1:
            raise UserError("--epochs, --batch-size, --save-steps and --keep-checkpoints must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"--max-steps {self.max_steps}: must be at least 1")


@dataclass
class AugmentConfig:
    """Fold generated queries into passage embeddings (xQG): a new embeddings folder."""

    embeddings: str = option(help="embeddings folder written by `xretrieve encode`")
    generated: str = option(help="generated queries .jsonl", input_file=True)
    out: str = option(help="new embeddings folder (index it with `xretrieve index --embeddings`)")
    alpha: float = option(0.01, "weight of the queries: (1-a)*passage + a*queries")
    mode: str = option("sum", "sum of query vectors (paper) or mean", choices=AUGMENT_MODES)
    # weight of each query language; others weigh 1
    lang_weights: dict[str, float] | None = option(
        None, "weight per query language, e.g. es=1,fr=0.5; 0 drops one", parse=parse_lang_weights, unset="all 1"
    )
    renormalize: bool = option(False, "scale augmented vectors to unit length")
    model: str | None = model_option(help="query encoder: name or folder", unset="the model the embeddings name")
    shard: tuple[int, int] | None = shard_option(
        "only embeddings shard i of n (n: the folder's shard count), e.g. 0/4", unset="all"
    )
    batch_size: int = batch_size_option(help="queries encoded together")
    device: str | None = device_option("torch device for the query encoder")
    progress: bool = progress_option()

    def __post_init__(self) -> None:
        if self.mode not in AUGMENT_MODES:
            raise UserError(f"--mode {self.mode!r}: choose one of {', '.join(AUGMENT_MODES)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise UserError(f"--alpha {self.alpha}: must be in [0, 1]")
        if self.batch_size < 1:
            raise UserError(f"--batch-size {self.batch_size}: must be at least 1")
