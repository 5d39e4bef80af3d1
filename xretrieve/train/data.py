"""Training examples as training reads them: from a file, with as many negatives as every row can have, as a
sentence-transformers dataset, and the language pool each is drawn from."""

from __future__ import annotations

from xretrieve.encode import passage_text
from xretrieve.errors import UserError
from xretrieve.formats import Document, iter_corpus
from xretrieve.training_data import TrainingExample, iter_dpr_training, iter_training


def load_examples(path: str, corpus: str | None = None) -> list[TrainingExample]:
    """Training examples in the Tevatron layout (passages given as ids are joined with `corpus`) or DPR's."""
    documents: dict[str, Document] | None = None
    if corpus:
        documents = {doc.id: doc for doc in iter_corpus(corpus)}
    # DPR's biencoder files (XOR-TyDi's retriever training data) are one JSON array; the rest is jsonl
    is_dpr = path.lower().endswith(".json")
    examples = list(iter_dpr_training(path) if is_dpr else iter_training(path, documents))
    if not examples:
        raise UserError(f"{path}: no training examples")
    return examples


def negatives_per_example(examples: list[TrainingExample], wanted: int | None, path: str) -> int:
    """Every row of a sentence-transformers dataset has the same columns: as many negatives as asked for
    (an example with fewer is an error), or by default as many as every example has."""
    fewest = min(len(e.negatives) for e in examples)
    if wanted is None:
        return fewest
    if wanted > fewest:
        short = next(e for e in examples if len(e.negatives) < wanted)
        raise UserError(
            f"{path}: --negatives {wanted} but example {short.query_id!r} has {len(short.negatives)} "
            "negatives (mine more with `xretrieve mine-negatives`, or ask for fewer)"
        )
    return wanted


def contrastive_dataset(examples: list[TrainingExample], negatives: int):
    """Columns query, positive, negative_1..n: the (anchor, positive, negatives) tuples MNRL reads."""
    from datasets import Dataset

    columns: dict[str, list[str]] = {
        "query": [e.query for e in examples],
        "positive": [passage_text(e.positives[0]) for e in examples],
    }
    for i in range(negatives):
        columns[f"negative_{i + 1}"] = [passage_text(e.negatives[i]) for e in examples]
    return Dataset.from_dict(columns)


def batch_languages(examples: list[TrainingExample], batches: str) -> list[str]:
    """The pool each example is drawn from: its positive's language for same-language batches (so in-batch
    negatives share the positive's language and language identity gives nothing away), else its query's."""
    if batches == "same-language":
        return [e.positives[0].lang or e.lang for e in examples]
    return [e.lang or e.positives[0].lang for e in examples]
