"""Deprecated alias (issue 17): query generation moved to `xretrieve.xqg` (backends, generate, train_generator,
checkpoints, template, shards), the language table to `xretrieve.text` and the Apertium engine to
`xretrieve.apertium`. Old imports keep working, with a DeprecationWarning."""

import warnings

from xretrieve.apertium import ApertiumEngine, ApertiumPipe
from xretrieve.text import LANGUAGES, check_languages, language_name
from xretrieve.xqg.backends.apertium import TranslationGenerator, key_texts, lead_text
from xretrieve.xqg.backends.llm import LLMGenerator
from xretrieve.xqg.backends.seq2seq import Seq2SeqGenerator
from xretrieve.xqg.generate import generate_queries, make_generator
from xretrieve.xqg.shards import derived_seed as _derived_seed
from xretrieve.xqg.shards import join_shards, parts_folder, provenance, run_shards, sum_counts
from xretrieve.xqg.template import DEFAULT_TEMPLATE, GENERATOR_SETTINGS, render_prompt
from xretrieve.xqg.train_generator import GeneratorPair, init_t5, read_generator_pairs, train_generator

__all__ = [
    "DEFAULT_TEMPLATE",
    "GENERATOR_SETTINGS",
    "LANGUAGES",
    "ApertiumEngine",
    "ApertiumPipe",
    "GeneratorPair",
    "LLMGenerator",
    "Seq2SeqGenerator",
    "TranslationGenerator",
    "_derived_seed",
    "check_languages",
    "generate_queries",
    "init_t5",
    "join_shards",
    "key_texts",
    "language_name",
    "lead_text",
    "make_generator",
    "parts_folder",
    "provenance",
    "read_generator_pairs",
    "render_prompt",
    "run_shards",
    "sum_counts",
    "train_generator",
]

warnings.warn(
    "xretrieve.qgen is deprecated: import from xretrieve.xqg (or xretrieve.text, xretrieve.apertium)",
    DeprecationWarning,
    stacklevel=2,
)
