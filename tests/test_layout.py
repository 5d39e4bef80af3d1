"""The package layout (issue 17): old module paths stay importable as deprecated aliases of the moved code, and
the core imports nothing from the folders built on top of it."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "xretrieve"

# old path -> (new module, names the old path must still give)
ALIASES = {
    "xretrieve.qgen": (
        "xretrieve.xqg.generate",
        [
            "generate_queries",
            "make_generator",
            "ApertiumEngine",
            "TranslationGenerator",
            "Seq2SeqGenerator",
            "LLMGenerator",
            "init_t5",
            "train_generator",
            "parts_folder",
            "lead_text",
            "key_texts",
            "LANGUAGES",
            "GENERATOR_SETTINGS",
            "check_languages",
            "language_name",
            "run_shards",
            "join_shards",
            "_derived_seed",
        ],
    ),
    "xretrieve.adapters": (
        "xretrieve.convert",
        [
            "convert_dataset",
            "LAYOUTS",
            "TrainingExample",
            "iter_training",
            "iter_dpr_training",
            "iter_swim_ir",
            "iter_dpr_passages",
            "read_xor_questions",
            "read_miracl_topics",
            "iter_beir_qrels",
            "_training_json",
        ],
    ),
    "xretrieve.augment": ("xretrieve.xqg.augment", ["augment_embeddings", "fuse"]),
    "xretrieve.llm": ("xretrieve.xqg.llm", ["make_llm", "OpenAIChat", "LocalCausalLM", "check_reply", "_retry_after"]),
    "xretrieve.synthesize": ("xretrieve.xqg.synthesize", ["synthesize", "TranslationSynthesizer"]),
    "xretrieve.evaluate": ("xretrieve.evaluation.evaluate", ["evaluate", "parse_measures", "BREAKDOWNS"]),
    "xretrieve.fuse": ("xretrieve.evaluation.fuse", ["fuse_runs", "interpolate", "reciprocal_rank_fusion"]),
    "xretrieve.bm25": ("xretrieve.evaluation.bm25", ["bm25_index", "bm25_search", "find_java"]),
    "xretrieve.reproduce": ("xretrieve.evaluation.reproduce", ["reproduce"]),
}


@pytest.mark.parametrize("old", sorted(ALIASES))
def test_old_module_paths_still_give_their_names_with_a_deprecation_warning(old):
    new, names = ALIASES[old]
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=old.replace(".", r"\.")):
        module = importlib.import_module(old)
    for name in names:
        assert hasattr(module, name), f"{old}.{name}"
    moved = importlib.import_module(new)
    shared = [n for n in names if hasattr(moved, n)]
    assert all(getattr(module, n) is getattr(moved, n) for n in shared)


def test_train_package_keeps_train_py_names():
    import xretrieve.train as train

    for name in (
        "train",
        "distill",
        "mine_negatives",
        "load_examples",
        "batch_languages",
        "language_batch_sampler",
        "negatives_per_example",
        "contrastive_dataset",
        "DEV_MEASURES",
        "_make_language_batch_sampler",
    ):
        assert hasattr(train, name), name
    assert callable(train.train) and callable(train.distill)


CORE = [
    "formats",
    "manifest",
    "model",
    "embedded",
    "encode",
    "index",
    "search",
    "shard_search",
    "docstore",
    "translate",
    "apertium",
    "text",
    "index_shard",
    "training_data",
    "errors",
    "live",
    "compact",
]
ABOVE = (
    "xretrieve.xqg",
    "xretrieve.train",
    "xretrieve.convert",
    "xretrieve.evaluation",
    "xretrieve.adapt",
    "xretrieve.cli",
    "xretrieve.serve",
    "xretrieve.ray",
    "xretrieve.qgen",
    "xretrieve.adapters",
    "xretrieve.augment",
    "xretrieve.llm",
    "xretrieve.synthesize",
)


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("name", CORE)
def test_the_core_imports_nothing_built_on_top_of_it(name):
    path = PACKAGE / f"{name}.py"
    if not path.exists():
        pytest.skip(f"{name}.py is not a flat core module in this tree")
    above = sorted(m for m in imported_modules(path) if m.startswith(ABOVE))
    assert not above, f"{name}.py imports {above}"


HEAVY = ("torch", "faiss", "transformers", "ray", "sentence_transformers")


def test_importing_every_module_starts_no_heavy_library():
    """Folders by role must not make `import` slower: no torch, faiss, transformers or ray at import."""
    modules = sorted(
        "xretrieve." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        for p in PACKAGE.rglob("*.py")
        if p.parent.name != "static" and p.stem != "__main__"
    )
    code = (
        "import sys, importlib, warnings; warnings.simplefilter('ignore')\n"
        f"for m in {modules!r}:\n    importlib.import_module(m.removesuffix('.'))\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
