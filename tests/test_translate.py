"""Translate-test: queries combined with their translations into the documents' languages."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import FakeEncoder, write_corpus
from test_qgen import apertium_or_skip

from xretrieve.cli import main
from xretrieve.config import IndexConfig
from xretrieve.errors import UserError
from xretrieve.index import build_index
from xretrieve.search import Searcher
from xretrieve.translate import QueryTranslator, combine


class FakeEngine:
    modes = {("es", "en"): "spa-eng", ("en", "es"): "eng-spa", ("fr", "es"): "fr-es"}


class FakeTranslator:
    """Translation by prefixing the target language; routes as in FakeEngine (fr reaches en through es)."""

    def __init__(self):
        self.engine = FakeEngine()
        self.calls = []

    REACHABLE = {("es", "en"), ("en", "es"), ("fr", "es"), ("fr", "en")}

    def route(self, source, target):
        return [f"{source}-{target}"] if (source, target) in self.REACHABLE else None

    def translate(self, text, source, target):
        self.calls.append((text, source, target))
        return f"[{target}] {text}" if (source, target) in self.REACHABLE else None

    def close(self):
        pass


@pytest.fixture(scope="module")
def encoder():
    return FakeEncoder(dim=16)


@pytest.fixture(scope="module")
def index(tmp_path_factory, encoder):
    folder = tmp_path_factory.mktemp("tt")
    corpus = write_corpus(folder / "corpus.jsonl", 300, langs=("en", "es", "ja"))
    config = IndexConfig(
        out=str(folder / "index"),
        corpus=str(corpus),
        factory="Flat",
        progress=False,
        translate="apertium",
        translate_weight=0.25,
        translate_max_targets=0,
    )
    return build_index(config, encoder=encoder)


def oracle(encoder, text, translations, weight):
    q = encoder.vector(text)
    if not translations:
        return q
    v = (1 - weight) * q + weight * np.mean([encoder.vector(t) for t in translations], axis=0)
    return v / np.linalg.norm(v)


def test_the_manifest_records_translate_test(index):
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["translate"] == {"backend": "apertium", "weight": 0.25, "targets": None, "max_targets": 0}


def test_query_vectors_combine_the_query_with_its_translations_exactly(index, encoder):
    translator = FakeTranslator()
    searcher = Searcher(index, encoder=encoder, translator=translator)
    texts = ["hola mundo", "bonjour le monde", "hello world", "こんにちは"]
    vectors = searcher.query_vectors(texts, ["es", "fr", "en", "ja"])
    expected = [
        oracle(encoder, "hola mundo", ["[en] hola mundo"], 0.25),  # es -> en (its own language is not a target)
        oracle(encoder, "bonjour le monde", ["[en] bonjour le monde", "[es] bonjour le monde"], 0.25),
        oracle(encoder, "hello world", ["[es] hello world"], 0.25),
        encoder.vector("こんにちは"),  # no route from ja: the query alone
    ]
    np.testing.assert_allclose(vectors, np.stack(expected), atol=1e-6)
    hits = searcher.search(texts, k=5, query_langs=["es", "fr", "en", "ja"])
    exact = searcher.search_vectors(np.stack(expected), k=5)
    assert [[h.docid for h in row] for row in hits] == [[h.docid for h in row] for row in exact]
    assert searcher.translate.stats == {"queries": 8, "translated": 6, "translations": 8}


def test_a_language_filter_limits_the_translations(index, encoder):
    translator = FakeTranslator()
    searcher = Searcher(index, encoder=encoder, translator=translator)
    searcher.search(["bonjour"], k=3, langs=["es"], query_langs=["fr"])
    assert [call[2] for call in translator.calls] == ["es"]


def test_no_translate_and_untranslatable_queries_search_as_before(index, encoder):
    plain = Searcher(index, encoder=encoder, translate=False)
    assert plain.translate is None
    np.testing.assert_allclose(plain.query_vectors(["hola"], ["es"]), encoder.vector("hola")[None], atol=1e-7)


def test_queries_without_a_language_are_guessed(index, encoder):
    class Guesser:
        def guess(self, text):
            return "es" if "hola" in text else None

    from xretrieve.translate import TranslateTest

    test = TranslateTest({"weight": 0.5}, ["en", "es"], translator=FakeTranslator(), guesser=Guesser())
    vectors = test.query_vectors(encoder, ["hola", "???"], None)
    np.testing.assert_allclose(vectors[0], oracle(encoder, "hola", ["[en] hola"], 0.5), atol=1e-6)
    np.testing.assert_allclose(vectors[1], encoder.vector("???"), atol=1e-7)


def test_by_default_a_query_goes_to_the_biggest_reachable_document_language(encoder):
    from xretrieve.translate import TranslateTest

    translator = FakeTranslator()
    test = TranslateTest({"weight": 0.5}, {"ja": 500, "es": 300, "en": 200}, translator=translator)
    assert test.translations("bonjour", "fr") == ["[es] bonjour"]  # ja has more documents but no route
    assert test.translations("hola", "es") == ["[en] hola"]  # never its own language
    assert test.translations("bonjour", "fr", langs=["en"]) == ["[en] bonjour"]
    every = TranslateTest({"weight": 0.5, "max_targets": 0}, {"ja": 5, "es": 3, "en": 2}, translator=translator)
    assert every.translations("bonjour", "fr") == ["[es] bonjour", "[en] bonjour"]


def test_combine_is_the_weighted_mean_renormalised():
    q, t1, t2 = np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.0, -1.0])
    np.testing.assert_allclose(combine(q, [t1], 0.5), [2**-0.5, 2**-0.5])
    np.testing.assert_allclose(combine(q, [t1, t2], 0.5), [1.0, 0.0])  # translations that cancel leave q
    np.testing.assert_allclose(combine(q, [], 0.9), q)


def test_bad_translate_settings_are_refused(tmp_path, encoder, index):
    with pytest.raises(UserError, match="--translate-weight 1.5"):
        IndexConfig(out="x", corpus="c", translate="apertium", translate_weight=1.5)
    with pytest.raises(UserError, match="only backend is apertium"):
        IndexConfig(out="x", corpus="c", translate="google")
    manifest = json.loads((index / "manifest.json").read_text())
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in index.iterdir():
        if path.is_file():
            (broken / path.name).write_bytes(path.read_bytes())
    manifest["translate"] = {"backend": "apertium", "weight": "high"}
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="weight 'high'"):
        Searcher(broken, encoder=encoder, translator=FakeTranslator())


def test_a_rerun_with_other_translate_settings_rewrites_only_the_manifest(tmp_path, encoder):
    corpus = write_corpus(tmp_path / "corpus.jsonl", 40, langs=("en", "es"))
    out = tmp_path / "index"
    build_index(IndexConfig(out=str(out), corpus=str(corpus), factory="Flat", progress=False), encoder=encoder)
    shard = (out / "shard-00000.faiss").stat().st_mtime_ns
    calls = encoder.calls
    build_index(
        IndexConfig(out=str(out), corpus=str(corpus), factory="Flat", progress=False, translate="apertium"),
        encoder=encoder,
    )
    assert encoder.calls == calls and (out / "shard-00000.faiss").stat().st_mtime_ns == shard
    assert json.loads((out / "manifest.json").read_text())["translate"]["backend"] == "apertium"


def test_apertium_pipelines_stay_up_and_pivot():
    engine = apertium_or_skip()
    translator = QueryTranslator(engine)
    try:
        assert translator.translate("The dog eats meat.", "en", "es") == "El perro come carne."
        # fr has no pair to it here: fr -> es -> it, through two long-lived pipelines
        via = translator.translate("Le chien mange.", "fr", "it")
        assert via and via == translator.translate(translator.translate("Le chien mange.", "fr", "es"), "es", "it")
        # characters that mean something in Apertium's stream format come back as they went in
        assert translator.translate("a [b] ^c$ / {d} x\0y", "en", "es") == "Un [b] ^c$ / {d} x y"
        pipes = translator.engine.pipes
        pids = {mode: pipe.process.pid for mode, pipe in pipes.items()}
        translator.translate("The cat.", "en", "es")
        assert {mode: pipe.process.pid for mode, pipe in pipes.items()} == pids
        # many texts at once, more than a pipe buffer holds, come back in order
        many = [f"The dog number {i} eats meat." for i in range(3000)]
        out = engine.translate(many, "eng-spa")
        assert len(out) == 3000 and out[1234] == "El número de perro 1234 come carne."
    finally:
        translator.close()
    assert all(pipe.process.poll() is not None for pipe in pipes.values()) or not pipes
    assert translator.translate("The dog.", "ja", "es") is None  # no route: nothing started


def test_search_cli_translates_and_no_translate_turns_it_off(tmp_path, tiny_model):
    apertium_or_skip()
    corpus = tmp_path / "corpus.jsonl"
    docs = [("d1", "en", "The dog eats meat."), ("d2", "es", "El gato duerme."), ("d3", "en", "The city library.")]
    corpus.write_text("".join(json.dumps({"id": i, "lang": lang, "text": t}) + "\n" for i, lang, t in docs))
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"id": "q1", "text": "El perro come carne.", "lang": "es"}) + "\n")
    index = tmp_path / "index"
    base = ["--quiet"]
    assert (
        main(
            [
                "index",
                "--corpus",
                str(corpus),
                "--out",
                str(index),
                "--model",
                str(tiny_model),
                "--translate",
                "apertium",
                *base,
            ]
        )
        == 0
    )
    assert (
        main(["search", "--index", str(index), "--queries", str(queries), "--out", str(tmp_path / "a.trec"), *base])
        == 0
    )
    assert (
        main(
            [
                "search",
                "--index",
                str(index),
                "--queries",
                str(queries),
                "--out",
                str(tmp_path / "b.trec"),
                "--no-translate",
                *base,
            ]
        )
        == 0
    )
    translated = json.loads((tmp_path / "a.trec.json").read_text())["translate"]
    assert translated == {"queries": 1, "translated": 1, "translations": 1}
    assert json.loads((tmp_path / "b.trec.json").read_text())["translate"] is None
    assert (tmp_path / "a.trec").read_text() != (tmp_path / "b.trec").read_text()


def test_language_guessing_with_lingua():
    pytest.importorskip("lingua")
    from xretrieve.translate import LanguageGuesser

    guesser = LanguageGuesser(["en", "es", "fr", "de"])
    assert guesser.guess("¿Dónde está la biblioteca de la ciudad?") == "es"
    assert guesser.guess("Où se trouve la bibliothèque de la ville ?") == "fr"
    assert LanguageGuesser(["en"]).guess("anything") == "en"


def test_an_index_that_translates_needs_apertium_or_no_translate(index, encoder, tmp_path):
    script = (
        "import shutil, sys; shutil.which = lambda name, *a, **k: None\n"
        "from xretrieve.cli import main\n"
        f"sys.exit(main(['search', '--index', {str(index)!r}, '--queries', {str(tmp_path / 'q.tsv')!r}, "
        f"'--out', {str(tmp_path / 'r.trec')!r}]))\n"
    )
    (tmp_path / "q.tsv").write_text("q1\thola\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 2
    assert "pass --no-translate" in done.stderr


def test_the_server_translates_with_the_request_query_lang(index, encoder):
    from fastapi.testclient import TestClient

    from xretrieve.server import ServerConfig, create_app

    translator = FakeTranslator()
    config = ServerConfig(index=str(index))
    app = create_app(config, load_searcher=lambda: Searcher(index, encoder=encoder, translator=translator))
    with TestClient(app) as client:
        for _ in range(200):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        body = {"queries": ["hola mundo", "bonjour"], "query_lang": "es", "k": 4, "fields": []}
        answer = client.post("/v1/search", json=body)
        assert answer.status_code == 200
        expected = Searcher(index, encoder=encoder, translator=FakeTranslator()).search(
            ["hola mundo", "bonjour"], k=4, query_langs=["es", "es"]
        )
        got = [[h["id"] for h in r["hits"]] for r in answer.json()["results"]]
        assert got == [[h.docid for h in row] for row in expected]
        assert ("hola mundo", "es", "en") in translator.calls
        filtered = client.post("/v1/search", json={"query": "hola", "query_lang": "es", "lang": ["ja"]})
        assert filtered.status_code == 200 and not any(call[0] == "hola" for call in translator.calls)  # ja: no route
        info = client.get("/v1/info").json()["translate"]
        assert info["weight"] == 0.25 and info["stats"]["translated"] == 2


def test_a_query_and_its_translations_are_encoded_in_one_batch(index, encoder):
    class Recording(FakeEncoder):
        def __init__(self):
            super().__init__(dim=16)
            self.batches = []

        def encode_queries(self, texts, batch_size=32, progress=False):
            self.batches.append((len(texts), batch_size))
            return super().encode_queries(texts, batch_size, progress)

    recording = Recording()
    searcher = Searcher(index, encoder=recording, translator=FakeTranslator())
    searcher.query_vectors(["bonjour"], ["fr"], batch_size=1)  # what the server asks for one query
    assert recording.batches == [(3, 3)]  # the query and its two translations together, not one at a time


def test_serve_on_ray_says_it_does_not_translate(index, monkeypatch, capsys):
    import xretrieve.ray.serving
    from xretrieve.ray import serve
    from xretrieve.serve import ServerConfig

    served = []
    monkeypatch.setattr(xretrieve.ray.serving, "serve_on_ray", served.append)
    serve(ServerConfig(index=str(index), ray="local"))
    assert served and "serve --ray searches queries as they are" in capsys.readouterr().err
    serve(ServerConfig(index=str(index), ray="local", translate=False))
    assert len(served) == 2 and capsys.readouterr().err == ""


def test_a_query_whose_language_cannot_be_guessed_is_a_4xx_for_its_request_alone(index, encoder):
    from fastapi.testclient import TestClient

    from xretrieve.server import ServerConfig, _Chunk, _Request, _search_batch, create_app

    class NoGuesser:
        def guess(self, text):
            raise UserError("queries without a language need lingua-language-detector to guess it")

    def searcher():
        found = Searcher(index, encoder=encoder, translator=FakeTranslator())
        found.translate._guesser = NoGuesser()
        return found

    app = create_app(ServerConfig(index=str(index)), load_searcher=searcher)
    with TestClient(app) as client:
        for _ in range(200):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        unknown = client.post("/v1/search", json={"query": "hola"})
        assert unknown.status_code == 422 and "lingua" in unknown.json()["error"]
        assert client.post("/v1/search", json={"query": "hola", "query_lang": "es"}).status_code == 200
    # in one encode batch with another request, only the request without a language gets the error
    shared = searcher()
    chunks = [_Chunk(_Request(shared, 1, 3, None, None, query_lang), 0, ["hola"], 1) for query_lang in ("es", None)]
    answers = _search_batch(chunks)
    assert isinstance(answers[1], UserError) and len(answers[0][0]) == 3
