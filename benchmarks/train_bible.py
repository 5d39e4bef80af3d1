"""Before/after fine-tuning on real cross-lingual pairs: the embedded e5-small against itself after
`xretrieve train` on bible-xling's training split (3,000 verse pairs from other books than the test split).

Both models are scored as `xling_bible.py` scores them: every (query language, document language) pair,
MRR@10 and R@10, queries searched among the documents of one language (exact Flat index). Reported per
language (as query side and as document side, over cross-language pairs), per pair, and on average.
With `--mine`, hard negatives are first mined with `xretrieve mine-negatives` from an index of the training
passages built with the base model, and each training example carries `--negatives` of them.

    .venv/bin/python benchmarks/train_bible.py [--max-steps 150] [--batch-size 32] [--mine] [--work runs/train-bible]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path
from statistics import mean

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from xling_bible import MEASURES, averages, dense_runs, pair_scores  # noqa: E402

from xretrieve.config import IndexConfig, MineConfig, TrainConfig  # noqa: E402
from xretrieve.formats import read_corpus, read_qrels, read_queries, write_jsonl  # noqa: E402
from xretrieve.index import build_index  # noqa: E402
from xretrieve.manifest import atomic_write_json, atomic_write_text  # noqa: E402
from xretrieve.train import mine_negatives, train  # noqa: E402
from xretrieve.training_data import iter_training  # noqa: E402


def mine(data: Path, work: Path, negatives: int) -> tuple[Path, dict]:
    """Hard negatives for every training query among all training passages (3,000 verses, one language each,
    no two the same verse), ranks 1-50, at least 0.02 below the positive's score."""
    mined = work / "train-mined.jsonl"
    if mined.is_file():
        return mined, json.loads(Path(f"{mined}.json").read_text())["counts"]
    passages = {p.id: p for e in iter_training(data / "train.jsonl") for p in e.positives}
    corpus = work / "train-passages.jsonl"
    write_jsonl(corpus, ({"id": p.id, "text": p.text, "lang": p.lang} for p in passages.values()))
    index = work / "train-index"
    if not (index / "manifest.json").is_file():
        build_index(IndexConfig(out=str(index), corpus=str(corpus)))
    counts = mine_negatives(
        MineConfig(
            train_data=str(data / "train.jsonl"),
            index=str(index),
            out=str(mined),
            negatives=negatives,
            max_rank=50,
            margin=0.02,
        )
    )
    return mined, counts


def evaluate(data: Path, work: Path, model: str | None) -> dict:
    docs = read_corpus(data / "corpus.jsonl")
    queries = read_queries(data / "queries.jsonl")
    qrels = read_qrels(data / "qrels.txt")
    doc_lang = {d.id: d.lang for d in docs}
    langs = sorted({d.lang for d in docs})
    runs = dense_runs(data, work, model, langs, queries)
    results: dict = defaultdict(dict)
    for a in langs:
        for b in [*langs, "mixed"]:
            results[a][b] = pair_scores(runs[b], qrels, queries, doc_lang, a, None if b == "mixed" else b)
    return results


def per_language(results: dict, langs: list[str], measure: str) -> dict:
    """Cross-language pairs averaged per language: as the query side and as the document side."""
    return {
        lang: {
            "as_query": round(mean(results[lang][b][measure] for b in langs if b != lang), 4),
            "as_document": round(mean(results[a][lang][measure] for a in langs if a != lang), 4),
            "same_language": results[lang][lang][measure],
            "mixed": results[lang]["mixed"][measure],
        }
        for lang in langs
    }


def write_report(saved: dict, path: str) -> None:
    """The Markdown report, from the JSON the run saved (so `--report-only` can redo it without re-running)."""
    args = argparse.Namespace(**saved["settings"])
    command, results, summary = saved["command"], saved["pairs"], saved["summary"]
    languages, losses, mined_counts, seconds = (
        saved["per_language_mrr10"],
        saved["training_loss"],
        saved["mined"],
        saved["seconds"],
    )
    langs = sorted(results["base"])

    def row(label: str, before, after) -> str:
        return f"| {label} | {before:.3f} | {after:.3f} | {after - before:+.3f} |"

    lines = [
        "# Fine-tuning e5-small on bible-xling's training pairs: before and after",
        "",
        f"Produced by `{command}` (`benchmarks/train_bible.py`). Training: {saved['trained_steps']} steps "
        f"of batch {args.batch_size}, `--batches {args.batches}`, temperature {args.temperature}, learning rate "
        f"{args.learning_rate}, max length {args.max_seq_length}, "
        + (f"{args.negatives} mined hard negative(s) per query" if args.mine else "in-batch negatives only")
        + ", on CPU. Test split: the 300 verses of `xling_bible.py`, from books the training split does not use.",
        "",
        *([args.note, ""] if args.note else []),
        *(
            [
                f"Before: the base model's scores are read from `{args.baseline}` (`xling_bible.py`'s run of the same "
                "embedded model on the same data and code), not re-encoded in this run.",
                "",
            ]
            if args.baseline
            else []
        ),
        "## Averages (MRR@10 and R@10)",
        "",
        "| measure | before | after | change |",
        "|---|---:|---:|---:|",
    ]
    for m in MEASURES:
        for key, label in (
            ("cross_language_pairs", "cross-language pairs"),
            ("same_language", "same language"),
            ("mixed", "mixed corpus"),
        ):
            lines.append(row(f"{m}, {label}", summary["base"][m][key], summary["trained"][m][key]))
    lines += [
        "",
        "## Per language, MRR@10 over the 11 cross-language pairs it takes part in",
        "",
        "| language | as query: before | after | change | as document: before | after | change |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for lang in langs:
        b, a = languages["base"][lang], languages["trained"][lang]
        lines.append(
            f"| {lang} | {b['as_query']:.3f} | {a['as_query']:.3f} | {a['as_query'] - b['as_query']:+.3f} | "
            f"{b['as_document']:.3f} | {a['as_document']:.3f} | {a['as_document'] - b['as_document']:+.3f} |"
        )
    lines += [
        "",
        "## Change in MRR@10 per pair (rows: query language; columns: document language)",
        "",
        "| query \\ docs | " + " | ".join(langs) + " |",
        "|" + "---|" * (len(langs) + 1),
    ]
    for a in langs:
        cells = [results["trained"][a][b]["RR@10"] - results["base"][a][b]["RR@10"] for b in langs]
        lines.append(f"| **{a}** | " + " | ".join(f"{c:+.3f}" for c in cells) + " |")
    worse = sum(
        results["trained"][a][b]["RR@10"] < results["base"][a][b]["RR@10"] for a in langs for b in langs if a != b
    )
    lines += [
        "",
        f"Cross-language pairs that got worse: {worse} of {len(langs) * (len(langs) - 1)}.",
        "",
        "Training loss (step, loss): " + (", ".join(f"{s}: {v}" for s, v in losses) or "none logged"),
    ]
    if mined_counts:
        lines.append(f"Mining: {json.dumps(mined_counts)}")
    lines.append(f"Seconds: {json.dumps(seconds)}")
    atomic_write_text(path, "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HERE / "data" / "bible-xling"))
    parser.add_argument("--work", default="runs/train-bible")
    parser.add_argument("--max-steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mini-batch-size", type=int, help="cached MNRL chunk size")
    parser.add_argument("--temperature", type=float, default=0.01, help="e5's own training temperature")
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--batches", default="same-language", choices=["mixed", "same-language"])
    parser.add_argument("--mine", action="store_true", help="train with mined hard negatives")
    parser.add_argument("--negatives", type=int, default=1, help="mined negatives per example (with --mine)")
    parser.add_argument("--save-steps", type=int, default=4, help="checkpoint interval (a rerun resumes)")
    parser.add_argument(
        "--baseline",
        help="take the base model's scores from this xling_bible.py output (its e5-small pairs) instead of "
        "evaluating it again: same data, model and code; for a machine too loaded to encode the test set twice",
    )
    parser.add_argument("--out", default=str(HERE / "results" / "train_bible"))
    parser.add_argument("--note", help="a sentence for the report on how this run was made")
    parser.add_argument("--report-only", action="store_true", help="rewrite OUT.md from OUT.json (and its --note)")
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads(Path(f"{args.out}.json").read_text())
        if args.note:  # a corrected account of how the run was made; the scores are not touched
            saved["settings"]["note"] = args.note
            atomic_write_json(f"{args.out}.json", saved)
        write_report(saved, f"{args.out}.md")
        return
    data, work = Path(args.data), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/train_bible.py " + shlex.join(sys.argv[1:])

    seconds, mined_counts = {}, None
    train_data = data / "train.jsonl"
    if args.mine:
        started = time.perf_counter()
        train_data, mined_counts = mine(data, work, args.negatives)
        seconds["mine"] = round(time.perf_counter() - started, 1)
    model = work / "model"
    if not (model / "xretrieve.json").is_file():
        checkpoints = Path(f"{model}.checkpoints")
        started = time.perf_counter()
        train(
            TrainConfig(
                train_data=str(train_data),
                out=str(model),
                max_steps=args.max_steps,
                batch_size=args.batch_size,
                mini_batch_size=args.mini_batch_size,
                temperature=args.temperature,
                learning_rate=args.learning_rate,
                max_seq_length=args.max_seq_length,
                batches=args.batches,
                negatives=args.negatives if args.mine else 0,
                save_steps=args.save_steps,
                resume=checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*")),
                device="cpu",
            )
        )
        seconds["train"] = round(time.perf_counter() - started, 1)
    trained_steps = json.loads((model / "xretrieve.json").read_text())["training"]["steps"]
    history = json.loads((model / "training.json").read_text())["log_history"]
    losses = [(h["step"], round(h["loss"], 4)) for h in history if "loss" in h]

    results = {}
    if args.baseline:
        results["base"] = json.loads(Path(args.baseline).read_text())["pairs"]["e5-small"]
    for name, path in (("base", None), ("trained", str(model))):
        if name in results:
            continue
        started = time.perf_counter()
        results[name] = evaluate(data, work / name, path)
        seconds[f"evaluate_{name}"] = round(time.perf_counter() - started, 1)

    langs = sorted(results["base"])
    summary = {name: {m: averages(r, langs, m) for m in MEASURES} for name, r in results.items()}
    languages = {name: per_language(r, langs, "RR@10") for name, r in results.items()}
    atomic_write_json(
        f"{args.out}.json",
        {
            "command": command,
            "settings": vars(args),
            "summary": summary,
            "per_language_mrr10": languages,
            "pairs": results,
            "trained_steps": trained_steps,
            "training_loss": losses,
            "mined": mined_counts,
            "seconds": seconds,
        },
    )

    write_report(json.loads(Path(f"{args.out}.json").read_text()), f"{args.out}.md")


if __name__ == "__main__":
    main()
