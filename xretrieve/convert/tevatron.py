"""Tevatron's training files (jsonl or jsonl.gz, v1 and v2 field names), with its corpus.jsonl when given."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from xretrieve.convert.common import corpus_json, iter_jsonl_corpus, jsonl_files
from xretrieve.errors import UserError
from xretrieve.formats import _records, write_jsonl
from xretrieve.training_data import training_example, training_json

TEVATRON_CORPUS = ("corpus.jsonl", "corpus.jsonl.gz")


def convert(source: Path, out: Path, lang: str | None, split: str) -> dict[str, Path]:
    if lang:
        raise UserError("the tevatron layout takes no language: its rows mix languages and carry no language field")
    files = jsonl_files(source, recursive=False, exclude="corpus.")
    if not files:
        raise UserError(f"{source}: no Tevatron training files (*.jsonl or *.jsonl.gz)")
    folder = source if source.is_dir() else source.parent
    corpus = next((folder / name for name in TEVATRON_CORPUS if (folder / name).is_file()), None)

    def examples() -> Iterator[dict]:
        for path in files:
            for where, record in _records(path):
                example = training_example(record, where, None, keep_ids=True)
                if corpus is None and any(not p.text for p in example.positives + example.negatives):
                    raise UserError(
                        f"{where}: passages given as docids need {' or '.join(TEVATRON_CORPUS)} in {folder}"
                    )
                yield training_json(example)

    written = {"train": out / "train.jsonl"}
    write_jsonl(written["train"], examples())
    if corpus is not None:
        written["corpus"] = out / "corpus.jsonl"
        write_jsonl(written["corpus"], (corpus_json(d) for d in iter_jsonl_corpus(corpus)))
    return written
