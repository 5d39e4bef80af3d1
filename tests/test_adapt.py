"""`xretrieve adapt`: the whole recipe on a tiny model, with Apertium (three small pairs, as CI installs)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_qgen import apertium_or_skip

from xretrieve.cli import main
from xretrieve.config import AdaptConfig
from xretrieve.encode import Embeddings
from xretrieve.errors import UserError
from xretrieve.search import Searcher

DOCS = [
    ("en1", "en", "The dog eats meat in the house."),
    ("en2", "en", "The city library opens in the morning."),
    ("es1", "es", "El gato duerme en la casa."),
    ("es2", "es", "La biblioteca de la ciudad está cerrada."),
    ("fr1", "fr", "Le chien mange de la viande."),
    ("ja1", "ja", "犬は肉を食べる。"),
]


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, tiny_model):
    apertium_or_skip()
    folder = tmp_path_factory.mktemp("adapt")
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "lang": lang, "text": t}) + "\n" for i, lang, t in DOCS))
    out = folder / "index"
    args = ["adapt", "--corpus", str(corpus), "--out", str(out), "--langs", "en,es,fr", "--model", str(tiny_model)]
    assert main([*args, "--train-steps", "2", "--train-batch-size", "2", "--quiet"]) == 0
    return corpus, out, args


def test_adapt_builds_an_index_that_plain_search_uses_whole(adapted):
    corpus, out, _ = adapted
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["translate"] == {"backend": "apertium", "weight": 0.6, "targets": None, "max_targets": 1}
    recipe = manifest["adapt"]
    assert recipe["train_steps"] == 2 and recipe["alpha"] == 0.2 and recipe["translate"] is True
    for name in ("train.jsonl", "model", "generated.jsonl", "embeddings", "embeddings-aug"):
        assert (out / name).exists(), name
    assert set(recipe["seconds"]) == {"synthesize", "train", "generate-queries", "encode", "augment", "index"}
    # the index's model is the fine-tuned one, and plain search translates queries with it
    assert manifest["model"]["name"] == str((out / "model").resolve())
    searcher = Searcher(out)
    try:
        hits = searcher.search(["El perro come carne."], k=3, query_langs=["es"])
        assert len(hits[0]) == 3
        assert searcher.translate.stats["translated"] == 1
    finally:
        searcher.close()


def test_passages_no_pair_covers_keep_their_plain_vectors(adapted):
    _, out, _ = adapted
    plain, augmented = Embeddings(out / "embeddings"), Embeddings(out / "embeddings-aug")
    ids = plain.ids(0)
    assert ids == augmented.ids(0)
    before, after = np.asarray(plain.vectors(0)), np.asarray(augmented.vectors(0))
    generated = {json.loads(line)["docid"] for line in (out / "generated.jsonl").read_text().splitlines()}
    assert "ja1" not in generated and {"en1", "es1", "fr1"} <= generated
    for row, docid in enumerate(ids):
        same = np.array_equal(before[row], after[row])
        assert same == (docid not in generated), docid


def test_the_adapted_index_travels_with_its_model(adapted, tmp_path):
    _, out, _ = adapted
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    searcher = Searcher(moved, translate=False)
    assert Path(searcher.encoder.identity["name"]) == (moved / "model").resolve()
    assert [h.docid for h in searcher.search(["The dog"], k=2)[0]] == [
        h.docid for h in Searcher(out, translate=False).search(["The dog"], k=2)[0]
    ]


def test_a_rerun_finds_every_stage_done(adapted, capsys):
    _, out, args = adapted
    stamp = (out / "model" / "xretrieve.json").stat().st_mtime_ns
    assert main([*args, "--train-steps", "2", "--train-batch-size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "adapt: [1/6] synthesize" in printed and "adapt: [6/6] index" in printed
    assert (out / "model" / "xretrieve.json").stat().st_mtime_ns == stamp  # not trained again


def test_adapt_without_training_or_translation(tmp_path, tiny_model):
    apertium_or_skip()
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "lang": lang, "text": t}) + "\n" for i, lang, t in DOCS))
    out = tmp_path / "index"
    args = ["adapt", "--corpus", str(corpus), "--out", str(out), "--langs", "es", "--model", str(tiny_model)]
    assert main([*args, "--train-steps", "0", "--no-translate", "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["translate"] is None and not (out / "model").exists()
    assert manifest["model"]["name"] == str(tiny_model.resolve())


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"langs": []}, "--langs"),
        ({"langs": ["xx"]}, "unknown language code 'xx'"),
        ({"train_steps": -1}, "--train-steps -1"),
        ({"alpha": 2.0}, "--alpha 2.0"),
        ({"translate_weight": -0.1}, "--translate-weight -0.1"),
    ],
)
def test_bad_settings_are_refused(changes, message):
    with pytest.raises(UserError, match=message):
        AdaptConfig(**({"corpus": "c.jsonl", "out": "o", "langs": ["es"]} | changes))


def test_a_missing_corpus_fails_before_any_work(tmp_path, capsys):
    assert main(["adapt", "--corpus", str(tmp_path / "no.jsonl"), "--out", str(tmp_path / "o"), "--langs", "es"]) == 2
    assert "no.jsonl: no such file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_adapt_with_an_llm_endpoint_writes_its_queries_with_it(tmp_path, tiny_model):
    from test_synthesize import WORDED, StandIn, write_passages

    stand_in = StandIn()
    try:
        corpus = write_passages(tmp_path / "c.jsonl", WORDED)
        out = tmp_path / "index"
        args = ["adapt", "--corpus", str(corpus), "--out", str(out), "--langs", "es,sw", "--model", str(tiny_model)]
        flags = ["--llm", stand_in.url, "--llm-model", "tiny-chat", "--train-steps", "2", "--train-batch-size", "2"]
        assert main([*args, *flags, "--no-translate", "--quiet"]) == 0
    finally:
        stand_in.server.shutdown()
        stand_in.server.server_close()
    # synthesize (SAP prompts) and generate-queries (xQG prompts) both asked the endpoint: 5 passages x 2 languages
    prompts = stand_in.prompts()
    assert sum("Summary" in p for p in prompts) == 10 and len(prompts) == 20
    train_rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert {r["query"] for r in train_rows} >= {"what is zz alpha in Spanish?", "what is zz echo in Swahili?"}
    generated = [json.loads(line) for line in (out / "generated.jsonl").read_text().splitlines()]
    assert len(generated) == 10 and all(g["text"].startswith("what is zz ") for g in generated)
    recipe = json.loads((out / "manifest.json").read_text())["adapt"]
    assert recipe["backend"] == {"llm": stand_in.url, "llm_model": "tiny-chat"} and recipe["translate"] is False
