"""The default index (`--factory auto`): which factory the size rule picks, the search settings its manifest
records, and the language filter on the index type it picks. Small indexes: the size threshold is lowered."""

import json

import numpy as np
import pytest
from conftest import FakeEncoder, write_corpus

import xretrieve.index
from xretrieve.config import EncodeConfig, IndexConfig
from xretrieve.encode import Embeddings, encode_corpus
from xretrieve.errors import UserError
from xretrieve.index import DEFAULT_NPROBE, FLAT_MAX_ROWS, auto_factory, build_index, index_layers
from xretrieve.search import Searcher

CHOSEN = "IVF4096,SQfp16"  # what benchmarks/index_curve.py chose at 1 M x 384
# 90% en, 9% fi, 1% xx: a common, a rarer and a rare language
LANGS = ["en"] * 90 + ["fi"] * 9 + ["xx"]


def embeddings_of(folder, rows, encoder, shards=1, langs=LANGS):
    corpus = write_corpus(folder / "corpus.jsonl", rows, langs=langs)
    config = EncodeConfig(corpus=str(corpus), out=str(folder / "emb"), num_shards=shards, progress=False)
    return Embeddings(encode_corpus(config, encoder=encoder))


def build(embeddings, out, **kw):
    return build_index(IndexConfig(out=str(out), embeddings=str(embeddings.folder), progress=False, **kw))


@pytest.fixture
def small_threshold(monkeypatch):
    """Lets a few thousand rows count as large, so tests build the default large-shard index in a second."""
    monkeypatch.setattr(xretrieve.index, "FLAT_MAX_ROWS", 1000)


def ivf(index):
    import faiss

    return next(layer for layer in index_layers(index) if isinstance(layer, faiss.IndexIVF))


@pytest.mark.parametrize(
    ("rows", "factory"),
    [
        (1, "Flat"),
        (504, "Flat"),
        (FLAT_MAX_ROWS, "Flat"),
        (FLAT_MAX_ROWS + 1, "IVF1024,SQfp16"),  # 4 * sqrt(50,001) = 894 lists, rounded to a power of two
        (1_000_000, CHOSEN),
        (10_000_000, "IVF16384,SQfp16"),
    ],
)
def test_default_factory_rule(rows, factory):
    assert auto_factory(rows) == factory


def test_the_rule_leaves_enough_vectors_to_train_every_list():
    # faiss wants 39 training vectors per IVF list; the rule must never ask for more lists than that allows
    for rows in range(FLAT_MAX_ROWS + 1, 4_000_000, 7919):
        assert 39 * int(auto_factory(rows).split(",")[0][3:]) <= rows


def test_small_corpus_gets_exact_search(tmp_path):
    encoder = FakeEncoder(dim=16)
    embeddings = embeddings_of(tmp_path, 504, encoder, shards=2)
    out = build(embeddings, tmp_path / "idx")
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["factory"], manifest["search_params"], manifest["build"]["factory"]) == ("Flat", "", "auto")
    queries = np.stack([encoder.vector(f"q{i}") for i in range(20)])
    got = Searcher(out, encoder=encoder).search_vectors(queries, k=10)
    vectors = np.concatenate([np.asarray(embeddings.vectors(s), np.float32) for s in range(2)])
    ids = np.array(embeddings.ids(0) + embeddings.ids(1))
    assert [{h.docid for h in hits} for hits in got] == [set(ids[np.argsort(-(vectors @ q))[:10]]) for q in queries]


def test_large_shard_manifest_records_the_factory_built_and_its_search_setting(tmp_path, small_threshold):
    encoder = FakeEncoder(dim=16)
    out = build(embeddings_of(tmp_path, 3000, encoder, shards=2), tmp_path / "idx")
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["factory"] == auto_factory(1500) == "IVF128,SQfp16" and manifest["build"]["factory"] == "auto"
    assert manifest["search_params"] == f"nprobe={DEFAULT_NPROBE}"
    assert all(ivf(shard.index).nprobe == DEFAULT_NPROBE for shard in Searcher(out, encoder=encoder).shards)

    manifest["search_params"] = "nprobe=3"  # an index folder tuned by hand keeps its setting
    manifest_path.write_text(json.dumps(manifest))
    assert ivf(Searcher(out, encoder=encoder).shards[0].index).nprobe == 3
    assert ivf(Searcher(out, encoder=encoder, search_params="nprobe=7").shards[0].index).nprobe == 7


def test_auto_is_resolved_after_encoding_a_corpus_and_a_rerun_does_nothing(tmp_path, small_threshold):
    encoder = FakeEncoder(dim=16)
    corpus = write_corpus(tmp_path / "c.jsonl", 1200)
    config = IndexConfig(out=str(tmp_path / "idx"), corpus=str(corpus), progress=False)
    build_index(config, encoder=encoder)
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["factory"] == auto_factory(1200)
    calls = encoder.calls
    build_index(config, encoder=encoder)
    assert encoder.calls == calls


def test_a_bad_factory_fails_before_encoding_a_corpus(tmp_path):
    encoder = FakeEncoder(dim=16)
    config = IndexConfig(out=str(tmp_path / "idx"), corpus=str(write_corpus(tmp_path / "c.jsonl", 10)), factory="X")
    with pytest.raises(UserError, match="unknown factory string 'X'"):
        build_index(config, encoder=encoder)
    assert encoder.calls == 0


@pytest.mark.parametrize("nprobe", [DEFAULT_NPROBE, 1])
def test_language_filter_on_the_default_index(tmp_path, small_threshold, nprobe):
    encoder = FakeEncoder(dim=16)
    embeddings = embeddings_of(tmp_path, 4000, encoder)
    searcher = Searcher(build(embeddings, tmp_path / "idx"), encoder=encoder, search_params=f"nprobe={nprobe}")
    shard = searcher.shards[0]
    assert searcher.manifest["factory"] == auto_factory(4000) == "IVF256,SQfp16"
    vectors, docids = np.asarray(embeddings.vectors(0), np.float32), np.array(embeddings.ids(0))
    langs = np.array(embeddings.langs(0))
    queries = np.stack([encoder.vector(f"query {i}") for i in range(50)])
    for wanted, minimum in (
        (["en"], 0.95 if nprobe > 1 else 0.0),
        (["fi"], 0.99),
        (["xx"], 0.99),
        (["fi", "xx"], 0.99),
    ):
        rows = np.flatnonzero(np.isin(langs, wanted))
        truth = [set(docids[rows[np.argsort(-(vectors[rows] @ q))[:10]]]) for q in queries]  # brute force
        got = searcher.search_vectors(queries, k=10, langs=wanted)
        assert all(len(hits) == 10 and {h.lang for h in hits} <= set(wanted) for hits in got)
        recall = np.mean([len({h.docid for h in hits} & t) / 10 for hits, t in zip(got, truth, strict=True)])
        assert recall >= minimum, (wanted, recall)
    # the probed lists hold about 4000 * nprobe / 256 rows: smaller subsets are scanned; a probe of one list
    # finds few of the 360 fi or 40 xx rows, and the queries it leaves short are scanned (hence exact recall)
    assert shard.filter(frozenset(["en"])).params is not None
    for small in ("fi", "xx"):
        assert (shard.filter(frozenset([small])).params is None) == (nprobe == DEFAULT_NPROBE)


@pytest.mark.parametrize("ef_search", [128, 8])  # 8: even the common language takes the (widened) walk
def test_language_filter_on_a_graph_finds_k_rows_of_a_rare_language(tmp_path, ef_search):
    # a graph walk with a selector stops after efSearch candidates, selected or not: without widening it and
    # scanning the stored codes of small subsets, a 1% language got about 2 of 10 hits
    encoder = FakeEncoder(dim=16)
    embeddings = embeddings_of(tmp_path, 4000, encoder)
    out = build(embeddings, tmp_path / "idx", factory="HNSW32,SQ8")
    searcher = Searcher(out, encoder=encoder, search_params=f"efSearch={ef_search}")
    shard = searcher.shards[0]
    stored = shard.index.storage.reconstruct_n(0, shard.index.ntotal)  # the oracle sees the 8-bit codes
    docids, langs = np.array(shard.docids), np.array(shard.langs, dtype=str)
    queries = np.stack([encoder.vector(f"query {i}") for i in range(50)])
    for wanted, minimum in ((["en"], 0.9), (["fi"], 0.99), (["xx"], 0.99)):
        rows = np.flatnonzero(np.isin(langs, wanted))
        truth = [set(docids[rows[np.argsort(-(stored[rows] @ q))[:10]]]) for q in queries]
        got = searcher.search_vectors(queries, k=10, langs=wanted)
        assert all(len(hits) == 10 and {h.lang for h in hits} <= set(wanted) for hits in got)
        recall = np.mean([len({h.docid for h in hits} & t) / 10 for hits, t in zip(got, truth, strict=True)])
        assert recall >= minimum, (wanted, recall)
    assert (shard.filter(frozenset(["en"])).params is None) == (ef_search == 128)  # 3,600 rows: a scan is cheaper
    assert shard.filter(frozenset(["xx"])).params is None
