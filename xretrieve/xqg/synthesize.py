"""SWIM-IR synthetic training data (`xretrieve synthesize`): queries in target languages written for passages of
a corpus, as Tevatron training rows (the query, its passage as the positive). Two backends:

- an LLM (xretrieve/xqg/llm.py: an OpenAI-compatible endpoint or a local causal LM) prompted to summarize, then
  ask (SAP; Thakur et al., NAACL 2024): an English summary of the passage, then a query in the target language;
- Apertium, offline and without an LLM: the passage's title and lead sentence (and, for more than one query a
  passage, the title with each of its longest other sentences), translated into each target language other
  than the passage's own, pivoting where no direct pair is installed.

The work splits into shards of passages, each written atomically with a record, as `generate-queries` does:
a killed run redoes at most one shard, and a rerun with the same settings does nothing.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xretrieve.apertium import ApertiumEngine
from xretrieve.config import SynthesizeConfig
from xretrieve.formats import Document, read_corpus, write_jsonl
from xretrieve.manifest import atomic_write_json, checksums, sha256_file, shard_name, write_shard_record
from xretrieve.text import check_languages
from xretrieve.training_data import TrainingExample, training_json
from xretrieve.xqg.backends.apertium import key_texts
from xretrieve.xqg.shards import derived_seed, join_shards, parts_folder, provenance, run_corpus_shards, sum_counts


@dataclass
class ShardQueries:
    """What a backend made of one shard: (passage index, language, query number, query) plus what it left out."""

    queries: list[tuple[int, str, int, str]] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)  # by reason
    skipped: Counter = field(default_factory=Counter)  # by target language: passages with no route to it


class TranslationSynthesizer:
    """Apertium: each key text of a passage, translated into each target language other than its own."""

    def __init__(self, engine: ApertiumEngine | None = None, max_words: int = 32):
        self.engine = engine or ApertiumEngine()
        self.max_words = max_words
        self.identity = {"backend": "apertium", "modes": sorted(self.engine.modes.values()), "max_words": max_words}

    def shard_queries(self, docs: list[Document], langs: list[str], per_passage: int, seed: int) -> ShardQueries:
        result = ShardQueries()
        texts = [key_texts(doc, per_passage, self.max_words) for doc in docs]
        flat: dict[str, list[tuple[int, int]]] = {}  # source language -> (passage, key text) of its passages
        for i, doc in enumerate(docs):
            flat.setdefault(doc.lang, []).extend((i, k) for k in range(len(texts[i])))
        chains: dict[tuple[str, str], list[str]] = {}
        for lang in langs:
            for source, items in flat.items():
                if source == lang:
                    continue  # a passage's own language needs no translation
                chain = self.engine.route(source, lang) if source else None
                if chain:
                    chains[source, lang] = chain
                else:
                    result.skipped[lang] += len({i for i, _ in items})
        sources = {source: [texts[i][k] for i, k in flat[source]] for source, _ in chains}
        done = self._translate_all(sources, [(source, *chain) for (source, _), chain in chains.items()])
        for (source, lang), chain in chains.items():
            for (i, k), query in zip(flat[source], done[(source, *chain)], strict=True):
                if query:
                    result.queries.append((i, lang, k, query))
                else:
                    result.dropped["empty_query"] += 1
        return result

    def _translate_all(self, sources: dict[str, list[str]], paths: list[tuple[str, ...]]) -> dict[tuple, list[str]]:
        """Each source language's texts through every prefix of its paths ((source, mode, ...)), with one
        Apertium run per mode where the routes allow: a mode waits until every text that needs it (pivots
        included) is ready, then runs for all source languages at once, streamed through one pipeline."""
        done: dict[tuple, list[str]] = {(source,): texts for source, texts in sources.items()}
        pending = {path[: d + 1] for path in paths for d in range(1, len(path))}
        while pending:
            ready = {key for key in pending if key[:-1] in done}
            waiting = {key[-1] for key in pending - ready}
            modes = sorted({key[-1] for key in ready})
            mode = next((m for m in modes if m not in waiting), modes[0])  # a cycle of modes: run one anyway
            batch = sorted(key for key in ready if key[-1] == mode)
            translated = self.engine.translate([t for key in batch for t in done[key[:-1]]], mode)
            for key in batch:
                done[key], translated = translated[: len(done[key[:-1]])], translated[len(done[key[:-1]]) :]
            pending -= set(batch)
        return done


class LLMSynthesizer:
    """Summarize-then-ask prompts to an LLM; replies parsed, checked and dropped by reason (xretrieve/xqg/llm.py)."""

    def __init__(self, llm, max_query_words: int):
        from xretrieve.xqg.llm import SAP_PROMPT_VERSION

        self.llm, self.max_query_words = llm, max_query_words
        self.identity = {**llm.identity, "prompt": SAP_PROMPT_VERSION, "max_query_words": max_query_words}

    def shard_queries(self, docs: list[Document], langs: list[str], per_passage: int, seed: int) -> ShardQueries:
        from xretrieve.xqg.llm import keep_queries, sap_prompt

        groups = [(i, lang) for lang in langs for i in range(len(docs))]
        prompts = [sap_prompt(docs[i], lang) for i, lang in groups for _ in range(per_passage)]
        seeds = [derived_seed(seed, j) for j in range(len(prompts))]
        replies = self.llm.complete(prompts, seeds)
        result = ShardQueries()
        for g, (i, lang) in enumerate(groups):
            group = replies[g * per_passage : (g + 1) * per_passage]
            kept = keep_queries(group, docs[i], self.max_query_words, result.dropped)
            result.queries += [(i, lang, k, query) for k, query in enumerate(kept)]
        return result


def make_synthesizer(config: SynthesizeConfig):
    if config.mt is not None:
        return TranslationSynthesizer(max_words=config.max_words)
    from xretrieve.xqg.llm import make_llm

    return LLMSynthesizer(make_llm(config), config.max_query_words)


def _passages(config: SynthesizeConfig) -> list[Document]:
    """The corpus, or `sample` passages of it drawn with the seed (kept in corpus order)."""
    docs = read_corpus(config.corpus)
    if config.sample is None or config.sample >= len(docs):
        return docs
    chosen = np.random.default_rng(config.seed).choice(len(docs), size=config.sample, replace=False)
    return [docs[i] for i in sorted(chosen)]


def synthesize(config: SynthesizeConfig, synthesizer=None) -> Path:
    """Write OUT (Tevatron training rows, one per kept query) and OUT.json (settings, counts, drops by reason).

    With `--shard i/n` this process does its shards only; the last process to finish joins them. Returns
    OUT, which exists only once every shard is done.
    """
    check_languages(config.langs)
    out = Path(config.out)
    docs = _passages(config)
    synthesizer = synthesizer or make_synthesizer(config)
    plan = {
        "corpus_sha256": sha256_file(config.corpus),
        "backend": synthesizer.identity,
        "langs": config.langs,
        "per_passage": config.per_passage,
        "sample": config.sample,
        "seed": config.seed,
        "shard_size": config.shard_size,
    }
    # the plan, and what happens after the shards: the whole of what a rerun must match to do nothing
    settings = plan | {"negatives": config.negatives, "index": config.index, "model": config.model}
    if out.is_file() and provenance(out).get("settings") == settings:
        return out  # done before
    parts = parts_folder(out)

    def build(j: int, shard_docs: list[Document]) -> dict:
        return _synthesize_shard(parts, j, shard_docs, synthesizer, config, plan)

    num_shards, records = run_corpus_shards(
        parts, plan, docs, config.shard_size, config.shard, build, "synthesize", config.progress
    )
    if records is None:
        return out  # other shards are still someone else's work
    summary = {
        "settings": settings,
        "corpus": str(Path(config.corpus).resolve()),
        "passages": len(docs),
        "queries": sum_counts(r["per_lang"] for r in records),
        "dropped": sum_counts(r["dropped"] for r in records),
        "skipped_no_route": sum_counts(r["skipped"] for r in records),
    }
    if config.negatives is None or not sum(summary["queries"].values()):
        join_shards(out, parts, num_shards)  # (no rows: nothing to mine for)
    else:
        join_shards(parts / "positives.jsonl", parts, num_shards)
        summary["negatives"] = _mine(config, parts / "positives.jsonl", out)
    atomic_write_json(f"{out}.json", summary)
    shutil.rmtree(parts)
    return out


def _synthesize_shard(
    parts: Path, index: int, docs: list[Document], synthesizer, config: SynthesizeConfig, plan: dict
) -> dict:
    made = synthesizer.shard_queries(docs, config.langs, config.per_passage, derived_seed(config.seed, index))
    made.queries.sort(key=lambda q: (q[0], config.langs.index(q[1]), q[2]))  # passage order, then language
    rows = (
        training_json(TrainingExample(f"{docs[i].id}-{lang}-{k}", query, [docs[i]], [], lang))
        for i, lang, k, query in made.queries
    )
    name = f"{shard_name(index)}.jsonl"
    write_jsonl(parts / name, rows)
    per_lang = dict.fromkeys(config.langs, 0) | Counter(lang for _, lang, _, _ in made.queries)
    record = {"plan": plan, "rows": len(docs), "per_lang": per_lang, "files": checksums(parts, [name])}
    return write_shard_record(parts, index, record | {"dropped": dict(made.dropped), "skipped": dict(made.skipped)})


def _mine(config: SynthesizeConfig, positives: Path, out: Path) -> dict[str, int]:
    """Hard negatives for every row by `mine-negatives`, from --index or a Flat index of the corpus in OUT.index/."""
    from xretrieve.config import IndexConfig, MineConfig
    from xretrieve.index import build_index
    from xretrieve.train.mine import mine_negatives

    index = config.index
    if index is None:
        index = f"{out}.index"
        build_index(
            IndexConfig(out=index, corpus=config.corpus, model=config.model, factory="Flat", progress=config.progress)
        )
    mined = positives.with_name("mined.jsonl")  # mine-negatives writes mined.jsonl.json beside it: not ours
    counts = mine_negatives(
        MineConfig(
            train_data=str(positives),
            index=str(index),
            out=str(mined),
            corpus=config.corpus,
            negatives=config.negatives,
            device=config.device,
            progress=config.progress,
        )
    )
    os.replace(mined, out)  # OUT.parts/ is OUT's sibling, on the same file system: an atomic rename
    return counts
