"""Fine-tune a bi-encoder: contrastive training with in-batch and hard negatives, hard-negative mining from
our own index, and multilingual distillation (translations mapped onto the teacher's embedding of the source).

Training runs on sentence-transformers' trainer, so checkpoints, resume, mixed precision and logging are
the Hugging Face Trainer's. The result is a plain sentence-transformers folder carrying its prompts, plus
`xretrieve.json` (which prompt encodes which side) and `training.json` (settings and loss history).
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from statistics import mean
from typing import Any

import numpy as np

from xretrieve.adapters import TrainingExample, _training_json, iter_dpr_training, iter_training
from xretrieve.config import DistillConfig, MineConfig, TrainConfig
from xretrieve.encode import passage_text
from xretrieve.errors import UserError
from xretrieve.formats import Document, iter_corpus, read_parallel, read_qrels, read_queries, write_jsonl
from xretrieve.manifest import atomic_write_json
from xretrieve.text import shingles

DEV_MEASURES = ("nDCG@10", "RR@10", "R@100")
_MINE_SEARCH_BLOCK = (
    1024  # training queries searched per call: big enough for batched search, small enough to show progress
)


# --- data ----------------------------------------------------------------------------------------------------------


def load_examples(path: str, corpus: str | None = None) -> list[TrainingExample]:
    """Training examples in the Tevatron layout (passages given as ids are joined with `corpus`) or DPR's."""
    documents: dict[str, Document] | None = None
    if corpus:
        documents = {doc.id: doc for doc in iter_corpus(corpus)}
    # DPR's biencoder files (XOR-TyDi's retriever training data) are one JSON array; the rest is jsonl
    is_dpr = path.lower().endswith(".json")
    examples = list(iter_dpr_training(path) if is_dpr else iter_training(path, documents))
    if not examples:
        raise UserError(f"{path}: no training examples")
    return examples


def negatives_per_example(examples: list[TrainingExample], wanted: int | None, path: str) -> int:
    """Every row of a sentence-transformers dataset has the same columns: as many negatives as asked for
    (an example with fewer is an error), or by default as many as every example has."""
    fewest = min(len(e.negatives) for e in examples)
    if wanted is None:
        return fewest
    if wanted > fewest:
        short = next(e for e in examples if len(e.negatives) < wanted)
        raise UserError(
            f"{path}: --negatives {wanted} but example {short.query_id!r} has {len(short.negatives)} "
            "negatives (mine more with `xretrieve mine-negatives`, or ask for fewer)"
        )
    return wanted


def contrastive_dataset(examples: list[TrainingExample], negatives: int):
    """Columns query, positive, negative_1..n: the (anchor, positive, negatives) tuples MNRL reads."""
    from datasets import Dataset

    columns: dict[str, list[str]] = {
        "query": [e.query for e in examples],
        "positive": [passage_text(e.positives[0]) for e in examples],
    }
    for i in range(negatives):
        columns[f"negative_{i + 1}"] = [passage_text(e.negatives[i]) for e in examples]
    return Dataset.from_dict(columns)


def batch_languages(examples: list[TrainingExample], batches: str) -> list[str]:
    """The pool each example is drawn from: its positive's language for same-language batches (so in-batch
    negatives share the positive's language and language identity gives nothing away), else its query's."""
    if batches == "same-language":
        return [e.positives[0].lang or e.lang for e in examples]
    return [e.lang or e.positives[0].lang for e in examples]


# --- batches -------------------------------------------------------------------------------------------------------


def _batch_sampler_base():
    from sentence_transformers.base.sampler import DefaultBatchSampler

    return DefaultBatchSampler


def language_batch_sampler(languages: list[str], same_language: bool, alpha: float, keys: list[str]) -> Callable:
    """What the trainer calls with (dataset, batch_size, drop_last, ..., seed) to get a LanguageBatchSampler;
    a partial of a module function, since the trainer pickles its arguments into each checkpoint."""
    return functools.partial(
        _make_language_batch_sampler, languages=languages, same_language=same_language, alpha=alpha, keys=keys
    )


def _make_language_batch_sampler(
    dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0, **settings
):
    sampler_class = _language_batch_sampler_class()
    return sampler_class(dataset, batch_size, drop_last, valid_label_columns, generator, seed, **settings)


_SAMPLER_CLASS = None


def _language_batch_sampler_class():
    """Defined on first use: its base class lives in sentence-transformers, a heavy import."""
    global _SAMPLER_CLASS
    if _SAMPLER_CLASS is not None:
        return _SAMPLER_CLASS

    class LanguageBatchSampler(_batch_sampler_base()):
        """Batches drawn by language: a language is picked with weight n**alpha (n: its examples; alpha 1 is
        proportional, 0 uniform, as XLM-R samples languages), each language's examples are served in a
        shuffled order that is reshuffled when used up. `same_language`: the whole batch from one language;
        else each slot picks its own. No two examples of a batch share a key (their positive passage), as
        a duplicate positive would be a false in-batch negative. Deterministic in (seed, epoch), so a resumed
        run sees the same batches the interrupted one would have."""

        def __init__(
            self,
            dataset,
            batch_size,
            drop_last,
            valid_label_columns=None,
            generator=None,
            seed=0,
            *,
            languages,
            same_language,
            alpha,
            keys,
        ):
            super().__init__(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
            if len(languages) != len(dataset):
                raise ValueError("one language per dataset row")
            self.same_language = same_language
            self.keys = keys
            self.pools = {}
            for row, lang in enumerate(languages):
                self.pools.setdefault(lang, []).append(row)
            self.names = sorted(self.pools)
            weights = np.array([len(self.pools[n]) for n in self.names], dtype=float) ** alpha
            self.weights = weights / weights.sum()

        def __len__(self) -> int:
            rows = sum(len(p) for p in self.pools.values())
            return rows // self.batch_size if self.drop_last else -(-rows // self.batch_size)

        def __iter__(self):
            rng = np.random.default_rng([self.seed, self.epoch])
            queues = {n: [] for n in self.names}

            def take(lang: str, taken: set[str]) -> int | None:
                pool = self.pools[lang]
                for _ in range(2 * len(pool)):  # one pass over a fresh shuffle is enough to find a new key
                    if not queues[lang]:
                        queues[lang] = list(rng.permutation(pool)[::-1])
                    row = int(queues[lang].pop())
                    if self.keys[row] not in taken:
                        return row
                return None

            for _ in range(len(self)):
                batch: list[int] = []
                taken: set[str] = set()
                if self.same_language:
                    lang = self.names[rng.choice(len(self.names), p=self.weights)]
                    size = min(self.batch_size, len({self.keys[r] for r in self.pools[lang]}))
                    while len(batch) < size and (row := take(lang, taken)) is not None:
                        batch.append(row)
                        taken.add(self.keys[row])
                else:
                    for _ in range(self.batch_size * 4):
                        if len(batch) == self.batch_size:
                            break
                        row = take(self.names[rng.choice(len(self.names), p=self.weights)], taken)
                        if row is not None:
                            batch.append(row)
                            taken.add(self.keys[row])
                yield batch

    _SAMPLER_CLASS = LanguageBatchSampler
    return _SAMPLER_CLASS


# --- dev evaluation ------------------------------------------------------------------------------------------------


def _dev_evaluator(corpus: str, queries: str, qrels: str, query_prompt: str | None, passage_prompt: str | None):
    """An evaluator for the trainer that scores with our own evaluation: exact top-100 by inner product (as a
    Flat index), then trec_eval's measures over the qrels."""
    from sentence_transformers.base.evaluation import BaseEvaluator

    from xretrieve.evaluate import parse_measures, per_query_qrels_scores
    from xretrieve.formats import RunEntry

    docs = list(iter_corpus(corpus))
    dev_queries = read_queries(queries)
    judged = read_qrels(qrels)

    class RetrievalDevEvaluator(BaseEvaluator):
        def __init__(self):
            super().__init__()
            self.primary_metric = "nDCG@10"

        def __call__(self, model, output_path=None, epoch=-1, steps=-1) -> dict[str, float]:
            q = model.encode([x.text for x in dev_queries], prompt=query_prompt, convert_to_numpy=True)
            d = model.encode([passage_text(x) for x in docs], prompt=passage_prompt, convert_to_numpy=True)
            scores = q @ d.T
            depth = min(100, len(docs))
            top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
            run = {}
            for row, query in enumerate(dev_queries):
                order = sorted(top[row], key=lambda c: (-scores[row, c], docs[c].id))
                run[query.id] = [RunEntry(docs[c].id, rank, float(scores[row, c])) for rank, c in enumerate(order, 1)]
            values = per_query_qrels_scores(run, judged, parse_measures(DEV_MEASURES))
            metrics = {name: mean(v.values()) if v else 0.0 for name, v in values.items()}
            metrics = self.prefix_name_to_metrics(metrics, "dev")
            self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
            return metrics

    return RetrievalDevEvaluator()


# --- shared trainer plumbing ---------------------------------------------------------------------------------------


def _device(requested: str | None) -> str:
    """The device to train on; also where a missing `train` extra is reported, before any work."""
    import importlib.util

    import torch

    missing = [name for name in ("accelerate", "datasets") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"training needs {', '.join(missing)}: pip install 'xretrieve[train]'")

    if requested in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {requested}: no CUDA device is available")
    return requested


def _check_out(out: str) -> Path:
    path = Path(out)
    if path.exists():
        raise UserError(f"{out}: already exists; choose a new --out (checkpoints to resume from stay beside it)")
    return path


def _training_arguments(config: TrainConfig | DistillConfig, device: str, checkpoints: Path, **extra):
    from sentence_transformers import SentenceTransformerTrainingArguments

    if config.precision == "fp16" and not device.startswith("cuda"):
        raise UserError("--precision fp16 needs a CUDA device (use bf16 or fp32 on CPU)")
    steps = {"max_steps": config.max_steps} if config.max_steps else {"num_train_epochs": config.epochs}
    return SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_ratio,  # transformers 5 reads a float below 1 as a share of the steps
        fp16=config.precision == "fp16",
        bf16=config.precision == "bf16",
        use_cpu=device == "cpu",
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        disable_tqdm=not config.progress,
        weight_decay=config.weight_decay,
        dataloader_drop_last=False,
        **steps,
        **extra,
    )


def _resume_point(config: TrainConfig | DistillConfig, checkpoints: Path) -> str | None:
    if not config.resume:
        if checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*")):
            raise UserError(f"{checkpoints}: holds checkpoints of an earlier run; pass --resume or remove it")
        return None
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if last is None:
        raise UserError(f"--resume: no checkpoint in {checkpoints}")
    return last


def _save(model, out: Path, settings: dict[str, Any], history: list[dict]) -> Path:
    """The model folder, written beside `out` and renamed into place: no half-written folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        folder = staging / "model"
        model.save(str(folder))
        atomic_write_json(folder / "xretrieve.json", settings)
        atomic_write_json(folder / "training.json", {"log_history": history})
        os.rename(folder, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _prompt(model, name: str | None) -> str | None:
    return (model.prompts or {}).get(name) if name else None


# --- train ---------------------------------------------------------------------------------------------------------


def train(config: TrainConfig) -> Path:
    """Contrastive fine-tuning (MNRL, or its cached variant) on query/positive(/negatives) examples."""
    out = _check_out(config.out)
    checkpoints = Path(config.checkpoints or f"{config.out}.checkpoints")
    resume_from = _resume_point(config, checkpoints)
    examples = load_examples(config.train_data, config.corpus)  # bad data fails before torch is imported
    negatives = negatives_per_example(examples, config.negatives, config.train_data)

    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    from xretrieve.model import BiEncoder

    device = _device(config.device)
    dataset = contrastive_dataset(examples, negatives)
    encoder = BiEncoder(config.model, device=device, max_seq_length=config.max_seq_length)
    model = encoder.model
    query_name = encoder.query_prompt_name or ("query" if config.query_prompt else None)
    passage_name = encoder.passage_prompt_name or ("passage" if config.passage_prompt else None)
    if config.query_prompt is not None:
        model.prompts[query_name] = config.query_prompt
    if config.passage_prompt is not None:
        model.prompts[passage_name] = config.passage_prompt
    query_prompt, passage_prompt = _prompt(model, query_name), _prompt(model, passage_name)
    prompts = {column: passage_prompt for column in dataset.column_names if column != "query"}
    prompts["query"] = query_prompt
    prompts = {column: text for column, text in prompts.items() if text}

    scale = 1.0 / config.temperature
    if config.mini_batch_size:
        loss = CachedMultipleNegativesRankingLoss(
            model, scale=scale, mini_batch_size=config.mini_batch_size, show_progress_bar=False
        )
    else:
        loss = MultipleNegativesRankingLoss(model, scale=scale)

    languages = batch_languages(examples, config.batches)
    sampler = language_batch_sampler(
        languages,
        same_language=config.batches == "same-language",
        alpha=config.language_alpha,
        keys=[e.positives[0].id or passage_text(e.positives[0]) for e in examples],
    )
    evaluator, eval_args = None, {}
    if config.dev_corpus:
        evaluator = _dev_evaluator(
            config.dev_corpus, config.dev_queries, config.dev_qrels, query_prompt, passage_prompt
        )
        eval_args = {"eval_strategy": "steps", "eval_steps": config.eval_steps}
    args = _training_arguments(config, device, checkpoints, prompts=prompts or None, batch_sampler=sampler, **eval_args)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss, evaluator=evaluator)
    trainer.train(resume_from_checkpoint=resume_from)
    settings = {
        "query_prompt_name": query_name,
        "passage_prompt_name": passage_name,
        "base_model": encoder.identity,
        "training": {
            **{k: v for k, v in asdict(config).items() if k not in ("out", "progress")},
            "examples": len(examples),
            "negatives_used": negatives,
            "languages": {lang: languages.count(lang) for lang in sorted(set(languages))},
            "steps": trainer.state.global_step,
            "device": device,
        },
    }
    return _save(model, out, settings, trainer.state.log_history)


# --- distill -------------------------------------------------------------------------------------------------------


def distill(config: DistillConfig) -> Path:
    """Multilingual distillation (Reimers & Gurevych 2020): the student learns to map a source sentence and
    its translation onto the teacher's embedding of the source (MSE). Both sides a retriever encodes are
    taught: each pair is trained once with the query prompt and once with the passage prompt."""
    out = _check_out(config.out)
    checkpoints = Path(config.checkpoints or f"{config.out}.checkpoints")
    resume_from = _resume_point(config, checkpoints)
    pairs = read_parallel(config.parallel)  # bad data fails before torch is imported

    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MSELoss

    from xretrieve.model import BiEncoder

    device = _device(config.device)
    teacher = BiEncoder(config.teacher, device=device, max_seq_length=config.max_seq_length)
    student = BiEncoder(config.student or config.teacher, device=device, max_seq_length=config.max_seq_length)
    if student.dim != teacher.dim:
        raise UserError(f"student dimension {student.dim} != teacher dimension {teacher.dim}")

    sources, translations, labels = [], [], []
    roles = [
        (_prompt(teacher.model, teacher.query_prompt_name), _prompt(student.model, student.query_prompt_name)),
        (_prompt(teacher.model, teacher.passage_prompt_name), _prompt(student.model, student.passage_prompt_name)),
    ]
    roles = list(dict.fromkeys((t or "", s or "") for t, s in roles))  # no prompts: one role
    source_texts = [source for source, _ in pairs]
    for teacher_prompt, student_prompt in roles:
        # prompts are written into the texts, as sentence-transformers itself prepends them
        targets = teacher.model.encode(
            source_texts,
            prompt=teacher_prompt,
            batch_size=config.batch_size,
            convert_to_numpy=True,
            show_progress_bar=config.progress,
        )
        sources += [student_prompt + s for s in source_texts]
        translations += [student_prompt + t for _, t in pairs]
        labels += list(targets.astype(np.float32))
    dataset = Dataset.from_dict({"source": sources, "translation": translations, "label": labels})
    args = _training_arguments(config, device, checkpoints)
    trainer = SentenceTransformerTrainer(
        model=student.model, args=args, train_dataset=dataset, loss=MSELoss(student.model)
    )
    trainer.train(resume_from_checkpoint=resume_from)
    settings = {
        "query_prompt_name": student.query_prompt_name,
        "passage_prompt_name": student.passage_prompt_name,
        "base_model": student.identity,
        "teacher": teacher.identity,
        "training": {
            **{k: v for k, v in asdict(config).items() if k not in ("out", "progress")},
            "pairs": len(pairs),
            "steps": trainer.state.global_step,
            "device": device,
        },
    }
    return _save(student.model, out, settings, trainer.state.log_history)


# --- mine-negatives ------------------------------------------------------------------------------------------------


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def mine_negatives(config: MineConfig) -> dict[str, int]:
    """Hard negatives for each training query from an index: candidates ranked in [min_rank, max_rank], never
    a positive, nor a near-duplicate of one (character 3-gram Jaccard), nor scored within `margin` of the
    positive (likely an unjudged positive); hardest first. Writes the training file with those negatives."""
    from tqdm import tqdm

    from xretrieve.search import Searcher

    examples = load_examples(config.train_data, config.corpus)
    searcher = Searcher(config.index, model=config.model, device=config.device)
    encoder = searcher.encoder
    query_vectors = encoder.encode_queries(
        [e.query for e in examples], batch_size=config.batch_size, progress=config.progress
    )
    positive_texts = [passage_text(p) for e in examples for p in e.positives]
    positive_vectors = encoder.encode_passages(positive_texts, batch_size=config.batch_size, progress=config.progress)
    corpus_docs: Mapping[str, Document] = {}
    if config.corpus:
        corpus_docs = {doc.id: doc for doc in iter_corpus(config.corpus)}
    results = []
    with tqdm(total=len(examples), desc="mine-negatives: search", unit="query", disable=not config.progress) as bar:
        for start in range(0, len(examples), _MINE_SEARCH_BLOCK):  # blocks, so that the bar moves
            block = query_vectors[start : start + _MINE_SEARCH_BLOCK]
            results += searcher.search_vectors(block, k=config.max_rank, langs=config.langs)
            bar.update(len(block))

    counts = {
        "examples": len(examples),
        "negatives": 0,
        "short": 0,
        "excluded_positive": 0,
        "excluded_duplicate": 0,
        "excluded_margin": 0,
    }
    mined: list[TrainingExample] = []
    row = 0
    for example, vector, hits in tqdm(
        list(zip(examples, query_vectors, results, strict=True)), desc="mining", disable=not config.progress
    ):
        n = len(example.positives)
        positive_scores = positive_vectors[row : row + n] @ vector
        row += n
        threshold = float(positive_scores.min()) - config.margin
        positive_ids = {p.id for p in example.positives}
        positive_grams = [shingles(passage_text(p)) for p in example.positives]
        chosen: list[Document] = []
        for hit in hits[config.min_rank - 1 :]:
            if len(chosen) == config.negatives:
                break
            if hit.docid in positive_ids:
                counts["excluded_positive"] += 1
                continue
            doc = _candidate(hit, searcher, corpus_docs)
            if doc.text and any(
                _jaccard(shingles(passage_text(doc)), grams) >= config.duplicate_threshold for grams in positive_grams
            ):
                counts["excluded_duplicate"] += 1
                continue
            if hit.score > threshold:
                counts["excluded_margin"] += 1
                continue
            chosen.append(doc)
        counts["negatives"] += len(chosen)
        counts["short"] += len(chosen) < config.negatives
        mined.append(TrainingExample(example.query_id, example.query, example.positives, chosen, example.lang))
    write_jsonl(config.out, (_training_json(e) for e in mined))
    atomic_write_json(
        f"{config.out}.json",
        {"settings": {k: v for k, v in asdict(config).items() if k != "progress"}, "counts": counts},
    )
    return counts


def _candidate(hit, searcher, corpus_docs: Mapping[str, Document]) -> Document:
    """The candidate's text from the index's document store or the corpus; a bare id when neither has it."""
    stored = searcher.document(hit.docid)
    if stored:
        return Document(stored["id"], stored["text"], stored.get("title", ""), stored.get("lang", ""))
    if hit.docid in corpus_docs:
        return corpus_docs[hit.docid]
    return Document(hit.docid, "", "", hit.lang)
