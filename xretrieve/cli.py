"""Command line: each verb parses its flags (or --config FILE.yaml) into a config and calls one function."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from xretrieve import __version__
from xretrieve.config import (
    DistillConfig,
    EncodeConfig,
    IndexConfig,
    MineConfig,
    SearchConfig,
    TrainConfig,
    parse_langs,
    parse_shard,
)
from xretrieve.errors import UserError

T = TypeVar("T")


def _config(cls: type[T], args: argparse.Namespace, **given) -> T:
    """A `cls` from the parsed flags: each field from the flag of its name, unless `given` names it;
    `progress` is the opposite of --quiet. Flags whose names differ from the field are passed in `given`."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    if hasattr(args, "quiet") and any(f.name == "progress" for f in dataclasses.fields(cls)):
        values["progress"] = not args.quiet
    return cls(**(values | given))


def _shard(args: argparse.Namespace) -> tuple[int, int] | None:
    return parse_shard(args.shard) if args.shard else None


def _encode(args: argparse.Namespace) -> None:
    from xretrieve.encode import encode_corpus

    out = encode_corpus(_config(EncodeConfig, args, shard=_shard(args), num_shards=args.shards))
    print(f"embeddings: {out}")


def _index(args: argparse.Namespace) -> None:
    from xretrieve.index import build_index

    out = build_index(
        _config(IndexConfig, args, num_shards=args.shards, translate_targets=parse_langs(args.translate_targets))
    )
    print(f"index: {out}")


def _search(args: argparse.Namespace) -> None:
    from xretrieve.search import run_search

    out = run_search(_config(SearchConfig, args, langs=parse_langs(args.lang)))
    print(f"run: {out}")


def _evaluate(args: argparse.Namespace) -> None:
    from xretrieve.evaluation.evaluate import evaluate, format_table

    summary = evaluate(
        args.run,
        out=args.out,
        qrels=args.qrels,
        answers=args.answers,
        corpus=args.corpus,
        queries=args.queries,
        metrics=[m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None,
        skip_missing=args.skip_missing,
        by=args.by,
    )
    print(format_table(summary))


def _fuse(args: argparse.Namespace) -> None:
    from xretrieve.evaluation.fuse import fuse_runs

    out = fuse_runs(
        args.runs,
        args.out,
        method=args.method,
        k=args.k,
        rrf_k=args.rrf_k,
        depth=args.depth,
        alpha=args.alpha,
        normalize=args.normalize,
        tag=args.tag,
    )
    print(f"run: {out}")


def _reproduce(args: argparse.Namespace) -> int:
    from xretrieve.evaluation.reproduce import reproduce

    checks = reproduce(args.file, only=args.condition)
    return 0 if checks and all(c.ok for c in checks) else 1


def _convert(args: argparse.Namespace) -> None:
    from xretrieve.convert import convert_dataset

    written = convert_dataset(args.layout, args.source, args.out, lang=args.lang, split=args.split)
    for kind, path in written.items():
        print(f"{kind}: {path}")


def _bm25(args: argparse.Namespace) -> None:
    from xretrieve.evaluation.bm25 import bm25_index, bm25_search

    def need(*flags: str) -> None:
        missing = [f"--{f.replace('_', '-')}" for f in flags if getattr(args, f) is None]
        if missing:
            raise UserError(f"bm25 {args.action}: {', '.join(missing)} required")

    if args.action == "index":
        need("corpus", "out")
        out = bm25_index(args.corpus, args.out, language=args.language, threads=args.threads, progress=not args.quiet)
        print(f"bm25 index: {out}")
    else:
        need("index", "queries", "out")
        out = bm25_search(
            args.index,
            args.queries,
            args.out,
            k=args.k,
            k1=args.k1,
            b=args.b,
            language=args.language,
            tag=args.tag,
            threads=args.threads,
            progress=not args.quiet,
        )
        print(f"run: {out}")


def _save_model(args: argparse.Namespace) -> None:
    from xretrieve.model import save_model

    out = save_model(
        args.model,
        args.out,
        pooling=args.pooling,
        max_seq_length=args.max_seq_length,
        query_prompt=args.query_prompt,
        passage_prompt=args.passage_prompt,
        normalize=args.normalize,
    )
    print(f"model: {out}")


def _serve(args: argparse.Namespace) -> None:
    import os

    from xretrieve.server import ServerConfig, read_api_keys, serve

    serve(
        _config(
            ServerConfig,
            args,
            api_keys=read_api_keys(args.api_key or [], os.environ.get("XRETRIEVE_API_KEYS", "")),
            cors_origins=tuple(args.cors_origin or []),
            timeout_s=args.timeout,
            header_timeout_s=args.header_timeout,
            body_timeout_s=args.body_timeout,
        )
    )


def _demo(args: argparse.Namespace) -> None:
    from xretrieve.demo import run_demo

    run_demo(out=args.out, model=args.model, show=args.show, progress=not args.quiet)


def _train(args: argparse.Namespace) -> None:
    from xretrieve.train import train

    print(f"model: {train(_config(TrainConfig, args))}")


def _distill(args: argparse.Namespace) -> None:
    from xretrieve.train import distill

    print(f"model: {distill(_config(DistillConfig, args, teacher=args.teacher or args.model))}")


def _mine_negatives(args: argparse.Namespace) -> None:
    from xretrieve.train import mine_negatives

    counts = mine_negatives(_config(MineConfig, args, langs=parse_langs(args.lang)))
    print(
        f"training data: {args.out} ({counts['negatives']} negatives for {counts['examples']} queries; "
        f"{counts['short']} queries got fewer than {args.negatives})"
    )


def _generate_queries(args: argparse.Namespace) -> None:
    from xretrieve.config import GenerateConfig
    from xretrieve.xqg.generate import generate_queries

    config = _config(
        GenerateConfig,
        args,
        langs=parse_langs(args.langs) or [],
        generator=args.generator or _deprecated_model_flag(args.model),
        shard=_shard(args),
    )
    out = generate_queries(config)
    print(f"generated queries: {out}" if out.is_file() else f"shards done; others still running: {out}.parts")


def _synthesize(args: argparse.Namespace) -> None:
    from xretrieve.config import SynthesizeConfig
    from xretrieve.xqg.synthesize import synthesize

    config = _config(SynthesizeConfig, args, langs=parse_langs(args.langs) or [], shard=_shard(args))
    out = synthesize(config)
    print(f"training data: {out}" if out.is_file() else f"shards done; others still running: {out}.parts")


def _adapt(args: argparse.Namespace) -> None:
    from xretrieve.adapt import adapt
    from xretrieve.config import AdaptConfig

    out = adapt(_config(AdaptConfig, args, langs=parse_langs(args.langs) or []))
    print(f"index: {out}")


def _deprecated_model_flag(model: str | None) -> str | None:
    if model:
        print("xretrieve: generate-queries --model is deprecated: use --generator", file=sys.stderr)
    return model


def _train_generator(args: argparse.Namespace) -> None:
    from xretrieve.config import TrainGeneratorConfig
    from xretrieve.xqg.train_generator import train_generator

    if not args.model:
        raise UserError("train-generator: --model (the seq2seq model to fine-tune) is required")
    print(f"generator: {train_generator(_config(TrainGeneratorConfig, args))}")


def _augment(args: argparse.Namespace) -> None:
    from xretrieve.config import AugmentConfig, parse_lang_weights
    from xretrieve.xqg.augment import augment_embeddings

    config = _config(AugmentConfig, args, lang_weights=parse_lang_weights(args.lang_weights), shard=_shard(args))
    print(f"embeddings: {augment_embeddings(config)}")


COMMON_FLAGS = ("model", "batch_size", "quiet")


def _add_common(parser: argparse.ArgumentParser, common: tuple[str, ...]) -> None:
    """--config for every verb; --model, --batch-size and --quiet only where the verb uses them."""
    parser.add_argument("--config", help="YAML file of flag values (keys are flag names); flags override it")
    if "model" in common:
        parser.add_argument("--model", help="model name or folder (default: the embedded multilingual-e5-small)")
    if "batch_size" in common:
        parser.add_argument("--batch-size", type=int, default=32)
    if "quiet" in common:
        parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_checkpoint_every(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=1000,
        metavar="N",
        help="save encoding progress every N passages: an interrupted run resumes from there",
    )


def _add_ray(parser: argparse.ArgumentParser, work: str) -> None:
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help=f"{work} on Ray (extra 'dist'): join the cluster at ADDRESS, or start a local one without it "
        "(default: no Ray)",
    )


def _add_llm(parser: argparse.ArgumentParser, max_new_tokens: int, temperature: float) -> None:
    """The LLM backend's flags (xretrieve/llm.py), shared by generate-queries and synthesize."""
    parser.add_argument(
        "--llm",
        metavar="URL|FOLDER",
        help="an OpenAI-compatible endpoint (http://host:port/v1; key from XRETRIEVE_LLM_API_KEY or "
        "OPENAI_API_KEY), or a local Hugging Face causal LM folder",
    )
    parser.add_argument("--llm-model", help="the model name the endpoint serves")
    parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens, help="tokens generated per reply")
    parser.add_argument("--temperature", type=float, default=temperature, help="sampling temperature; 0: greedy")
    parser.add_argument("--max-query-words", type=int, default=32, help="drop longer queries")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight to the endpoint")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--retries", type=int, default=5, help="retries after a 429, a 5xx or a timeout")


class _HelpFormatter(argparse.HelpFormatter):
    """Every flag that takes a value shows its default, unless its help already says what it is."""

    def _format_action(self, action: argparse.Action) -> str:
        if action.help is None and self._has_default(action):  # argparse prints no help line at all for None
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if self._has_default(action) and "default" not in text:
            return f"{text} (default: %(default)s)".strip()
        return text

    @staticmethod
    def _has_default(action: argparse.Action) -> bool:
        return bool(action.option_strings) and action.nargs != 0 and action.default not in (None, argparse.SUPPRESS)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    from xretrieve.evaluation.evaluate import BREAKDOWNS

    parser = argparse.ArgumentParser(prog="xretrieve", description="Cross-lingual dense retrieval.")
    parser.add_argument("--version", action="version", version=f"xretrieve {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True)
    subparsers: dict[str, argparse.ArgumentParser] = {}

    def verb(
        name: str, handler: Callable, help_text: str, common: tuple[str, ...] = COMMON_FLAGS
    ) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text, formatter_class=_HelpFormatter)
        sub.set_defaults(handler=handler)
        _add_common(sub, common)
        subparsers[name] = sub
        return sub

    p = verb("encode", _encode, "Encode a corpus into sharded embeddings (resumable).")
    p.add_argument("--corpus", required=True, help="corpus .jsonl (id, text, title?, lang?) or .tsv (id, text)")
    p.add_argument("--out", required=True, help="embeddings folder")
    p.add_argument("--shard", help="encode only shard i of n, e.g. 0/4 (default: all --shards)")
    p.add_argument("--shards", type=int, default=1, help="number of shards when encoding all (default 1)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"], help="storage type")
    p.add_argument(
        "--max-seq-length", type=int, help="truncate passages to this many tokens (default: the model's maximum)"
    )
    p.add_argument("--device", help="torch device (cpu, cuda, ...; default cpu)")
    _add_checkpoint_every(p)
    _add_ray(p, "encode shards in parallel with a pool of encoder actors (a GPU each where there are GPUs)")

    p = verb("index", _index, "Build a sharded FAISS index from a corpus or stored embeddings.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", help="encode this corpus, then index it")
    source.add_argument("--embeddings", help="index the embeddings folder written by `xretrieve encode`")
    p.add_argument("--out", required=True, help="index folder, e.g. indexes/NAME")
    p.add_argument(
        "--factory",
        default="auto",
        help="FAISS factory string, e.g. Flat, HNSW32, IVF1024,PQ48,RFlat; default auto: Flat up to 50,000 rows "
        "per shard, else IVF{about 4*sqrt(rows)},SQfp16 searched with nprobe=48 (IVF4096,SQfp16 at 1 M rows)",
    )
    p.add_argument("--shards", type=int, default=1, help="shards when encoding a corpus (default 1)")
    p.add_argument("--train-size", type=int, default=200_000, help="vectors sampled to train IVF/PQ")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="build on GPU with faiss-gpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    p.add_argument("--keep-embeddings", action="store_true", help="keep OUT/embeddings after indexing a corpus")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--translate",
        choices=["apertium"],
        help="record translate-test: searches also encode each query translated into the documents' languages",
    )
    p.add_argument(
        "--translate-weight", type=float, default=0.6, help="weight of the translations against the query (0..1)"
    )
    p.add_argument("--translate-targets", help="languages to translate queries into (default: the documents')")
    p.add_argument(
        "--translate-max-targets",
        type=int,
        default=1,
        help="translations per query, into the reachable languages with the most documents first (0: all)",
    )
    _add_checkpoint_every(p)
    _add_ray(p, "encode and build shards as parallel tasks")

    p = verb("search", _search, "Search an index with a queries file; write a TREC run.")
    p.add_argument("--index", required=True)
    p.add_argument("--queries", required=True, help="queries .jsonl (id, text, lang?) or .tsv (id, text)")
    p.add_argument("--out", required=True, help="TREC run file (provenance goes to OUT.json)")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--lang", help="only documents in these languages, e.g. en,fi (default: all)")
    p.add_argument(
        "--search-params", help="FAISS parameters, e.g. nprobe=64 or efSearch=256 (default: the index manifest's)"
    )
    p.add_argument("--tag", default="xretrieve", help="run tag (last TREC column)")
    p.add_argument("--device", help="torch device for the query encoder (default cpu)")
    p.add_argument(
        "--no-translate",
        dest="translate",
        action="store_false",
        help="search with the queries as given, even if the index records translate-test",
    )

    p = verb("evaluate", _evaluate, "Score a TREC run against qrels (trec_eval measures) or XOR answers (R@kt).", ())
    p.add_argument("--run", required=True)
    judged = p.add_mutually_exclusive_group(required=True)
    judged.add_argument("--qrels", help="TREC qrels: qid 0 docid relevance")
    judged.add_argument("--answers", help="XOR-Retrieve answers jsonl (id, answers, lang); needs --corpus")
    p.add_argument("--corpus", help="corpus holding the run's passages (for --answers and --by doc-lang)")
    p.add_argument("--queries", help="queries file: its languages give the per-language table")
    p.add_argument(
        "--metrics",
        help="comma-separated trec_eval measures (default nDCG@10,R@100,RR@10; with --answers R@2kt,R@5kt)",
    )
    p.add_argument(
        "--skip-missing",
        action="store_true",
        help="average over queries in the run only (trec_eval without -c); default: missing score 0",
    )
    p.add_argument(
        "--by",
        default="query-lang",
        choices=BREAKDOWNS,
        help="per language of the queries (with --queries); doc-lang adds one per language of the relevant "
        "documents (with --qrels and --corpus)",
    )
    p.add_argument("--out", help="write the scores as JSON")

    p = verb("fuse", _fuse, "Fuse runs: reciprocal rank fusion or score interpolation (pyserini's hybrid).", ())
    p.add_argument("--runs", nargs="+", required=True, help="TREC runs; for interpolation: dense then sparse")
    p.add_argument("--out", required=True)
    p.add_argument("--method", default="rrf", choices=["rrf", "interpolation"])
    p.add_argument("--k", type=int, default=1000, help="hits kept per query")
    p.add_argument("--rrf-k", type=int, default=60)
    p.add_argument("--depth", type=int, default=1000, help="rrf: hits read from each run")
    p.add_argument("--alpha", type=float, default=0.1, help="interpolation: first + alpha * second")
    p.add_argument("--normalize", action="store_true", help="interpolation: normalise each run's scores first")
    p.add_argument("--tag", default="fused")

    p = verb("reproduce", _reproduce, "Run a reproduction file's conditions and check their scores.", ())
    p.add_argument("file", help="YAML file, e.g. benchmarks/demo.yaml")
    p.add_argument("--condition", action="append", help="run only this condition (repeatable)")

    p = verb(
        "convert",
        _convert,
        "Convert a dataset in its official layout (MIRACL, XOR-Retrieve, Tevatron, "
        "SWIM-IR, BEIR) into xretrieve's corpus, queries, qrels, answers and training files.",
        (),
    )
    p.add_argument("--layout", required=True, choices=["miracl", "xor-retrieve", "tevatron", "swim-ir", "beir"])
    p.add_argument("--source", required=True, help="the dataset's folder (or file) as distributed")
    p.add_argument("--out", required=True, help="folder for the converted files")
    p.add_argument("--lang", help="language (MIRACL: required; XOR, SWIM-IR: a filter, default all)")
    p.add_argument("--split", default="dev", help="train, dev, test (MIRACL: test-a, test-b)")

    p = verb(
        "bm25", _bm25, "BM25 baseline through pyserini (extra 'bm25', Java 21+): index a corpus, search it.", ("quiet",)
    )
    p.add_argument("action", choices=["index", "search"])
    p.add_argument("--corpus", help="index: corpus jsonl")
    p.add_argument("--index", help="search: the BM25 index folder")
    p.add_argument("--queries", help="search: queries file")
    p.add_argument("--out", help="index: new folder; search: TREC run file")
    p.add_argument("--language", help="Lucene analyzer language (default en; sw, yo, ha, so: whitespace)")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--k1", type=float, default=0.9)
    p.add_argument("--b", type=float, default=0.4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tag", default="bm25")

    p = verb(
        "save-model",
        _save_model,
        "Save a transformers model as a sentence-transformers folder with the "
        "pooling, length, prompts and normalisation you give; xretrieve then reads them from the folder.",
        ("model",),
    )
    p.add_argument("--out", required=True, help="new model folder")
    p.add_argument("--pooling", default="mean", choices=["mean", "cls", "max", "lasttoken"])
    p.add_argument("--max-seq-length", type=int, help="default: the model's own")
    p.add_argument("--query-prompt", default="", help="text put before every query, e.g. 'query: '")
    p.add_argument("--passage-prompt", default="", help="text put before every passage")
    p.add_argument("--normalize", action="store_true", help="L2-normalise embeddings")

    p = verb(
        "generate-queries",
        _generate_queries,
        "Generate queries in other languages for each passage (xQG).",
        ("batch_size", "quiet"),
    )
    p.add_argument("--model", help=argparse.SUPPRESS)  # deprecated spelling of --generator, kept for old commands
    p.add_argument("--corpus", required=True, help="corpus .jsonl (id, text, title?, lang?)")
    p.add_argument("--out", required=True, help="generated queries .jsonl (docid, lang, text, generator, seed)")
    p.add_argument("--langs", required=True, help="target languages, e.g. es,fr,ja")
    p.add_argument("--backend", default="seq2seq", choices=["seq2seq", "apertium", "llm"], help="generator backend")
    p.add_argument("--generator", help="seq2seq backend: model name or folder (e.g. from train-generator)")
    p.add_argument("--num-queries", type=int, default=5, help="sampled queries per passage and language")
    p.add_argument("--top-k", type=int, default=10, help="top-k sampling")
    p.add_argument("--max-input-tokens", type=int, default=512)
    p.add_argument("--max-words", type=int, default=32, help="apertium: words of title + lead sentence translated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard", help="only shards j with j %% n == i, e.g. 0/4, for parallel processes (default: all)")
    p.add_argument("--shard-size", type=int, default=1000, help="passages per resumable shard")
    p.add_argument("--device", help="torch device (cpu, cuda, ...; default cpu)")
    _add_llm(p, max_new_tokens=64, temperature=0.7)

    p = verb("synthesize", _synthesize, "Synthetic training data (SWIM-IR): queries in other languages for passages.")
    p.add_argument("--corpus", required=True, help="corpus .jsonl (id, text, title?, lang?)")
    p.add_argument("--out", required=True, help="training .jsonl (Tevatron rows); settings and counts in OUT.json")
    p.add_argument("--langs", required=True, help="target languages, e.g. sw,te,es")
    p.add_argument("--mt", choices=["apertium"], help="translate passages offline instead of asking an LLM")
    p.add_argument("--per-passage", type=int, default=1, help="queries per passage and language")
    p.add_argument("--sample", type=int, help="only this many passages, drawn with --seed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--negatives", type=int, help="mine this many hard negatives per query (as mine-negatives)")
    p.add_argument("--index", help="index to mine from (default: a Flat index of the corpus in OUT.index/)")
    p.add_argument("--max-words", type=int, default=32, help="--mt: words of each text translated")
    p.add_argument(
        "--shard", help="only shards j with j %% n == i, e.g. 0/4 (for parallel processes; default: all shards)"
    )
    p.add_argument("--shard-size", type=int, default=100, help="passages per resumable shard")
    p.add_argument("--device", help="torch device for a local LLM and the negatives' encoder (default cpu)")
    _add_llm(p, max_new_tokens=256, temperature=0.7)

    p = verb("adapt", _adapt, "Adapt retrieval to a corpus in one command: an index that searches it cross-lingually.")
    p.add_argument("--corpus", required=True, help="corpus .jsonl (id, text, title?, lang?)")
    p.add_argument("--out", required=True, help="index folder; the stages' artifacts go inside it")
    p.add_argument("--langs", required=True, help="the languages users ask in, e.g. en,es,fr")
    p.add_argument("--llm", metavar="URL|FOLDER", help="write queries with an LLM instead of Apertium (see synthesize)")
    p.add_argument("--llm-model", help="the model name the endpoint serves")
    p.add_argument(
        "--train-steps", type=int, default=40, help="fine-tuning steps on the synthetic pairs; 0: none (default 40)"
    )
    p.add_argument("--train-batch-size", type=int, default=32, help="fine-tuning batch size (default 32)")
    p.add_argument("--learning-rate", type=float, default=5e-5, help="fine-tuning learning rate")
    p.add_argument("--alpha", type=float, default=0.2, help="xQG weight of the generated queries")
    p.add_argument("--translate-weight", type=float, default=0.6, help="weight of a query's translations")
    p.add_argument("--no-translate", dest="translate", action="store_false", help="do not record translate-test")
    p.add_argument("--factory", default="auto", help="FAISS factory string (default auto, as index)")
    p.add_argument(
        "--precision",
        choices=["fp32", "fp16", "bf16"],
        help="fine-tuning precision (default: bf16 on a GPU, else fp32)",
    )
    p.add_argument("--device", help="torch device (default: cuda where there is a GPU, else cpu)")
    p.add_argument("--seed", type=int, default=0)

    p = verb("train-generator", _train_generator, "Fine-tune a seq2seq model to write queries for passages (xQG).")
    p.add_argument("--out", required=True, help="generator folder (checkpoints in OUT/checkpoints; resumes)")
    p.add_argument("--train", help="training pairs: Tevatron / xretrieve train.jsonl, or SWIM-IR with --layout")
    p.add_argument("--layout", default="tevatron", choices=["tevatron", "swim-ir"])
    p.add_argument("--queries", help="or: queries file (with --qrels and --corpus, e.g. MIRACL after convert)")
    p.add_argument("--qrels")
    p.add_argument("--corpus")
    p.add_argument("--default-lang", help="language of queries that carry none")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, help="stop after this many steps (default: --epochs passes)")
    p.add_argument("--learning-rate", type=float, default=3e-4)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--max-input-tokens", type=int, default=256)
    p.add_argument("--max-target-tokens", type=int, default=64)
    p.add_argument("--save-steps", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="torch device (cpu, cuda, ...; default cpu)")

    p = verb("augment", _augment, "Fold generated queries into passage embeddings (xQG): a new embeddings folder.")
    p.add_argument("--embeddings", required=True, help="embeddings folder written by `xretrieve encode`")
    p.add_argument("--generated", required=True, help="generated queries .jsonl")
    p.add_argument("--out", required=True, help="new embeddings folder (index it with `xretrieve index --embeddings`)")
    p.add_argument("--alpha", type=float, default=0.01, help="weight of the queries: (1-a)*passage + a*queries")
    p.add_argument("--mode", default="sum", choices=["sum", "mean"], help="sum of query vectors (paper) or mean")
    p.add_argument("--lang-weights", help="weight per query language, e.g. es=1,fr=0.5; 0 drops one (default: all 1)")
    p.add_argument("--renormalize", action="store_true", help="scale augmented vectors to unit length")
    p.add_argument(
        "--shard", help="only embeddings shard i of n (n: the folder's shard count), e.g. 0/4 (default: all)"
    )
    p.add_argument("--device", help="torch device for the query encoder (default cpu)")

    p = verb(
        "serve", _serve, "Serve an index over HTTP: POST /v1/search, a search page at /, OpenAPI at /docs.", ("model",)
    )
    p.add_argument("--index", required=True)
    p.add_argument(
        "--no-translate",
        dest="translate",
        action="store_false",
        help="search with the queries as given, even if the index records translate-test",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--api-key", action="append", help="accepted API key, 16+ characters (repeatable; also XRETRIEVE_API_KEYS=a,b)"
    )
    p.add_argument("--allow-no-auth", action="store_true", help="serve a non-loopback address without API keys")
    p.add_argument("--cors-origin", action="append", help="allow browser requests from this origin (default: none)")
    p.add_argument("--max-query-chars", type=int, default=2000)
    p.add_argument("--max-k", type=int, default=1000)
    p.add_argument("--max-batch", type=int, default=64, help="queries per request")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per search request (then 504)")
    p.add_argument("--batch-wait-ms", type=float, default=0.0, help="extra wait for company, in ms")
    p.add_argument("--max-encode-batch", type=int, default=32, help="texts encoded together at most")
    p.add_argument(
        "--max-encode-tokens", type=int, default=2048, help="padded tokens encoded together at most (texts x longest)"
    )
    p.add_argument("--rate-limit", type=float, default=0.0, help="requests a second per client (0: none; then 429)")
    p.add_argument("--max-client-queue", type=int, default=256, help="queries one client may have waiting (then 429)")
    p.add_argument("--max-queue", type=int, default=4096, help="queries all clients may have waiting (then 503)")
    p.add_argument("--max-connections", type=int, default=512, help="open connections (more are answered 503)")
    p.add_argument("--max-header-bytes", type=int, default=16384, help="request line and headers (then 431)")
    p.add_argument("--header-timeout", type=float, default=10.0, help="seconds to send a request's head")
    p.add_argument("--body-timeout", type=float, default=30.0, help="seconds to send a request's body (then 408)")
    _add_ray(p, "serve with Ray Serve, a deployment per shard behind a router")
    p.add_argument("--shard-replicas", type=int, default=1, help="--ray: replicas of each shard deployment")
    p.add_argument("--router-replicas", type=int, default=1, help="--ray: replicas of the router (query encoder)")
    p.add_argument("--replica-cpus", type=float, default=1.0, help="--ray: CPUs reserved per replica")

    def training_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--max-steps", type=int, help="optimizer steps (default: --epochs passes over the data)")
        p.add_argument("--epochs", type=float, default=1.0)
        p.add_argument("--learning-rate", type=float, default=2e-5)
        p.add_argument("--warmup-ratio", type=float, default=0.1, help="share of the steps spent warming up")
        p.add_argument(
            "--max-seq-length", type=int, help="truncate texts to this many tokens (default: the model's maximum)"
        )
        p.add_argument("--save-steps", type=int, default=100, help="checkpoint every N steps")
        p.add_argument("--checkpoints", help="checkpoint folder (default OUT.checkpoints)")
        p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"], help="fp16 needs CUDA")
        p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")

    p = verb("train", _train, "Fine-tune a bi-encoder contrastively (in-batch and hard negatives).")
    p.add_argument("--train-data", required=True, help="Tevatron-layout jsonl: query_id, query, positive_passages ...")
    p.add_argument("--out", required=True, help="new model folder")
    p.add_argument("--corpus", help="corpus to join passages given as bare docids")
    p.add_argument(
        "--mini-batch-size", type=int, help="cached MNRL (GradCache) in chunks of this size (default: not cached)"
    )
    p.add_argument("--temperature", type=float, default=0.05, help="softmax temperature (scale = 1/temperature)")
    p.add_argument("--negatives", type=int, help="hard negatives per query (default: as many as all examples have)")
    p.add_argument(
        "--batches",
        default="mixed",
        choices=["mixed", "same-language"],
        help="same-language: a batch holds one positive language, so its negatives share it",
    )
    p.add_argument(
        "--language-alpha",
        type=float,
        default=1.0,
        help="languages sampled with weight n**alpha (1 proportional, 0 uniform)",
    )
    p.add_argument("--query-prompt", help="override the model's query prompt (default: the model's)")
    p.add_argument("--passage-prompt", help="override the model's passage prompt (default: the model's)")
    p.add_argument("--dev-corpus", help="dev evaluation during training: corpus ...")
    p.add_argument("--dev-queries", help="... queries ...")
    p.add_argument("--dev-qrels", help="... and qrels (nDCG@10, RR@10, R@100 every --eval-steps)")
    p.add_argument("--eval-steps", type=int, default=100)
    training_flags(p)

    p = verb("distill", _distill, "Multilingual distillation: map translations onto the teacher's embedding.")
    p.add_argument("--parallel", required=True, help="source<TAB>translation TSV or jsonl {source, translation}")
    p.add_argument("--out", required=True, help="new model folder")
    p.add_argument("--teacher", help="teacher model (default --model, else the embedded model)")
    p.add_argument("--student", help="student model to train (default: a copy of the teacher)")
    training_flags(p)

    p = verb("mine-negatives", _mine_negatives, "Mine hard negatives for training queries from an index.")
    p.add_argument("--train-data", required=True)
    p.add_argument("--index", required=True, help="index of the passages to mine from (its model encodes)")
    p.add_argument("--out", required=True, help="training jsonl with the mined negatives")
    p.add_argument("--corpus", help="corpus to join passages given as ids, and texts if the index has none")
    p.add_argument("--negatives", type=int, default=8, help="negatives per query, hardest first")
    p.add_argument("--min-rank", type=int, default=1, help="skip candidates ranked above this (1 = none)")
    p.add_argument("--max-rank", type=int, default=100, help="look no deeper than this rank")
    p.add_argument(
        "--margin",
        type=float,
        default=0.0,
        help="drop candidates scoring above the positive's score minus this (likely positives)",
    )
    p.add_argument(
        "--duplicate-threshold",
        type=float,
        default=0.9,
        help="drop candidates this similar to a positive (character 3-gram Jaccard)",
    )
    p.add_argument("--lang", help="mine only from documents in these languages (default: all)")
    p.add_argument("--device", help="torch device for the query encoder (default cpu)")

    p = verb(
        "demo", _demo, "Index the bundled mixed-language corpus and answer its sample queries.", ("model", "quiet")
    )
    p.add_argument("--out", default="indexes/demo", help="index folder (default indexes/demo)")
    p.add_argument("--show", type=int, default=3, help="hits to print per query")
    return parser, subparsers


def _with_config_file(argv: list[str], subparsers: dict[str, argparse.ArgumentParser]) -> list[str]:
    """argv with the settings of `--config FILE.yaml` spelled out as flags right after the verb, so argparse
    checks their types and choices as it does for typed flags; flags given later on the line win."""
    import yaml

    path = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"), None)
    path = path or next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    verb_at = next((i for i, a in enumerate(argv) if a in subparsers), None)
    if not path or verb_at is None:
        return argv
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"--config {path}: {exc}") from None
    if not isinstance(values, dict):
        raise UserError(f"--config {path}: expected a mapping of flag names to values")
    verb = argv[verb_at]
    actions = {action.dest: action for action in subparsers[verb]._actions if action.option_strings}
    tokens: list[str] = []
    for key, value in values.items():
        action = actions.get(str(key).replace("-", "_"))
        if action is None or action.dest in ("config", "help"):
            raise UserError(f"--config {path}: unknown setting {key!r} for `xretrieve {verb}`")
        flag = max(action.option_strings, key=len)
        if value is None:
            continue
        if action.nargs == 0:  # store_true / store_false
            if not isinstance(value, bool):
                raise UserError(f"--config {path}: {key} takes true or false, not {value!r}")
            tokens += [flag] if value == isinstance(action, argparse._StoreTrueAction) else []
        elif isinstance(action, argparse._AppendAction):
            for item in value if isinstance(value, list) else [value]:
                tokens += [flag, str(item)]
        elif action.nargs in ("+", "*"):
            tokens += [flag, *map(str, value if isinstance(value, list) else [value])]
        else:  # a list for a comma-separated flag, e.g. lang: [en, fi]
            tokens += [flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return argv[: verb_at + 1] + tokens + argv[verb_at + 1 :]


# flags that name input files, checked before a verb imports anything heavy (torch alone takes seconds);
# folders (--index, --embeddings) are checked by their manifest readers, which import nothing heavy either
INPUT_FILES = ("corpus", "queries", "qrels", "answers", "run", "runs", "generated", "train_data", "parallel", "train")
INPUT_FILES += ("dev_corpus", "dev_queries", "dev_qrels", "file")


def _check_input_files(args: argparse.Namespace) -> None:
    for dest in INPUT_FILES:
        value = getattr(args, dest, None)
        for path in value if isinstance(value, list) else [value]:
            if path is not None and not os.path.isfile(path):
                raise UserError(f"{path}: {'is a folder, not a file' if os.path.isdir(path) else 'no such file'}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = build_parser()
    try:
        args = parser.parse_args(_with_config_file(argv, subparsers))
        _check_input_files(args)
        status = args.handler(args)
    except UserError as exc:
        print(f"xretrieve: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that is a folder, unreadable, or on a full disk
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"xretrieve: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xretrieve: interrupted", file=sys.stderr)
        return 130
    return status or 0
