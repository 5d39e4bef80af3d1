"""A sharded, resumable run over a corpus, shared by `generate-queries` and `synthesize`: each shard is written
atomically with a record, so a killed run redoes at most one shard per process, `--shard i/n` lets n processes
share the work, and the last one to finish joins the shards."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from xretrieve.formats import Document
from xretrieve.manifest import atomic_open, finished_records, load_shard_record, shard_name


def derived_seed(*parts: int) -> int:
    """A seed for one batch from (run seed, shard, language, batch): the same wherever and whenever it runs."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def parts_folder(out: str | Path) -> Path:
    """Where shards of a generation run wait until all are done: OUT.parts/ beside OUT."""
    return Path(f"{out}.parts")


def run_shards(
    parts: Path,
    plan: dict,
    num_shards: int,
    shard: tuple[int, int] | None,
    build: Callable[[int], dict],
    desc: str,
    progress: bool,
) -> list[dict] | None:
    """Build this process's shards (j % n == i for --shard i/n) that have no finished record of `plan`;
    `build(j)` writes shard j's files into `parts` and returns its record, written last. Every shard's
    record once all are finished, else None (other processes still hold some)."""
    from tqdm import tqdm

    todo = [j for j in range(num_shards) if shard is None or j % shard[1] == shard[0]]
    known = {}
    with tqdm(total=len(todo), desc=desc, unit="shard", disable=not progress) as bar:
        for j in todo:
            known[j] = load_shard_record(parts, j, plan) or build(j)
            bar.update(1)
    return finished_records(parts, num_shards, plan, known)


def run_corpus_shards(
    parts: Path,
    plan: dict,
    docs: list[Document],
    shard_size: int,
    shard: tuple[int, int] | None,
    build: Callable[[int, list[Document]], dict],
    desc: str,
    progress: bool,
) -> tuple[int, list[dict] | None]:
    """`run_shards` over a corpus cut into shards of `shard_size` passages, in corpus order: `build(j, docs)`
    builds shard j from its passages. Returns (number of shards, every shard's record or None)."""
    num_shards = math.ceil(len(docs) / shard_size)

    def build_one(j: int) -> dict:
        return build(j, docs[j * shard_size : (j + 1) * shard_size])

    return num_shards, run_shards(parts, plan, num_shards, shard, build_one, desc, progress)


def join_shards(out: str | Path, parts: Path, num_shards: int) -> None:
    """Concatenate the shards' jsonl files, in shard order, into `out` (atomically)."""
    with atomic_open(out, "wb") as f:
        for j in range(num_shards):
            with open(parts / f"{shard_name(j)}.jsonl", "rb") as part:
                shutil.copyfileobj(part, f)


def sum_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Per-key sums of the shards' counts (queries per language, drops per reason)."""
    total: dict[str, int] = {}
    for count in counts:
        for key, value in count.items():
            total[key] = total.get(key, 0) + value
    return total


def provenance(out: str | Path) -> dict:
    path = Path(f"{out}.json")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
