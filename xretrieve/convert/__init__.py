"""`xretrieve convert`: datasets in their official layouts (MIRACL, XOR-TyDi's XOR-Retrieve, Tevatron, SWIM-IR,
BEIR) written as xretrieve's own files (corpus.jsonl, queries.jsonl, qrels.txt, answers.jsonl, train.jsonl), so
the rest of the pipeline reads one format only.

One module per layout; each reader streams its source and names the file, line and field of the first problem.
Corpora are streamed row by row, never held in memory.
"""

from __future__ import annotations

from pathlib import Path

from xretrieve.convert import beir, miracl, swim_ir, tevatron, xor_retrieve
from xretrieve.errors import UserError

LAYOUTS = ("miracl", "xor-retrieve", "tevatron", "swim-ir", "beir")
CONVERTERS = {
    "miracl": miracl.convert,
    "xor-retrieve": xor_retrieve.convert,
    "tevatron": tevatron.convert,
    "swim-ir": swim_ir.convert,
    "beir": beir.convert,
}


def convert_dataset(layout: str, source: str, out: str, lang: str | None = None, split: str = "dev") -> dict[str, str]:
    """Convert a dataset in its official layout into xretrieve files in folder `out`; returns {kind: path}.

    Kinds: corpus, queries, qrels, answers, train (whichever the layout has). `lang` picks the MIRACL
    language (required), keeps only that language's XOR-Retrieve questions and SWIM-IR pairs, and labels
    BEIR rows. `split` picks MIRACL (train, dev, test-a, test-b), XOR-Retrieve (train, dev, test) and BEIR
    (qrels/{split}.tsv) files; Tevatron and SWIM-IR read every jsonl file given. Optional parts (MIRACL
    corpus, XOR collection, Tevatron corpus.jsonl[.gz]) are converted when present in `source`.
    """
    if layout not in CONVERTERS:
        raise UserError(f"unknown dataset layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    source_path = Path(source)
    if not source_path.exists():
        raise UserError(f"{source}: no such file or folder")
    if layout in ("miracl", "beir") and not source_path.is_dir():
        raise UserError(f"{source}: the {layout} layout is a folder; give the folder, not a file")
    written = CONVERTERS[layout](source_path, Path(out), lang, split)
    return {kind: str(path) for kind, path in written.items()}
