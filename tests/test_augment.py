"""augment: fusion checked against a numpy oracle (sum and mean, language weights, renormalisation), streaming
shard by shard with resume, and the chain generate-queries -> augment -> index -> search/serve."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FakeEncoder, write_corpus

from xretrieve import cli
from xretrieve.config import AugmentConfig, EncodeConfig, parse_lang_weights
from xretrieve.encode import Embeddings, encode_corpus
from xretrieve.errors import UserError
from xretrieve.manifest import read_manifest, sha256_file
from xretrieve.xqg.augment import augment_embeddings

QUERIES = [  # (docid, lang, text): unsorted, a passage with many, an unknown docid, a language weighted 0 below
    ("d5", "es", "el perro"),
    ("d0", "es", "zorro marron"),
    ("d5", "de", "der hund"),
    ("d0", "de", "fuchs"),
    ("nope", "es", "no such passage"),
    ("d11", "fi", "vesi"),
    ("d5", "es", "perro perezoso"),
    ("d7", "ja", "ignored language"),
    ("d0", "es", "salta"),
]


@pytest.fixture
def setup(tmp_path):
    encoder = FakeEncoder(dim=8)
    corpus = write_corpus(tmp_path / "corpus.jsonl", 13)
    emb = tmp_path / "emb"
    encode_corpus(EncodeConfig(corpus=str(corpus), out=str(emb), num_shards=3, progress=False), encoder=encoder)
    generated = tmp_path / "genq.jsonl"
    generated.write_text(
        "".join(json.dumps({"docid": d, "lang": lang, "text": t, "generator": "hand"}) + "\n" for d, lang, t in QUERIES)
    )
    return encoder, emb, generated


def all_vectors(folder: Path) -> tuple[list[str], np.ndarray]:
    embeddings = Embeddings(folder)
    ids = [d for i in range(len(embeddings.shards)) for d in embeddings.ids(i)]
    return ids, np.concatenate([np.asarray(embeddings.vectors(i)) for i in range(len(embeddings.shards))])


def oracle(encoder, ids, passages, alpha, mode, lang_weights, renormalize):
    """Straight from the formula, one passage at a time."""
    expected = passages.copy()
    for row, doc_id in enumerate(ids):
        mine = [(lang, t) for d, lang, t in QUERIES if d == doc_id and lang_weights.get(lang, 1.0) > 0]
        if not mine:
            continue
        w = np.array([lang_weights.get(lang, 1.0) for lang, _ in mine])
        q = np.stack([encoder.vector(t) for _, t in mine])
        added = (w[:, None] * q).sum(0) / (w.sum() if mode == "mean" else 1.0)
        fused = (1 - alpha) * passages[row] + alpha * added
        expected[row] = fused / np.linalg.norm(fused) if renormalize else fused
    return expected


@pytest.mark.parametrize(
    "alpha,mode,lang_weights,renormalize",
    [
        (0.01, "sum", {}, False),
        (0.3, "sum", {"de": 0.5, "ja": 0.0}, False),
        (0.3, "mean", {}, False),
        (0.5, "mean", {"es": 2.0, "ja": 0.0, "ko": 1.0}, True),
    ],
)
def test_fusion_matches_a_numpy_oracle(setup, tmp_path, alpha, mode, lang_weights, renormalize):
    encoder, emb, generated = setup
    out = tmp_path / "aug"
    config = AugmentConfig(
        embeddings=str(emb),
        generated=str(generated),
        out=str(out),
        alpha=alpha,
        mode=mode,
        lang_weights=lang_weights,
        renormalize=renormalize,
        batch_size=2,  # several chunks per shard
        progress=False,
    )
    augment_embeddings(config, encoder=encoder)
    ids, passages = all_vectors(emb)
    out_ids, fused = all_vectors(out)
    assert out_ids == ids
    expected = oracle(encoder, ids, passages, alpha, mode, lang_weights, renormalize)
    np.testing.assert_allclose(fused, expected, rtol=1e-5, atol=1e-6)
    augmented = {"d0", "d5", "d11"} | ({"d7"} if lang_weights.get("ja", 1.0) > 0 else set())
    untouched = [i for i, d in enumerate(ids) if d not in augmented]
    assert np.array_equal(fused[untouched], passages[untouched])  # exactly unchanged, not merely close
    assert not np.allclose(
        fused[[ids.index(d) for d in sorted(augmented)]], passages[[ids.index(d) for d in sorted(augmented)]]
    )
    manifest = read_manifest(out, "embeddings")
    assert manifest["augment"]["alpha"] == alpha and manifest["augment"]["mode"] == mode
    assert manifest["augment"]["passages_augmented"] == len(augmented)
    assert manifest["augment"]["queries_not_used"] == 1 + (1 if lang_weights.get("ja") == 0 else 0)
    assert manifest["parents"][0]["manifest_sha256"] == sha256_file(emb / "manifest.json")
    assert manifest["parents"][1]["sha256"] == sha256_file(generated)
    assert manifest["model"] == read_manifest(emb, "embeddings")["model"]
    assert manifest["normalized"] is renormalize


class DyingEncoder(FakeEncoder):
    def __init__(self, calls: int):
        super().__init__(dim=8)
        self.left = calls

    def encode_queries(self, texts, batch_size=32, progress=False):
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        return super().encode_queries(texts, batch_size, progress)


def test_resume_after_a_kill_and_one_shard_at_a_time(setup, tmp_path):
    encoder, emb, generated = setup

    def config(out, shard=None):
        return AugmentConfig(
            embeddings=str(emb), generated=str(generated), out=str(out), alpha=0.2, shard=shard, progress=False
        )

    whole = augment_embeddings(config(tmp_path / "whole"), encoder=encoder)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        augment_embeddings(config(out), encoder=DyingEncoder(calls=1))  # dies encoding shard 1's queries
    assert (out / "shard-00000.json").is_file() and not (out / "shard-00001.json").exists()
    assert not (out / "manifest.json").exists()
    finishing = DyingEncoder(calls=10)
    augment_embeddings(config(out), encoder=finishing)
    assert finishing.left == 10 - 2  # shard 0 was kept; shards 1 and 2 had queries to encode
    assert np.array_equal(all_vectors(out)[1], all_vectors(whole)[1])
    assert not list(out.glob(".*sums*"))  # running sums are removed
    one_by_one = tmp_path / "one_by_one"
    for i in (2, 0, 1):
        augment_embeddings(config(one_by_one, (i, 3)), encoder=encoder)
    assert np.array_equal(all_vectors(one_by_one)[1], all_vectors(whole)[1])
    with pytest.raises(UserError, match="has 3 shards"):
        augment_embeddings(config(tmp_path / "x", (0, 2)), encoder=encoder)


def test_bad_inputs(setup, tmp_path):
    encoder, emb, generated = setup
    stray = tmp_path / "stray.jsonl"
    stray.write_text(json.dumps({"docid": "zzz", "lang": "es", "text": "nothing"}) + "\n")
    with pytest.raises(UserError, match="no generated query names a passage"):
        augment_embeddings(AugmentConfig(str(emb), str(stray), str(tmp_path / "a"), progress=False), encoder=encoder)
    with pytest.raises(UserError, match="must differ"):
        augment_embeddings(AugmentConfig(str(emb), str(generated), str(emb), progress=False), encoder=encoder)
    with pytest.raises(UserError, match="alpha"):
        AugmentConfig(str(emb), str(generated), str(tmp_path / "b"), alpha=1.5)
    with pytest.raises(UserError, match="LANG=WEIGHT"):
        parse_lang_weights("es=1,fr")
    assert parse_lang_weights("es=1, fr=0.5") == {"es": 1.0, "fr": 0.5}


def test_chain_generate_augment_index_search_serve(tiny_model, tmp_path):
    """The CLI chain with real models: a tiny T5 writes queries, a tiny BERT encodes them; search and serve the
    augmented index unchanged."""
    from fastapi.testclient import TestClient

    from xretrieve.server import ServerConfig, create_app
    from xretrieve.xqg.train_generator import init_t5

    corpus = write_corpus(tmp_path / "corpus.jsonl", 12)
    texts = [json.loads(line)["text"] for line in corpus.read_text().splitlines()]
    t5 = init_t5(texts, tmp_path / "t5", vocab_size=80, d_model=32, layers=1)
    model = str(tiny_model)
    steps = [
        ["encode", "--corpus", str(corpus), "--out", str(tmp_path / "emb"), "--model", model, "--shards", "2"],
        ["generate-queries", "--corpus", str(corpus), "--out", str(tmp_path / "genq.jsonl"), "--langs", "es,de"]
        + ["--generator", str(t5), "--num-queries", "2", "--max-new-tokens", "4"],
        ["augment", "--embeddings", str(tmp_path / "emb"), "--generated", str(tmp_path / "genq.jsonl")]
        + ["--out", str(tmp_path / "emb-aug"), "--alpha", "0.5", "--mode", "mean"],
        ["index", "--embeddings", str(tmp_path / "emb-aug"), "--out", str(tmp_path / "idx")],
    ]
    for step in steps:
        assert cli.main([*step, "--quiet"]) == 0, step
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"id": "q1", "text": texts[3]}) + "\n")
    run = tmp_path / "run.trec"
    assert cli.main(["search", "--index", str(tmp_path / "idx"), "--queries", str(queries), "--out", str(run)]) == 0
    lines = run.read_text().splitlines()
    assert len(lines) == 12 and lines[0].split()[0] == "q1"
    # the augmented vectors are what the index holds: its top scores are theirs, not the originals'
    _, fused = all_vectors(tmp_path / "emb-aug")
    _, original = all_vectors(tmp_path / "emb")
    assert not np.allclose(fused, original)
    from xretrieve.search import Searcher

    searcher = Searcher(tmp_path / "idx")
    # the index says how its vectors were augmented: documents added later without the recipe count as not
    assert searcher.manifest["augment"]["alpha"] == 0.5 and searcher.manifest["augment"]["mode"] == "mean"
    query = searcher.encoder.encode_queries([texts[3]])
    top = searcher.search_vectors(query, k=1)[0][0]
    assert top.score == pytest.approx(float((fused @ query[0]).max()), abs=1e-5)
    with TestClient(create_app(ServerConfig(index=str(tmp_path / "idx")), load_searcher=lambda: searcher)) as client:
        for _ in range(100):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.1)
        hits = client.post("/v1/search", json={"query": texts[3], "k": 3}).json()["hits"]
    assert hits[0]["id"] == top.docid
