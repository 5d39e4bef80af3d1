"""xQG ablation on real aligned text: retrieval with and without generated queries folded into the passages.

Data: benchmarks/data/bible-xling (see xling_bible.py). Retriever: the embedded multilingual-e5-small, Flat
index, each (query language, document language) pair searched on its own, MRR@10 and R@10.

Generated queries come from two backends, through the same `generate-queries` and `augment` code as the CLI:
- apertium: the passage's leading sentence machine-translated by Apertium. Of the benchmark's 12 languages,
  Debian's pairs connect only en, es, fr and it (eng-spa, fr-es, spa-ita, pivoting through Spanish), so only
  passages in those four languages get queries, in the other three.
- t5-scratch: a small T5 trained here from random weights on the benchmark's training split (3,000
  cross-lingual pairs from other books) with `train-generator`: no multilingual seq2seq weights can be
  installed offline. It proves the path (train, sample, fold in); it is far from an mT5.

Each augmented folder is indexed with `build_index` and searched with `Searcher`, as `xretrieve index
--embeddings` and `search` would. Query encodings are cached across the alpha sweep (same texts, same model),
so each generated query is encoded once. Everything lands in --work and is reused by a rerun.

    .venv/bin/python benchmarks/xqg_bible.py [--work runs/xqg-bible] [--train-steps 200] [--skip-t5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from xling_bible import MEASURES, pair_scores  # noqa: E402

from xretrieve.config import AugmentConfig, EncodeConfig, GenerateConfig, IndexConfig, TrainGeneratorConfig  # noqa: E402
from xretrieve.encode import encode_corpus  # noqa: E402
from xretrieve.formats import iter_generated, read_corpus, read_qrels, read_queries, write_jsonl  # noqa: E402
from xretrieve.index import build_index  # noqa: E402
from xretrieve.manifest import atomic_write_json, atomic_write_text  # noqa: E402
from xretrieve.search import Searcher  # noqa: E402
from xretrieve.xqg.augment import augment_embeddings  # noqa: E402
from xretrieve.xqg.generate import generate_queries  # noqa: E402
from xretrieve.xqg.train_generator import init_t5, train_generator  # noqa: E402

HERE = Path(__file__).parent
DEPTH = 100
SWEEP = {  # (mode, alpha) per generator
    "apertium": [("sum", a) for a in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)] + [("mean", a) for a in (0.1, 0.2, 0.3, 0.5)],
    "t5-scratch": [("sum", a) for a in (0.01, 0.05)] + [("mean", a) for a in (0.1, 0.3)],
}


class CachedQueryEncoder:
    """The bi-encoder, with query encodings remembered by text: the sweep re-reads the same queries."""

    def __init__(self, encoder):
        self.encoder, self.cache = encoder, {}
        self.name, self.dim, self.fingerprint = encoder.name, encoder.dim, encoder.fingerprint
        self.identity = encoder.identity

    def encode_queries(self, texts, batch_size=32, progress=False):
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            self.cache.update(zip(missing, self.encoder.encode_queries(missing, batch_size, progress), strict=True))
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def encode_passages(self, texts, batch_size=32, progress=False):
        return self.encoder.encode_passages(texts, batch_size, progress)

    def token_lengths(self, texts):
        return self.encoder.token_lengths(texts)


def evaluate(index: Path, encoder, queries, query_vectors, qrels, doc_lang, langs) -> dict:
    searcher = Searcher(index, encoder=encoder)
    results: dict = defaultdict(dict)
    for b in langs:
        hits = searcher.search_vectors(query_vectors, k=DEPTH, langs=[b])
        run = {
            q.id: [_entry(rank, h) for rank, h in enumerate(found, 1)] for q, found in zip(queries, hits, strict=True)
        }
        for a in langs:
            results[a][b] = pair_scores(run, qrels, queries, doc_lang, a, b)
    return results


def _entry(rank, hit):
    from xretrieve.formats import RunEntry

    return RunEntry(hit.docid, rank, hit.score)


def summarize(results: dict, langs: list[str], augmented_langs: set[str]) -> dict:
    cross = [(a, b) for a in langs for b in langs if a != b]
    groups = {
        "cross_language_pairs": cross,
        "docs_with_queries": [(a, b) for a, b in cross if b in augmented_langs],
        "docs_without_queries": [(a, b) for a, b in cross if b not in augmented_langs],
        "same_language": [(a, a) for a in langs],
    }
    return {
        m: {
            g: round(float(np.mean([results[a][b][m] for a, b in pairs])), 4) if pairs else None
            for g, pairs in groups.items()
        }
        for m in MEASURES
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HERE / "data" / "bible-xling"))
    parser.add_argument("--work", default="runs/xqg-bible")
    parser.add_argument("--out", default=str(HERE / "results" / "xqg_bible"))
    parser.add_argument("--train-steps", type=int, default=200)
    parser.add_argument("--t5-dim", type=int, default=128)
    parser.add_argument("--t5-layers", type=int, default=2)
    parser.add_argument("--t5-langs", default="en", help="target languages for the trained generator")
    parser.add_argument("--t5-queries", type=int, default=1, help="sampled queries per passage and language")
    parser.add_argument("--t5-doc-langs", default="es,ja", help="passages the trained generator writes for")
    parser.add_argument("--skip-t5", action="store_true")
    args = parser.parse_args()
    data, work = Path(args.data), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    def timed(name, fn, *a, **k):
        started = time.perf_counter()
        value = fn(*a, **k)
        seconds[name] = round(seconds.get(name, 0) + time.perf_counter() - started, 1)
        return value

    from xretrieve.model import BiEncoder

    docs = read_corpus(data / "corpus.jsonl")
    queries = read_queries(data / "queries.jsonl")
    qrels = read_qrels(data / "qrels.txt")
    doc_lang = {d.id: d.lang for d in docs}
    langs = sorted({d.lang for d in docs})
    encoder = CachedQueryEncoder(BiEncoder())
    emb = work / "emb"
    timed("encode corpus (e5)", encode_corpus, EncodeConfig(corpus=str(data / "corpus.jsonl"), out=str(emb)), encoder)
    query_vectors = timed("encode test queries", encoder.encode_queries, [q.text for q in queries], 64)

    generated = {"apertium": work / "genq-apertium.jsonl"}
    timed(
        "generate (apertium)",
        generate_queries,
        GenerateConfig(
            corpus=str(data / "corpus.jsonl"), out=str(generated["apertium"]), langs=langs, backend="apertium"
        ),
    )
    notes = []
    if not args.skip_t5:
        t5 = work / "t5-init"
        if not (t5 / "config.json").is_file():
            train_rows = [json.loads(line) for line in (data / "train.jsonl").read_text(encoding="utf-8").splitlines()]
            texts = [r["query"] for r in train_rows] + [p["text"] for r in train_rows for p in r["positive_passages"]]
            timed(
                "t5: tokenizer + init", init_t5, texts, t5, vocab_size=8000, d_model=args.t5_dim, layers=args.t5_layers
            )
        trained = work / "t5-trained"
        timed(
            "t5: train-generator",
            train_generator,
            TrainGeneratorConfig(
                model=str(t5),
                out=str(trained),
                train=str(data / "train.jsonl"),
                max_steps=args.train_steps,
                batch_size=32,
                learning_rate=1e-3,
                warmup_steps=50,
                save_steps=200,
            ),
        )
        generated["t5-scratch"] = work / "genq-t5.jsonl"
        subset = work / "corpus-t5.jsonl"  # CPU time: the generator writes for passages of a few languages
        wanted = set(args.t5_doc_langs.split(","))
        write_jsonl(subset, ({"id": d.id, "text": d.text, "lang": d.lang} for d in docs if d.lang in wanted))
        timed(
            "t5: generate-queries",
            generate_queries,
            GenerateConfig(
                corpus=str(subset),
                out=str(generated["t5-scratch"]),
                langs=args.t5_langs.split(","),
                generator=str(trained),
                num_queries=args.t5_queries,
                max_new_tokens=32,
                batch_size=32,
            ),
        )
        settings = json.loads((trained / "xretrieve-generator.json").read_text())
        notes.append(
            f"t5-scratch: d_model {args.t5_dim}, {args.t5_layers}+{args.t5_layers} layers, Unigram vocabulary of "
            f"{json.loads((t5 / 'config.json').read_text())['vocab_size']} pieces learnt from the training split, "
            f"{settings['steps']} steps of batch 32 on {settings['pairs']} pairs, "
            f"final loss {settings['final_loss']:.2f}"
        )

    conditions = {"baseline": (None, emb)}
    counts, examples, augmented_langs = {}, {}, {}
    for gen, path in generated.items():
        per_lang: dict[str, int] = {}
        passages = set()
        for q in iter_generated(path):
            per_lang[q.lang] = per_lang.get(q.lang, 0) + 1
            passages.add(q.docid)
            if q.docid == "en-JHN.3.16" or (q.docid == "es-JHN.3.16" and q.lang == "en"):
                examples.setdefault(gen, []).append({"docid": q.docid, "lang": q.lang, "text": q.text})
        counts[gen] = {"queries": per_lang, "passages": len(passages)}
        augmented_langs[gen] = {doc_lang[d] for d in passages}
        for mode, alpha in SWEEP[gen]:
            out = work / f"emb-{gen}-{mode}-{alpha}"
            config = AugmentConfig(str(emb), str(path), str(out), alpha=alpha, mode=mode, batch_size=64)
            timed(f"augment ({gen})", augment_embeddings, config, encoder)
            conditions[f"{gen} {mode} a={alpha}"] = (gen, out)

    results, summary = {}, {}
    for name, (_, folder) in conditions.items():
        index = work / "indexes" / name.replace(" ", "_")
        if not (index / "manifest.json").is_file():
            timed("index", build_index, IndexConfig(out=str(index), embeddings=str(folder), progress=False))
        results[name] = timed(
            "search + measure", evaluate, index, encoder, queries, query_vectors, qrels, doc_lang, langs
        )
    for name, (gen, _) in conditions.items():  # each generator's rows, and a baseline row grouped as they are
        for group_of in [gen] if gen else list(generated):
            key = name if gen else f"baseline [{group_of} groups]"
            summary[key] = summarize(results[name], langs, augmented_langs[group_of])

    write_report(args.out, results, summary, counts, examples, augmented_langs, langs, seconds, notes)


def write_report(out, results, summary, counts, examples, augmented_langs, langs, seconds, notes) -> None:
    atomic_write_json(
        f"{out}.json",
        {
            "summary": summary,
            "pairs": results,
            "generated": counts,
            "examples": examples,
            "augmented_langs": {g: sorted(v) for g, v in augmented_langs.items()},
            "seconds": seconds,
            "notes": notes,
            "command": sys.argv,
        },
    )
    m = "RR@10"
    lines = [
        "# xQG ablation: generated queries folded into passage embeddings (bible-xling, e5-small, Flat)",
        "",
        "Produced by `benchmarks/xqg_bible.py`. MRR@10 averaged over query-language x document-language pairs",
        "(75 queries each, one relevant passage per query). Groups: all 132 cross-language pairs; the cross pairs",
        "whose document language got generated queries; those whose did not (these must equal the baseline:",
        "augmentation leaves passages without queries unchanged); same-language pairs.",
        "",
        *[f"- {n}" for n in notes],
        *[
            f"- {g}: {c['queries'] and sum(c['queries'].values())} queries for {c['passages']} passages "
            f"(documents in {', '.join(sorted(augmented_langs[g]))}); per language {json.dumps(c['queries'])}"
            for g, c in counts.items()
        ],
        "",
        "| condition | cross pairs | Δ | pairs, docs with queries | Δ | pairs, docs without | same language | Δ |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in summary.items():
        gen = next((g for g in augmented_langs if name.startswith(g) or f"[{g} groups]" in name), None)
        row, b = s[m], summary[f"baseline [{gen} groups]"][m]

        def cell(key, delta=True, row=row, b=b):
            if row[key] is None:
                return "- | -" if delta else "-"
            return f"{row[key]:.4f} | {row[key] - b[key]:+.4f}" if delta else f"{row[key]:.4f}"

        lines.append(
            f"| {name} | {cell('cross_language_pairs')} | {cell('docs_with_queries')} "
            f"| {cell('docs_without_queries', False)} | {cell('same_language')} |"
        )
    for gen in augmented_langs:
        candidates = [n for n in summary if n.startswith(gen)]
        if not candidates:
            continue
        best = max(candidates, key=lambda n: summary[n][m]["docs_with_queries"])
        for name in dict.fromkeys([best, f"{gen} sum a=0.01"]):
            if name not in results:
                continue
            docs = sorted(augmented_langs[gen])
            lines += [
                "",
                f"## {name}: MRR@10 change per pair against the baseline (rows: query language; columns: document"
                " languages that got queries)",
                "",
                "| query \\ docs | " + " | ".join(docs) + " |",
                "|" + "---|" * (len(docs) + 1),
            ]
            for a in langs:
                cells = [results[name][a][d][m] - results["baseline"][a][d][m] for d in docs]
                lines.append(f"| **{a}** | " + " | ".join(f"{c:+.3f}" for c in cells) + " |")
    if examples:
        lines += ["", "## Examples (passages en-JHN.3.16 and es-JHN.3.16)", ""]
        for gen, rows in examples.items():
            lines += [f"- {gen} [{r['docid']} → {r['lang']}]: {r['text']}" for r in rows[:6]]
    lines += ["", f"Command: `{' '.join(['python', *sys.argv])}`", "", f"Seconds: {json.dumps(seconds)}"]
    atomic_write_text(f"{out}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
