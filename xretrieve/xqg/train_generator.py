"""`xretrieve train-generator`: fine-tune a seq2seq model to write a query in a given language for a passage
(xQG's generator), with its own resumable loop (checkpoints in `checkpoints.py`)."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xretrieve.config import TrainGeneratorConfig
from xretrieve.errors import UserError
from xretrieve.formats import Document
from xretrieve.manifest import atomic_open, atomic_write_json, sha256_file
from xretrieve.xqg.checkpoints import latest_checkpoint, list_checkpoints, load_optimizer, save_checkpoint
from xretrieve.xqg.template import GENERATOR_SETTINGS, render_prompt, saved_template


def init_t5(
    texts: list[str], out: str | Path, vocab_size: int = 8000, d_model: int = 256, layers: int = 4, seed: int = 0
) -> Path:
    """A randomly initialised T5 with a Unigram tokenizer learnt from `texts`, as a model folder.

    No multilingual seq2seq weights install offline here; this gives `train-generator` something to train
    from scratch (and the tests a tiny model). A pretrained mT5 or mBART folder is the better start.
    """
    import torch
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors, trainers
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    specials = ["<pad>", "</s>", "<unk>"]
    tokenizer = Tokenizer(Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    alphabet = len(set("".join(texts)) | {"▁"})  # Unigram keeps every character as a piece
    size = max(vocab_size, alphabet + len(specials) + 1)
    trainer = trainers.UnigramTrainer(vocab_size=size, special_tokens=specials, unk_token="<unk>")
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(seed)
    heads = max(1, d_model // 64)
    config = T5Config(
        vocab_size=tokenizer.get_vocab_size(),
        d_model=d_model,
        d_kv=d_model // heads,
        d_ff=4 * d_model,
        num_layers=layers,
        num_decoder_layers=layers,
        num_heads=heads,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    out = Path(out)
    T5ForConditionalGeneration(config).save_pretrained(out)
    fast.save_pretrained(out)
    return out


@dataclass(frozen=True)
class GeneratorPair:
    passage: Document
    query: str
    lang: str  # the query's language: the language the generator is asked for


def read_generator_pairs(config: TrainGeneratorConfig) -> list[GeneratorPair]:
    """(passage, query, query language) from Tevatron/xretrieve train.jsonl, SWIM-IR, or queries + qrels + corpus."""
    from xretrieve.convert.swim_ir import iter_swim_ir
    from xretrieve.formats import iter_corpus, read_qrels, read_queries
    from xretrieve.training_data import iter_training

    pairs = []
    if config.train is not None:
        examples = iter_swim_ir(config.train) if config.layout == "swim-ir" else iter_training(config.train)
        for example in examples:
            lang = example.lang or config.default_lang
            if not lang:
                raise UserError(
                    f"{config.train}: query {example.query_id!r} has no language ('lang' or 'query_lang'): "
                    "pass --default-lang"
                )
            pairs += [GeneratorPair(p, example.query, lang) for p in example.positives]
    else:
        queries = {q.id: q for q in read_queries(config.queries)}
        qrels = read_qrels(config.qrels)
        wanted = {d for docs in qrels.values() for d, rel in docs.items() if rel > 0}
        passages = {d.id: d for d in iter_corpus(config.corpus) if d.id in wanted}
        for qid, docs in qrels.items():
            if qid not in queries:
                continue
            lang = queries[qid].lang or config.default_lang
            if not lang:
                raise UserError(f"{config.queries}: query {qid!r} has no 'lang': pass --default-lang")
            pairs += [
                GeneratorPair(passages[d], queries[qid].text, lang)
                for d, rel in docs.items()
                if rel > 0 and d in passages
            ]
    if not pairs:
        raise UserError("train-generator: no (passage, query) pairs in the training data")
    return pairs


def _batches(count: int, batch_size: int, seed: int, start_step: int) -> Iterator[tuple[int, np.ndarray]]:
    """(step, row indices) from `start_step` on; epoch e shuffles with seed + e: a resumed run sees the same batches."""
    per_epoch = math.ceil(count / batch_size)
    step = start_step
    while True:
        epoch, offset = divmod(step, per_epoch)
        order = np.random.default_rng(seed + epoch).permutation(count)
        for b in range(offset, per_epoch):
            yield step, order[b * batch_size : (b + 1) * batch_size]
            step += 1


def train_generator(config: TrainGeneratorConfig) -> Path:
    """Fine-tune a seq2seq model to write a query in a given language for a passage (xQG's generator).

    Checkpoints (model, optimizer state and RNG state; safetensors and JSON, no pickle) go to
    OUT/checkpoints every `save_steps`; a rerun resumes from the latest and sees the same batches.
    """
    from tqdm import tqdm
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    pairs = read_generator_pairs(config)
    out = Path(config.out)
    template = saved_template(config.model)
    total = config.max_steps or config.epochs * math.ceil(len(pairs) / config.batch_size)
    plan = _plan(config, len(pairs), template)
    ckpt_dir = out / "checkpoints"
    resume, state = latest_checkpoint(ckpt_dir, plan)
    model, tokenizer, optimizer = _load(config, resume)
    start = state["step"] if resume is not None else 0
    loss = float("nan")
    with tqdm(total=total, initial=start, desc="train-generator", unit="step", disable=not config.progress) as bar:
        for step, rows in _batches(len(pairs), config.batch_size, config.seed, start):
            if step >= total:
                break
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(config, total, step)
            loss = _step(model, tokenizer, optimizer, [pairs[i] for i in rows], template, config)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            if (step + 1) % config.save_steps == 0 or step + 1 == total:
                save_checkpoint(ckpt_dir, step + 1, model, tokenizer, optimizer, plan, config.keep_checkpoints)
    _publish(out, list_checkpoints(ckpt_dir)[-1], template, plan, total, loss)
    return out


def _plan(config: TrainGeneratorConfig, pairs: int, template: str) -> dict:
    """What a checkpoint must have been trained with to be resumed from: base model, data and settings."""
    data_files = [p for p in (config.train, config.queries, config.qrels, config.corpus) if p]
    return {
        "base": str(Path(config.model).resolve()) if os.path.isdir(config.model) else config.model,
        "data_sha256": [sha256_file(p) for p in data_files],
        "pairs": pairs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "warmup_steps": config.warmup_steps,
        "max_input_tokens": config.max_input_tokens,
        "max_target_tokens": config.max_target_tokens,
        "seed": config.seed,
        "template": template,
    }


def _load(config: TrainGeneratorConfig, resume: Path | None):
    """(model, tokenizer, optimizer) from the checkpoint to resume from, else from the base model."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resume or config.model)
        model = AutoModelForSeq2SeqLM.from_pretrained(resume or config.model)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load seq2seq model {config.model!r}: {str(exc).splitlines()[0]}") from None
    model.to(config.device or "cpu").train()
    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    if resume is not None:
        load_optimizer(resume, optimizer)
    return model, tokenizer, optimizer


def _learning_rate(config: TrainGeneratorConfig, total: int, step: int) -> float:
    """Linear warm-up, then linear decay to 0: a function of the step only, so a resumed run agrees."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    return config.learning_rate * max(0.0, (total - step) / max(1, total - config.warmup_steps))


def _step(model, tokenizer, optimizer, batch: list[GeneratorPair], template: str, config) -> float:
    """One optimizer step on a batch of (passage, query) pairs; returns its loss."""
    import torch

    device = config.device or "cpu"
    inputs = tokenizer(
        [render_prompt(template, p.lang, p.passage) for p in batch],
        return_tensors="pt",
        padding=True,
        truncation=True,
        max_length=config.max_input_tokens,
    ).to(device)
    labels = tokenizer(
        text_target=[p.query for p in batch],
        return_tensors="pt",
        padding=True,
        truncation=True,
        max_length=config.max_target_tokens,
    )["input_ids"].to(device)
    labels[labels == tokenizer.pad_token_id] = -100  # padding is not a target
    loss = model(**inputs, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _publish(out: Path, checkpoint: Path, template: str, plan: dict, steps: int, loss: float) -> None:
    """Copy the final checkpoint's model into OUT; the settings file, written last, marks it complete."""
    for path in checkpoint.iterdir():
        if path.name not in ("optimizer.safetensors", "state.json"):
            with open(path, "rb") as src, atomic_open(out / path.name, "wb") as dst:
                shutil.copyfileobj(src, dst)
    atomic_write_json(
        out / GENERATOR_SETTINGS,
        {
            "template": template,
            "base": plan["base"],
            "steps": steps,
            "pairs": plan["pairs"],
            "final_loss": None if math.isnan(loss) else loss,
        },
    )
