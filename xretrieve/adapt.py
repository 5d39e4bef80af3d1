"""`xretrieve adapt`: one command from a corpus to an index adapted to cross-lingual search over it.

The recipe, each stage a verb of its own (so each resumes as that verb does), artifacts under OUT:
1. `synthesize` (Apertium, or an LLM with --llm): queries in the target languages for the corpus's passages,
   as training pairs -> OUT/train.jsonl (skipped when --train-steps is 0);
2. `train`: the model fine-tuned on those pairs (translate-train) -> OUT/model/;
3. `generate-queries` + `encode` + `augment`: each passage's pseudo-queries in the other languages folded into
   its embedding (xQG) -> OUT/generated.jsonl, OUT/embeddings/, OUT/embeddings-aug/;
4. `index`, recording translate-test, so that `search` and `serve` translate queries into the documents'
   languages with no extra flag -> OUT itself.
The defaults are the settings that measured best on held-out data (benchmarks/adapt_xling.py).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from xretrieve.config import (
    AdaptConfig,
    AugmentConfig,
    EncodeConfig,
    GenerateConfig,
    IndexConfig,
    SynthesizeConfig,
    TrainConfig,
)
from xretrieve.errors import UserError
from xretrieve.formats import iter_corpus
from xretrieve.index import INDEX_KIND
from xretrieve.manifest import update_manifest


class _Stages:
    """Numbered progress lines and the seconds each stage took."""

    def __init__(self, names: list[str], progress: bool):
        self.names, self.progress, self.seconds = names, progress, {}

    def run(self, name: str, fn, *args, **kwargs):
        if self.progress:
            print(f"adapt: [{self.names.index(name) + 1}/{len(self.names)}] {name}", flush=True)
        started = time.perf_counter()
        value = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - started, 1)
        return value


def _check(config: AdaptConfig) -> None:
    """Everything a user can get wrong, before any model loads or stage starts."""
    corpus = Path(config.corpus)
    if not corpus.is_file():
        raise UserError(f"{corpus}: no such file")
    if config.llm is None:
        from xretrieve.translate import apertium_available

        if not apertium_available():
            raise UserError(
                "adapt: the offline recipe needs Apertium (apt-get install apertium cg3 apertium-eng-spa ...), "
                "or give --llm URL|FOLDER"
            )
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")


def adapt(config: AdaptConfig) -> Path:
    """The whole recipe in one command: (synthesize, train,) generate-queries, encode, augment, index."""
    _check(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    doc_langs = sorted({doc.lang for doc in iter_corpus(config.corpus)} - {""})
    train_steps = config.train_steps
    names = (["synthesize", "train"] if train_steps else []) + ["generate-queries", "encode", "augment", "index"]
    stages = _Stages(names, config.progress)
    llm = {"llm": config.llm, "llm_model": config.llm_model} if config.llm else {}  # else Apertium

    model = _fine_tune(config, out, stages, llm) if train_steps else config.model
    translate = _build(config, out, stages, llm, model, doc_langs)
    _record(out, config, llm, translate, stages.seconds)
    return out


def _fine_tune(config: AdaptConfig, out: Path, stages: _Stages, llm: dict) -> str:
    """Synthesize training rows for the corpus and fine-tune the model on them; returns the model folder."""
    from xretrieve.train import train
    from xretrieve.xqg.synthesize import synthesize

    train_data = stages.run(
        "synthesize",
        synthesize,
        SynthesizeConfig(
            corpus=config.corpus,
            out=str(out / "train.jsonl"),
            langs=config.langs,
            seed=config.seed,
            device=config.device,
            progress=config.progress,
            **(llm or {"mt": "apertium"}),
        ),
    )
    model = str(out / "model")
    if not (out / "model" / "xretrieve.json").is_file():
        checkpoints = Path(f"{model}.checkpoints")
        stages.run(
            "train",
            train,
            TrainConfig(
                train_data=str(train_data),
                out=model,
                model=config.model,
                max_steps=config.train_steps,
                batch_size=config.train_batch_size,
                learning_rate=config.learning_rate,
                temperature=config.temperature,
                max_seq_length=config.max_seq_length,
                batches="same-language",
                precision=config.precision or _precision(config.device),
                device=config.device,
                save_steps=max(1, config.train_steps // 4),
                checkpoints=str(checkpoints),
                resume=checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*")),
                seed=config.seed,
                progress=config.progress,
            ),
        )
        shutil.rmtree(checkpoints, ignore_errors=True)  # the model is saved; its checkpoints are only for resuming
    return model


def _build(config: AdaptConfig, out: Path, stages: _Stages, llm: dict, model: str, doc_langs: list[str]) -> bool:
    """Generate queries, encode, augment and index; returns whether the index records translate-test. (62
    lines: four stage calls, each with its settings spelled out.)"""
    from xretrieve.encode import encode_corpus
    from xretrieve.index import build_index
    from xretrieve.xqg.augment import augment_embeddings
    from xretrieve.xqg.generate import generate_queries

    generated = stages.run(
        "generate-queries",
        generate_queries,
        GenerateConfig(
            corpus=config.corpus,
            out=str(out / "generated.jsonl"),
            langs=config.langs,
            backend="llm" if llm else "apertium",
            num_queries=1,
            seed=config.seed,
            device=config.device,
            progress=config.progress,
            **llm,
        ),
    )
    embeddings = stages.run(
        "encode",
        encode_corpus,
        EncodeConfig(
            corpus=config.corpus,
            out=str(out / "embeddings"),
            model=model,
            batch_size=config.batch_size,
            device=config.device,
            progress=config.progress,
        ),
    )
    augmented = stages.run(
        "augment",
        augment_embeddings,
        AugmentConfig(
            embeddings=str(embeddings),
            generated=str(generated),
            out=str(out / "embeddings-aug"),
            alpha=config.alpha,
            mode="mean",
            batch_size=config.batch_size,
            device=config.device,
            progress=config.progress,
        ),
    )
    translate = config.translate and _translatable(config.langs, doc_langs)
    stages.run(
        "index",
        build_index,
        IndexConfig(
            out=str(out),
            embeddings=str(augmented),
            factory=config.factory,
            progress=config.progress,
            translate="apertium" if translate else None,
            translate_weight=config.translate_weight,
        ),
    )
    return translate


def _precision(device: str | None) -> str:
    """bf16 when fine-tuning will run on a GPU (the trainer takes cuda when there is one), else fp32."""
    import torch

    on_gpu = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    return "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "fp32"


def _translatable(langs: list[str], doc_langs: list[str]) -> bool:
    """Translate-test is worth recording when some query language reaches some other document language."""
    from xretrieve.translate import apertium_available

    if not apertium_available():
        return False
    from xretrieve.apertium import ApertiumEngine

    engine = ApertiumEngine()
    return any(engine.route(a, b) for a in langs for b in doc_langs if a != b)


def _record(out: Path, config: AdaptConfig, llm: dict, translate: bool, seconds: dict) -> None:
    """The recipe and where its artifacts are, in the index's manifest."""
    generated = json.loads((out / "generated.jsonl.json").read_text(encoding="utf-8"))
    recipe = {
        "langs": config.langs,
        "backend": llm or {"mt": "apertium"},
        "train_steps": config.train_steps,
        "alpha": config.alpha,
        "translate": translate,
        "artifacts": {
            "train": "train.jsonl" if config.train_steps else None,
            "model": "model" if config.train_steps else None,
            "generated": "generated.jsonl",
            "embeddings": "embeddings",
            "augmented": "embeddings-aug",
        },
        "base_model": config.model,
        "generated_queries": generated.get("queries", {}),
        "seconds": seconds,
    }
    update_manifest(out, INDEX_KIND, {"adapt": recipe})
    if config.progress:
        made = sum(recipe["generated_queries"].values())
        print(f"adapt: {out} is ready ({made} generated queries; translate-test {'on' if translate else 'off'})")
