"""Deprecated alias (issue 17): the dataset layouts moved to `xretrieve.convert`, one module per layout, and the
training examples to `xretrieve.training_data`. Old imports keep working, with a DeprecationWarning."""

import warnings

from xretrieve.convert import CONVERTERS, LAYOUTS, convert_dataset
from xretrieve.convert.beir import iter_beir_qrels
from xretrieve.convert.common import iter_jsonl_corpus
from xretrieve.convert.miracl import MIRACL_SPLITS, read_miracl_topics
from xretrieve.convert.swim_ir import iter_swim_ir
from xretrieve.convert.tevatron import TEVATRON_CORPUS
from xretrieve.convert.xor_retrieve import XOR_COLLECTION, XOR_QUESTIONS, iter_dpr_passages, read_xor_questions
from xretrieve.training_data import TrainingExample, iter_dpr_training, iter_training
from xretrieve.training_data import training_json as _training_json

__all__ = [
    "CONVERTERS",
    "LAYOUTS",
    "MIRACL_SPLITS",
    "TEVATRON_CORPUS",
    "XOR_COLLECTION",
    "XOR_QUESTIONS",
    "TrainingExample",
    "_training_json",
    "convert_dataset",
    "iter_beir_qrels",
    "iter_dpr_passages",
    "iter_dpr_training",
    "iter_jsonl_corpus",
    "iter_swim_ir",
    "iter_training",
    "read_miracl_topics",
    "read_xor_questions",
]

warnings.warn(
    "xretrieve.adapters is deprecated: import from xretrieve.convert or xretrieve.training_data",
    DeprecationWarning,
    stacklevel=2,
)
