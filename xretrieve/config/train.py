"""Settings of the training verbs: train (contrastive), distill and mine-negatives."""

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
)
from xretrieve.errors import UserError

PRECISIONS = ("fp32", "fp16", "bf16")
BATCH_MODES = ("mixed", "same-language")

# flags train and distill share: one wording for both
MAX_STEPS_HELP = "optimizer steps"
MAX_STEPS_UNSET = "--epochs passes over the data"
MAX_SEQ_LENGTH_HELP = "truncate texts to this many tokens"
TRAIN_DEVICE_HELP = "cpu, cuda, cuda:1 ..."
TRAIN_DEVICE_UNSET = "cuda when available"


def precision_option() -> object:
    return option("fp32", "fp16 needs CUDA", choices=PRECISIONS)


@dataclass
class TrainConfig:
    """Fine-tune a bi-encoder contrastively (in-batch and hard negatives)."""

    train_data: str = option(help="Tevatron-layout jsonl: query_id, query, positive_passages ...", input_file=True)
    out: str = option(help="new model folder")
    model: str | None = model_option(help="bi-encoder to fine-tune: name or folder")
    corpus: str | None = option(None, "corpus to join passages given as bare docids", input_file=True)
    max_steps: int | None = option(None, MAX_STEPS_HELP, unset=MAX_STEPS_UNSET)
    epochs: float = option(1.0, "passes over the training data")
    batch_size: int = batch_size_option(help="queries per batch (in-batch negatives)")
    # cached (GradCache) MNRL with this chunk size: big batches, small memory
    mini_batch_size: int | None = option(None, "cached MNRL (GradCache) in chunks of this size", unset="not cached")
    learning_rate: float = option(2e-5, "peak learning rate")
    warmup_ratio: float = option(0.1, "share of the steps spent warming up")
    weight_decay: float = 0.01
    temperature: float = option(0.05, "softmax temperature (scale = 1/temperature)")
    negatives: int | None = option(None, "hard negatives per query", unset="as many as all examples have")
    batches: str = option(
        "mixed",
        "same-language: a batch holds one positive language, so its negatives share it",
        choices=BATCH_MODES,
    )
    language_alpha: float = option(1.0, "languages sampled with weight n**alpha (1 proportional, 0 uniform)")
    max_seq_length: int | None = option(None, MAX_SEQ_LENGTH_HELP, unset="the model's maximum")
    query_prompt: str | None = option(None, "override the model's query prompt", unset="the model's")
    passage_prompt: str | None = option(None, "override the model's passage prompt", unset="the model's")
    dev_corpus: str | None = option(None, "dev evaluation during training: corpus ...", input_file=True)
    dev_queries: str | None = option(None, "... queries ...", input_file=True)
    dev_qrels: str | None = option(None, "... and qrels (nDCG@10, RR@10, R@100 every --eval-steps)", input_file=True)
    eval_steps: int = option(100, "dev evaluation every N steps")
    save_steps: int = option(100, "checkpoint every N steps")
    checkpoints: str | None = option(None, "checkpoint folder", unset="OUT.checkpoints")
    save_total_limit: int = 2
    resume: bool = option(False, "continue from the last checkpoint")
    seed: int = seed_option()
    precision: str = precision_option()
    device: str | None = device_option(TRAIN_DEVICE_HELP, unset=TRAIN_DEVICE_UNSET)
    logging_steps: int = 10
    progress: bool = progress_option()

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
    """Multilingual distillation: map translations onto the teacher's embedding."""

    parallel: str = option(help="source<TAB>translation TSV or jsonl {source, translation}", input_file=True)
    out: str = option(help="new model folder")
    # `--model` named the teacher here before --teacher did: kept as a deprecated spelling
    teacher: str | None = option(
        None, "teacher model: name or folder", deprecated=("--model",), unset="the embedded multilingual-e5-small"
    )
    student: str | None = option(None, "student model to train", unset="a copy of the teacher")
    max_steps: int | None = option(None, MAX_STEPS_HELP, unset=MAX_STEPS_UNSET)
    epochs: float = option(1.0, "passes over the parallel data")
    batch_size: int = batch_size_option(help="pairs per batch")
    learning_rate: float = option(2e-5, "peak learning rate")
    warmup_ratio: float = option(0.1, "share of the steps spent warming up")
    weight_decay: float = 0.01
    max_seq_length: int | None = option(None, MAX_SEQ_LENGTH_HELP, unset="the model's maximum")
    checkpoints: str | None = option(None, "checkpoint folder", unset="OUT.checkpoints")
    save_steps: int = option(100, "checkpoint every N steps")
    save_total_limit: int = 2
    resume: bool = option(False, "continue from the last checkpoint")
    seed: int = seed_option()
    precision: str = precision_option()
    device: str | None = device_option(TRAIN_DEVICE_HELP, unset=TRAIN_DEVICE_UNSET)
    logging_steps: int = 10
    progress: bool = progress_option()

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"--max-steps {self.max_steps}: must be at least 1")


@dataclass
class MineConfig:
    """Mine hard negatives for training queries from an index."""

    train_data: str = option(help="training jsonl whose queries get negatives", input_file=True)
    index: str = option(help="index of the passages to mine from (its model encodes)")
    out: str = option(help="training jsonl with the mined negatives")
    corpus: str | None = option(
        None, "corpus to join passages given as ids, and texts if the index has none", input_file=True
    )
    model: str | None = model_option(unset="the index's model")
    negatives: int = option(8, "negatives per query, hardest first")
    min_rank: int = option(1, "skip candidates ranked above this (1 = none)")
    max_rank: int = option(100, "look no deeper than this rank")
    # keep a candidate only if its score <= the positive's score - margin
    margin: float = option(0.0, "drop candidates scoring above the positive's score minus this (likely positives)")
    duplicate_threshold: float = option(0.9, "drop candidates this similar to a positive (character 3-gram Jaccard)")
    langs: list[str] | None = option(
        None, "mine only from documents in these languages", flag="--lang", parse=parse_langs, unset="all"
    )
    batch_size: int = batch_size_option()
    device: str | None = device_option("torch device for the query encoder")
    progress: bool = progress_option()

    def __post_init__(self) -> None:
        if self.negatives < 1:
            raise UserError(f"--negatives {self.negatives}: must be at least 1")
        if not 1 <= self.min_rank <= self.max_rank:
            raise UserError(f"--min-rank {self.min_rank} / --max-rank {self.max_rank}: need 1 <= min <= max")
        if not 0 < self.duplicate_threshold <= 1:
            raise UserError(f"--duplicate-threshold {self.duplicate_threshold}: must be in (0, 1]")
