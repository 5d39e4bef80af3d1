"""What each verb does with its settings: one library call, then a line naming what it wrote.

A handler takes the verb's settings dataclass and returns an exit status (None: 0). Library modules are
imported inside the handlers, so that `--help`, `--print-config` and bad flags never wait for torch.
"""

from __future__ import annotations

from collections.abc import Callable

from xretrieve.config import (
    AdaptConfig,
    AddConfig,
    AugmentConfig,
    Bm25Config,
    CompactConfig,
    ConvertConfig,
    DeleteConfig,
    DemoConfig,
    DistillConfig,
    EncodeConfig,
    EvaluateConfig,
    FuseConfig,
    GenerateConfig,
    IndexConfig,
    MineConfig,
    ReproduceConfig,
    SaveModelConfig,
    SearchConfig,
    ServerConfig,
    SynthesizeConfig,
    TrainConfig,
    TrainGeneratorConfig,
)


def local_or_ray(config, module: str, name: str) -> Callable:
    """The function `name` of the core module `xretrieve.<module>`, or, when the settings ask for Ray (`--ray`),
    its counterpart of the same name in the Ray layer, `xretrieve.ray`: the one place that chooses."""
    import importlib

    return getattr(importlib.import_module("xretrieve.ray" if config.ray else f"xretrieve.{module}"), name)


def encode(config: EncodeConfig) -> None:
    print(f"embeddings: {local_or_ray(config, 'encode', 'encode_corpus')(config)}")


def index(config: IndexConfig) -> None:
    print(f"index: {local_or_ray(config, 'index', 'build_index')(config)}")


def search(config: SearchConfig) -> None:
    from xretrieve.search import run_search

    print(f"run: {run_search(config)}")


def add(config: AddConfig) -> None:
    from xretrieve.update import add_documents

    new, replaced = add_documents(config)
    print(f"index: {config.index}: {new} documents added, {replaced} replaced (run `xretrieve compact` now and then)")


def delete(config: DeleteConfig) -> None:
    import sys

    from xretrieve.update import delete_documents

    deleted, missing = delete_documents(config)
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        print(f"xretrieve: not in the index, nothing to delete: {shown}", file=sys.stderr)
    print(f"index: {config.index}: {len(deleted)} documents deleted")


def compact(config: CompactConfig) -> None:
    import json

    from xretrieve.compact import compact as fold
    from xretrieve.compact import index_info

    if config.info:
        print(json.dumps(index_info(config.index), indent=2))
        return
    generation = fold(config)
    if generation is None:
        print(f"index: {config.index}: no pending changes; nothing to compact")
    else:
        print(f"index: {config.index}: generation {generation}")


def evaluate(config: EvaluateConfig) -> None:
    from xretrieve.evaluation import evaluate as evaluation

    summary = evaluation.evaluate(
        config.run,
        out=config.out,
        qrels=config.qrels,
        answers=config.answers,
        corpus=config.corpus,
        queries=config.queries,
        metrics=config.metrics,
        skip_missing=config.skip_missing,
        by=config.by,
    )
    print(evaluation.format_table(summary))


def fuse(config: FuseConfig) -> None:
    from xretrieve.evaluation.fuse import fuse_runs

    settings = {name: getattr(config, name) for name in ("method", "k", "rrf_k", "depth", "alpha", "normalize", "tag")}
    print(f"run: {fuse_runs(config.runs, config.out, **settings)}")


def reproduce(config: ReproduceConfig) -> int:
    from xretrieve.evaluation import reproduce as reproduction

    checks = reproduction.reproduce(config.file, only=config.condition)
    return 0 if checks and all(check.ok for check in checks) else 1


def convert(config: ConvertConfig) -> None:
    from xretrieve.convert import convert_dataset

    written = convert_dataset(config.layout, config.source, config.out, lang=config.lang, split=config.split)
    for kind, path in written.items():
        print(f"{kind}: {path}")


def bm25(config: Bm25Config) -> None:
    from xretrieve.evaluation.bm25 import bm25_index, bm25_search

    if config.action == "index":
        out = bm25_index(
            config.corpus, config.out, language=config.language, threads=config.threads, progress=config.progress
        )
        print(f"bm25 index: {out}")
        return
    settings = {name: getattr(config, name) for name in ("k", "k1", "b", "language", "tag", "threads", "progress")}
    print(f"run: {bm25_search(config.index, config.queries, config.out, **settings)}")


def save_model(config: SaveModelConfig) -> None:
    from xretrieve import model

    settings = {
        name: getattr(config, name)
        for name in ("pooling", "max_seq_length", "query_prompt", "passage_prompt", "normalize")
    }
    print(f"model: {model.save_model(config.model, config.out, **settings)}")


def serve(config: ServerConfig) -> None:
    local_or_ray(config, "serve", "serve")(config)


def demo(config: DemoConfig) -> None:
    from xretrieve.demo import run_demo

    run_demo(out=config.out, model=config.model, show=config.show, progress=config.progress)


def train(config: TrainConfig) -> None:
    from xretrieve import train as training

    print(f"model: {training.train(config)}")


def distill(config: DistillConfig) -> None:
    from xretrieve import train as training

    print(f"model: {training.distill(config)}")


def mine_negatives(config: MineConfig) -> None:
    from xretrieve import train as training

    counts = training.mine_negatives(config)
    print(
        f"training data: {config.out} ({counts['negatives']} negatives for {counts['examples']} queries; "
        f"{counts['short']} queries got fewer than {config.negatives})"
    )


def generate_queries(config: GenerateConfig) -> None:
    from xretrieve.xqg.generate import generate_queries

    out = generate_queries(config)
    print(f"generated queries: {out}" if out.is_file() else f"shards done; others still running: {out}.parts")


def synthesize(config: SynthesizeConfig) -> None:
    from xretrieve.xqg import synthesize as synthesis

    out = synthesis.synthesize(config)
    print(f"training data: {out}" if out.is_file() else f"shards done; others still running: {out}.parts")


def adapt(config: AdaptConfig) -> None:
    from xretrieve import adapt as adaptation

    print(f"index: {adaptation.adapt(config)}")


def train_generator(config: TrainGeneratorConfig) -> None:
    from xretrieve.xqg.train_generator import train_generator

    print(f"generator: {train_generator(config)}")


def augment(config: AugmentConfig) -> None:
    from xretrieve.xqg.augment import augment_embeddings

    print(f"embeddings: {augment_embeddings(config)}")
