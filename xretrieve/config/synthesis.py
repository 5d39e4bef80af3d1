"""Settings of synthesize (SWIM-IR training data) and adapt (the whole recipe in one command)."""

from __future__ import annotations

from dataclasses import dataclass

from xretrieve.config.fields import (
    batch_size_option,
    device_option,
    model_option,
    option,
    parse_langs,
    progress_option,
    seed_option,
    shard_option,
)
from xretrieve.config.train import PRECISIONS
from xretrieve.config.xqg import (
    MT_BACKENDS,
    PARALLEL_SHARD_HELP,
    check_llm_settings,
    concurrency_option,
    llm_model_option,
    llm_option,
    max_new_tokens_option,
    max_query_words_option,
    retries_option,
    temperature_option,
    timeout_option,
)
from xretrieve.errors import UserError


@dataclass
class SynthesizeConfig:
    """Synthetic training data (SWIM-IR): queries in other languages for passages."""

    corpus: str = option(help="corpus .jsonl (id, text, title?, lang?)", input_file=True)
    out: str = option(help="training .jsonl (Tevatron rows); settings and counts in OUT.json")
    langs: list[str] = option(help="target languages, e.g. sw,te,es", parse=parse_langs)
    # exactly one backend: an LLM (endpoint URL or causal LM folder) or offline machine translation
    llm: str | None = llm_option()
    llm_model: str | None = llm_model_option()
    mt: str | None = option(
        None, "translate passages offline instead of asking an LLM", choices=MT_BACKENDS, unset="no MT"
    )
    per_passage: int = option(1, "queries per passage and language")
    sample: int | None = option(None, "only this many passages, drawn with --seed", unset="all")
    seed: int = seed_option()
    negatives: int | None = option(
        None, "mine this many hard negatives per query (as mine-negatives)", unset="no negatives"
    )
    index: str | None = option(None, "index to mine from", unset="a Flat index of the corpus in OUT.index/")
    model: str | None = model_option(help="encoder of that default index: name or folder")
    shard: tuple[int, int] | None = shard_option(PARALLEL_SHARD_HELP)
    shard_size: int = option(100, "passages per resumable shard")
    max_words: int = option(32, "--mt: words of each text translated")
    max_query_words: int = max_query_words_option()
    max_new_tokens: int = max_new_tokens_option(256)  # room for the summary and the query
    temperature: float = temperature_option()
    concurrency: int = concurrency_option()
    timeout: float = timeout_option()
    retries: int = retries_option()
    batch_size: int = batch_size_option(help="local causal LM: prompts per forward pass")
    device: str | None = device_option("torch device for a local LLM and the negatives' encoder")
    progress: bool = progress_option()

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
class AdaptConfig:
    """Adapt retrieval to a corpus in one command: an index that searches it cross-lingually.

    The defaults are the settings that measured best on held-out data (benchmarks/results/adapt_xling.md).
    """

    corpus: str = option(help="corpus .jsonl (id, text, title?, lang?)", input_file=True)
    out: str = option(help="index folder; the stages' artifacts go inside it")
    # the languages users ask in: passages get queries in them, queries are translated from them
    langs: list[str] = option(help="the languages users ask in, e.g. en,es,fr", parse=parse_langs)
    model: str | None = model_option(help="the base bi-encoder: name or folder")
    llm: str | None = llm_option("write queries with an LLM instead of Apertium (see synthesize)")
    llm_model: str | None = llm_model_option()
    train_steps: int = option(40, "fine-tuning steps on the synthetic pairs; 0: none")
    train_batch_size: int = option(32, "fine-tuning batch size")
    learning_rate: float = option(5e-5, "fine-tuning learning rate")
    temperature: float = 0.01  # contrastive temperature (e5's own)
    max_seq_length: int = 128  # while fine-tuning
    alpha: float = option(0.2, "xQG weight of the generated queries")  # (1 - a) passage + a mean(queries)
    translate: bool = option(True, "do not record translate-test", flag="--no-translate")
    translate_weight: float = option(0.6, "weight of a query's translations")
    factory: str = option("auto", "FAISS factory string, as for index")
    batch_size: int = batch_size_option()
    precision: str | None = option(None, "fine-tuning precision", choices=PRECISIONS, unset="bf16 on a GPU, else fp32")
    device: str | None = device_option(unset="cuda where there is a GPU, else cpu")
    seed: int = seed_option()
    progress: bool = progress_option()

    def __post_init__(self) -> None:
        if not self.langs:
            raise UserError("--langs: give the languages users ask in, e.g. en,es,fr")
        from xretrieve.text import check_languages

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
