"""`xretrieve generate-queries`: queries for every passage in every target language, into one jsonl file."""

from __future__ import annotations

import shutil
from pathlib import Path

from xretrieve.config import GenerateConfig
from xretrieve.formats import Document, GeneratedQuery, read_corpus, write_generated
from xretrieve.manifest import atomic_write_json, checksums, sha256_file, shard_name, write_shard_record
from xretrieve.text import check_languages
from xretrieve.xqg.backends.apertium import TranslationGenerator
from xretrieve.xqg.backends.llm import LLMGenerator
from xretrieve.xqg.backends.seq2seq import Seq2SeqGenerator
from xretrieve.xqg.shards import derived_seed, join_shards, parts_folder, provenance, run_corpus_shards, sum_counts


def make_generator(config: GenerateConfig):
    if config.backend == "apertium":
        return TranslationGenerator(max_words=config.max_words)
    if config.backend == "llm":
        from xretrieve.xqg.llm import make_llm

        check_languages(config.langs)
        return LLMGenerator(make_llm(config), config.max_query_words)
    return Seq2SeqGenerator(
        config.generator,
        device=config.device,
        top_k=config.top_k,
        max_new_tokens=config.max_new_tokens,
        max_input_tokens=config.max_input_tokens,
    )


def generate_queries(config: GenerateConfig, generator=None) -> Path:
    """Generate queries for every passage in every target language into one jsonl file.

    The corpus splits into shards of `shard_size` passages, each written atomically with a record, so a
    killed run redoes at most one shard per process; `--shard i/n` lets n processes share the work. The
    last process to finish joins the shards into OUT (and OUT.json, the run's provenance).
    """
    out = Path(config.out)
    docs = read_corpus(config.corpus)
    generator = generator or make_generator(config)
    plan = {
        "corpus_sha256": sha256_file(config.corpus),
        "generator": generator.identity,
        "langs": config.langs,
        "num_queries": config.num_queries,
        "seed": config.seed,
        "shard_size": config.shard_size,
        "batch_size": config.batch_size,
    }
    parts = parts_folder(out)
    if out.is_file() and provenance(out).get("plan") == plan:
        return out  # done before

    def build(j: int, shard_docs: list[Document]) -> dict:
        return _generate_shard(parts, j, shard_docs, generator, config, plan)

    num_shards, records = run_corpus_shards(
        parts, plan, docs, config.shard_size, config.shard, build, "generate-queries", config.progress
    )
    if records is None:
        return out  # other shards are still someone else's work
    join_shards(out, parts, num_shards)
    summary = {"plan": plan, "corpus": str(Path(config.corpus).resolve()), "passages": len(docs)}
    summary["queries"] = sum_counts(r["per_lang"] for r in records)
    dropped = sum_counts(r.get("dropped", {}) for r in records)
    atomic_write_json(f"{out}.json", summary | ({"dropped": dropped} if dropped else {}))
    shutil.rmtree(parts)
    return out


def _generate_shard(
    parts: Path, index: int, docs: list[Document], generator, config: GenerateConfig, plan: dict
) -> dict:
    per_doc: list[list[GeneratedQuery]] = [[] for _ in docs]
    per_lang = dict.fromkeys(config.langs, 0)
    step = max(1, len(docs)) if getattr(generator, "whole_shard", False) else config.batch_size
    for lang_index, lang in enumerate(config.langs):
        for start in range(0, len(docs), step):
            batch = docs[start : start + step]
            seed = derived_seed(config.seed, index, lang_index, start)
            for offset, (label, texts) in enumerate(generator.generate(batch, lang, config.num_queries, seed)):
                per_doc[start + offset] += [
                    GeneratedQuery(batch[offset].id, lang, t, label, config.seed) for t in texts
                ]
                per_lang[lang] += len(texts)
    name = f"{shard_name(index)}.jsonl"
    write_generated(parts / name, (q for queries in per_doc for q in queries))
    record = {"plan": plan, "rows": len(docs), "per_lang": per_lang, "files": checksums(parts, [name])}
    if hasattr(generator, "take_dropped"):  # backends that check what they made (the LLM's replies)
        record["dropped"] = generator.take_dropped()
    return write_shard_record(parts, index, record)
