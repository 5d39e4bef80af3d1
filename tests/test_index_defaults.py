"""The default index: which factory the size rule picks, search settings from the manifest, recall of the defaults."""

import json

import numpy as np
import pytest
from conftest import FakeEncoder, write_corpus

from xretrieve.config import EncodeConfig, IndexConfig
from xretrieve.encode import Embeddings, encode_corpus
from xretrieve.index import DEFAULT_NPROBE, FLAT_MAX_ROWS, auto_factory, build_index, index_layers
from xretrieve.search import Searcher


def embeddings_of(folder, rows, encoder, shards=1):
    corpus = write_corpus(folder / "corpus.jsonl", rows)
    config = EncodeConfig(corpus=str(corpus), out=str(folder / "emb"), num_shards=shards, progress=False)
    return Embeddings(encode_corpus(config, encoder=encoder))


def build(embeddings, out, **kw):
    return build_index(IndexConfig(out=str(out), embeddings=str(embeddings.folder), progress=False, **kw))


def ivf_layer(index):
    import faiss

    return next(layer for layer in index_layers(index) if isinstance(layer, faiss.IndexIVF))


def exact_top10(embeddings, queries):
    vectors = np.concatenate([np.asarray(embeddings.vectors(s), np.float32) for s in range(len(embeddings.shards))])
    ids = np.array([i for s in range(len(embeddings.shards)) for i in embeddings.ids(s)])
    return [set(ids[np.argsort(-(vectors @ q), kind="stable")[:10]]) for q in queries]


@pytest.mark.parametrize(
    ("rows", "factory"),
    [
        (1, "Flat"),
        (504, "Flat"),
        (FLAT_MAX_ROWS, "Flat"),
        (FLAT_MAX_ROWS + 1, "IVF1024,SQfp16"),  # 4 * sqrt(50,001) = 894 lists, rounded to a power of two
        (1_000_000, "IVF4096,SQfp16"),  # the setting benchmarks/index_curve.py chose
        (10_000_000, "IVF16384,SQfp16"),
    ],
)
def test_default_factory_rule(rows, factory):
    assert auto_factory(rows) == factory


def test_the_rule_leaves_enough_vectors_to_train_every_list():
    # faiss wants 39 training vectors per IVF list; the rule must never ask for more lists than that allows
    for rows in range(FLAT_MAX_ROWS + 1, 4_000_000, 7919):
        nlist = int(auto_factory(rows).split(",")[0][3:])
        assert 39 * nlist <= rows


def test_small_corpus_gets_exact_search(tmp_path):
    encoder = FakeEncoder(dim=16)
    embeddings = embeddings_of(tmp_path, 504, encoder, shards=2)
    out = build(embeddings, tmp_path / "idx")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["factory"] == "Flat" and manifest["search_params"] == ""
    queries = np.stack([encoder.vector(f"q{i}") for i in range(20)])
    got = Searcher(out, encoder=encoder).search_vectors(queries, k=10)
    assert [{h.docid for h in hits} for hits in got] == exact_top10(embeddings, queries)


def test_search_settings_come_from_the_manifest(tmp_path):
    encoder = FakeEncoder(dim=16)
    embeddings = embeddings_of(tmp_path, 3000, encoder)
    out = build(embeddings, tmp_path / "idx", factory="IVF64,SQ8")
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["search_params"] == f"nprobe={DEFAULT_NPROBE}"
    assert ivf_layer(Searcher(out, encoder=encoder).shards[0].index).nprobe == DEFAULT_NPROBE

    manifest["search_params"] = "nprobe=3"  # an index folder tuned by hand keeps its setting
    manifest_path.write_text(json.dumps(manifest))
    assert ivf_layer(Searcher(out, encoder=encoder).shards[0].index).nprobe == 3
    overridden = Searcher(out, encoder=encoder, search_params="nprobe=7")
    assert ivf_layer(overridden.shards[0].index).nprobe == 7


def test_default_settings_reach_the_recall_target_on_clustered_data(tmp_path):
    # above FLAT_MAX_ROWS the default is IVF + float16; on clustered vectors its recall@10 must stay >= 0.95
    encoder = FakeEncoder(dim=32, clusters=1000)
    embeddings = embeddings_of(tmp_path, FLAT_MAX_ROWS + 10_000, encoder)
    out = build(embeddings, tmp_path / "idx")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["factory"] == "IVF1024,SQfp16" and manifest["search_params"] == f"nprobe={DEFAULT_NPROBE}"
    queries = np.stack([encoder.vector(f"held-out query {i}") for i in range(200)])
    got = Searcher(out, encoder=encoder).search_vectors(queries, k=10)
    truth = exact_top10(embeddings, queries)
    recall = np.mean([len({h.docid for h in hits} & t) / 10 for hits, t in zip(got, truth, strict=True)])
    assert recall >= 0.95
