"""`xretrieve train`: contrastive fine-tuning of a bi-encoder with in-batch and hard negatives (MNRL, or its
cached variant), batches drawn by language, and an optional dev evaluation with our own measures."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from statistics import mean

import numpy as np

from xretrieve.config import TrainConfig
from xretrieve.encode import passage_text
from xretrieve.formats import iter_corpus, read_qrels, read_queries
from xretrieve.train.data import batch_languages, contrastive_dataset, load_examples, negatives_per_example
from xretrieve.train.sampler import language_batch_sampler
from xretrieve.train.trainer import output_folders, prompt_text, save_model, training_arguments, training_device

DEV_MEASURES = ("nDCG@10", "RR@10", "R@100")


def train(config: TrainConfig) -> Path:
    """Contrastive fine-tuning (MNRL, or its cached variant) on query/positive(/negatives) examples."""
    out, checkpoints, resume_from = output_folders(config)
    examples = load_examples(config.train_data, config.corpus)  # bad data fails before torch is imported
    negatives = negatives_per_example(examples, config.negatives, config.train_data)

    from sentence_transformers import SentenceTransformerTrainer

    from xretrieve.model import BiEncoder

    device = training_device(config.device)
    dataset = contrastive_dataset(examples, negatives)
    encoder = BiEncoder(config.model, device=device, max_seq_length=config.max_seq_length)
    model = encoder.model
    query_name, passage_name, query_prompt, passage_prompt = _prompts(encoder, config)
    prompts = {column: passage_prompt for column in dataset.column_names if column != "query"} | {"query": query_prompt}
    prompts = {column: text for column, text in prompts.items() if text}
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
    args = training_arguments(config, device, checkpoints, prompts=prompts or None, batch_sampler=sampler, **eval_args)
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=dataset, loss=_loss(model, config), evaluator=evaluator
    )
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
    return save_model(model, out, settings, trainer.state.log_history)


def _prompts(encoder, config: TrainConfig) -> tuple[str | None, str | None, str | None, str | None]:
    """(query prompt name, passage prompt name, query prompt, passage prompt): the model's own, or those
    `--query-prompt`/`--passage-prompt` give, which are set on the model so that its folder carries them."""
    model = encoder.model
    query_name = encoder.query_prompt_name or ("query" if config.query_prompt else None)
    passage_name = encoder.passage_prompt_name or ("passage" if config.passage_prompt else None)
    if config.query_prompt is not None:
        model.prompts[query_name] = config.query_prompt
    if config.passage_prompt is not None:
        model.prompts[passage_name] = config.passage_prompt
    return query_name, passage_name, prompt_text(model, query_name), prompt_text(model, passage_name)


def _loss(model, config: TrainConfig):
    """MNRL at temperature `--temperature`; its cached variant (GradCache) with `--mini-batch-size`."""
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    scale = 1.0 / config.temperature
    if config.mini_batch_size:
        return CachedMultipleNegativesRankingLoss(
            model, scale=scale, mini_batch_size=config.mini_batch_size, show_progress_bar=False
        )
    return MultipleNegativesRankingLoss(model, scale=scale)


def _dev_evaluator(corpus: str, queries: str, qrels: str, query_prompt: str | None, passage_prompt: str | None):
    """An evaluator for the trainer that scores with our own evaluation: exact top-100 by inner product (as a
    Flat index), then trec_eval's measures over the qrels."""
    from sentence_transformers.base.evaluation import BaseEvaluator

    from xretrieve.evaluation.evaluate import parse_measures, per_query_qrels_scores
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
