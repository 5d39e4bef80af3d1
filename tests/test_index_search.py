import json

import numpy as np
import pytest
from conftest import FakeEncoder, write_corpus

from xretrieve.config import EncodeConfig, IndexConfig
from xretrieve.encode import Embeddings, encode_corpus
from xretrieve.errors import UserError
from xretrieve.index import build_index
from xretrieve.search import Searcher


@pytest.fixture(scope="module")
def encoder():
    return FakeEncoder(dim=16)


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory, encoder):
    folder = tmp_path_factory.mktemp("emb")
    corpus = write_corpus(folder / "corpus.jsonl", 2000)
    config = EncodeConfig(corpus=str(corpus), out=str(folder / "emb"), num_shards=3, progress=False)
    return Embeddings(encode_corpus(config, encoder=encoder))


@pytest.fixture(scope="module")
def queries(encoder):
    rng = np.random.default_rng(3)
    return np.stack([encoder.vector(f"query {i} {rng.random()}") for i in range(50)])


def brute_force(embeddings, queries, k, langs=None):
    """The oracle: exact inner products over all shards at once, ties broken by docid."""
    vectors = np.concatenate([np.asarray(embeddings.vectors(s), np.float32) for s in range(3)])
    ids = [i for s in range(3) for i in embeddings.ids(s)]
    doc_langs = [x for s in range(3) for x in embeddings.langs(s)]
    keep = np.array([langs is None or lang in langs for lang in doc_langs])
    results = []
    for q in queries:
        scores = vectors @ q
        order = sorted((i for i in range(len(ids)) if keep[i]), key=lambda i: (-scores[i], ids[i]))[:k]
        results.append([(ids[i], float(scores[i])) for i in order])
    return results


def assert_same_ranking(got, expected):
    """Equal to the oracle; two documents may swap only where float rounding makes their scores a tie."""
    for hits, reference in zip(got, expected, strict=True):
        np.testing.assert_allclose([h.score for h in hits], [s for _, s in reference], rtol=1e-5)
        for hit, (doc_id, score) in zip(hits, reference, strict=True):
            assert hit.docid == doc_id or abs(hit.score - score) < 1e-5


def build(embeddings, out, factory="Flat", **kw):
    return build_index(
        IndexConfig(out=str(out), embeddings=str(embeddings.folder), factory=factory, progress=False, **kw)
    )


def test_flat_over_shards_equals_brute_force(embeddings, queries, encoder, tmp_path):
    searcher = Searcher(build(embeddings, tmp_path / "idx"), encoder=encoder)
    assert len(searcher.shards) == 3
    assert_same_ranking(searcher.search_vectors(queries, k=10), brute_force(embeddings, queries, 10))


def recall(got, expected):
    return np.mean([len({h.docid for h in g} & {d for d, _ in e}) / len(e) for g, e in zip(got, expected, strict=True)])


@pytest.mark.parametrize(
    ("factory", "minimum"),
    [
        ("HNSW16", 0.95),
        ("IVF16,Flat", 0.95),
        ("IVF16,PQ8", 0.5),
        ("IVF16,PQ8,RFlat", 0.95),
        ("OPQ8,IVF16,PQ8,RFlat", 0.95),
    ],
)
def test_approximate_factories_against_brute_force(embeddings, queries, encoder, tmp_path, factory, minimum):
    out = build(embeddings, tmp_path / "idx", factory=factory)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["factory"] == factory and manifest["rows"] == 2000
    got = Searcher(out, encoder=encoder).search_vectors(queries, k=10)
    assert recall(got, brute_force(embeddings, queries, 10)) >= minimum


@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF16,PQ8,RFlat", "OPQ8,IVF16,PQ8"])
def test_language_filter(embeddings, queries, encoder, tmp_path, factory):
    searcher = Searcher(build(embeddings, tmp_path / "idx", factory=factory), encoder=encoder)
    got = searcher.search_vectors(queries, k=10, langs=["fi", "ja"])
    assert all(len(hits) == 10 and {h.lang for h in hits} <= {"fi", "ja"} for hits in got)
    if factory == "Flat":
        assert_same_ranking(got, brute_force(embeddings, queries, 10, langs={"fi", "ja"}))


def test_unknown_language_is_refused(embeddings, encoder, tmp_path):
    searcher = Searcher(build(embeddings, tmp_path / "idx"), encoder=encoder)
    with pytest.raises(UserError, match=r"no documents in xx .*it has: de, en, es, fi, ja"):
        searcher.search_vectors(np.zeros((1, 16), np.float32), langs=["xx"])


def test_unknown_factory_fails_before_writing(embeddings, tmp_path):
    with pytest.raises(UserError, match="unknown factory string 'Bogus32'"):
        build(embeddings, tmp_path / "idx", factory="Bogus32")
    assert not (tmp_path / "idx").exists()


def test_too_many_ivf_lists_for_the_sample(embeddings, tmp_path):
    with pytest.raises(UserError, match="4096 IVF lists but only 2000 vectors"):
        build(embeddings, tmp_path / "idx", factory="IVF4096,Flat")
    assert not (tmp_path / "idx" / "manifest.json").exists()


def test_cuda_without_faiss_gpu_is_a_clear_error(embeddings, tmp_path):
    import faiss

    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        pytest.skip("a GPU is present")
    with pytest.raises(UserError, match="--device cuda"):
        build(embeddings, tmp_path / "idx", device="cuda")


def test_tampered_index_shard_is_refused(embeddings, encoder, tmp_path):
    out = build(embeddings, tmp_path / "idx")
    with open(out / "shard-00001.faiss", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\0\0\1")
    with pytest.raises(UserError, match=r"shard-00001\.faiss: checksum mismatch"):
        Searcher(out, encoder=encoder)


def test_query_encoder_of_another_dimension_or_model_is_refused(embeddings, tmp_path):
    out = build(embeddings, tmp_path / "idx")
    with pytest.raises(UserError, match="dimension 16 but model .* encodes 8"):
        Searcher(out, encoder=FakeEncoder(dim=8))
    with pytest.raises(UserError, match="built with model 'fake'.*fingerprint"):
        Searcher(out, encoder=FakeEncoder(dim=16, seed=5))


def test_interrupted_index_build_resumes(embeddings, encoder, tmp_path):
    out = build(embeddings, tmp_path / "idx", factory="IVF16,Flat")
    first = (out / "shard-00000.faiss").stat().st_mtime_ns
    (out / "shard-00002.json").unlink()
    (out / "manifest.json").unlink()
    build(embeddings, out, factory="IVF16,Flat")
    assert (out / "shard-00000.faiss").stat().st_mtime_ns == first
    Searcher(out, encoder=encoder)


def test_ties_are_broken_by_docid_across_shards(tmp_path, encoder):
    corpus = tmp_path / "c.jsonl"
    rows = [{"id": doc_id, "text": "same words"} for doc_id in ("z", "m", "a", "q")]
    rows.append({"id": "other", "text": "different"})
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = build_index(
        IndexConfig(out=str(tmp_path / "idx"), corpus=str(corpus), num_shards=3, progress=False), encoder=encoder
    )
    assert not (out / "embeddings").exists()
    hits = Searcher(out, encoder=encoder).search(["same words"], k=4)[0]
    assert [h.docid for h in hits] == ["a", "m", "q", "z"]


def test_document_store_returns_texts_by_id(tmp_path, encoder):
    corpus = write_corpus(tmp_path / "c.jsonl", 30)
    out = build_index(
        IndexConfig(out=str(tmp_path / "idx"), corpus=str(corpus), num_shards=2, progress=False), encoder=encoder
    )
    searcher = Searcher(out, encoder=encoder)
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    for row in (rows[0], rows[17], rows[-1]):
        assert searcher.document(row["id"]) == {"id": row["id"], "title": "", "text": row["text"], "lang": row["lang"]}
    assert searcher.document("no-such-id") is None
    (out / "docs.jsonl").write_text("tampered\n")
    with pytest.raises(UserError, match=r"docs\.jsonl: checksum mismatch"):
        Searcher(out, encoder=encoder)


def test_index_without_its_corpus_has_no_texts(embeddings, encoder, tmp_path):
    import shutil

    moved = tmp_path / "emb"
    shutil.copytree(embeddings.folder, moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["corpus"]["path"] = str(tmp_path / "gone.jsonl")
    (moved / "manifest.json").write_text(json.dumps(manifest))
    searcher = Searcher(build(Embeddings(moved), tmp_path / "idx"), encoder=encoder)
    assert searcher.manifest["docs"] is None and searcher.document("d1") is None


def test_top_k_under_ties_is_a_prefix_of_a_larger_k(tmp_path, encoder):
    # six copies in one shard: faiss keeps whichever tied rows it meets first, so a cut at k
    # must look past the k-th row to let docids decide
    corpus = tmp_path / "c.jsonl"
    rows = [{"id": doc_id, "text": "same words"} for doc_id in ("f", "e", "d", "c", "b", "a")]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = build_index(IndexConfig(out=str(tmp_path / "idx"), corpus=str(corpus), progress=False), encoder=encoder)
    searcher = Searcher(out, encoder=encoder)
    by_k = {k: [h.docid for h in searcher.search(["same words"], k=k)[0]] for k in (1, 2, 3, 6)}
    assert by_k[6] == ["a", "b", "c", "d", "e", "f"]
    assert by_k[1] == ["a"] and by_k[2] == ["a", "b"] and by_k[3] == ["a", "b", "c"]


def test_a_tie_in_a_batch_searches_again_for_that_query_only(tmp_path, encoder):
    corpus = tmp_path / "c.jsonl"
    rows = [{"id": f"copy{i}", "text": "same words"} for i in range(6)]
    rows += [{"id": f"d{i}", "text": f"other words {i}"} for i in range(200)]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = build_index(IndexConfig(out=str(tmp_path / "idx"), corpus=str(corpus), progress=False), encoder=encoder)
    searcher = Searcher(out, encoder=encoder)
    texts = ["same words", "other words 3", "other words 7"]
    alone = [searcher.search([t], k=2)[0] for t in texts]
    shard = searcher.shards[0]
    searched = []
    search = shard._search
    shard._search = lambda vectors, fetch, wanted: searched.append(len(vectors)) or search(vectors, fetch, wanted)
    assert searcher.search(texts, k=2) == alone
    assert searched == [3, 1, 1]  # the batch, then the tied query alone: fetch 6 still ends on a copy, then 12
    assert [h.docid for h in alone[0]] == ["copy0", "copy1"]


def test_more_shards_than_documents(tmp_path, encoder):
    corpus = write_corpus(tmp_path / "c.jsonl", 2)
    out = build_index(
        IndexConfig(out=str(tmp_path / "idx"), corpus=str(corpus), num_shards=4, progress=False), encoder=encoder
    )
    hits = Searcher(out, encoder=encoder).search(["anything"], k=5)[0]
    assert sorted(h.docid for h in hits) == sorted(json.loads(line)["id"] for line in corpus.read_text().splitlines())


@pytest.mark.parametrize("factory", ["PQ4", "PQ4x4fs"])
def test_language_filter_on_indexes_without_selectors(embeddings, queries, encoder, tmp_path, factory):
    # flat PQ and fast-scan PQ reject faiss's ID selectors: they are filtered after the search instead
    searcher = Searcher(build(embeddings, tmp_path / "idx", factory=factory), encoder=encoder)
    total = sum(shard.index.ntotal for shard in searcher.shards)
    everything = searcher.search_vectors(queries[:10], k=total)
    filtered = searcher.search_vectors(queries[:10], k=7, langs=["fi", "ja"])
    for got, full in zip(filtered, everything, strict=True):
        assert [h.docid for h in got] == [h.docid for h in full if h.lang in ("fi", "ja")][:7]


def test_rerunning_index_from_a_corpus_does_no_work_and_other_settings_are_refused(tmp_path):
    encoder = FakeEncoder(dim=16)
    corpus = write_corpus(tmp_path / "c.jsonl", 300)
    config = IndexConfig(out=str(tmp_path / "idx"), corpus=str(corpus), factory="IVF4,Flat", progress=False)
    build_index(config, encoder=encoder)
    encodes = encoder.calls
    manifest = (tmp_path / "idx" / "manifest.json").read_bytes()
    build_index(config, encoder=encoder)
    assert encoder.calls == encodes and (tmp_path / "idx" / "manifest.json").read_bytes() == manifest
    config.seed = 1  # would train another quantizer: not silently mixed with the shards already there
    with pytest.raises(UserError, match=r"holds an index built with other settings \(seed\)"):
        build_index(config, encoder=encoder)
    config.seed, config.num_shards = 0, 2  # refused before encoding, not after, and leaves no embeddings behind
    with pytest.raises(UserError, match=r"holds an index built with other settings \(num_shards\)"):
        build_index(config, encoder=encoder)
    assert encoder.calls == encodes and not (tmp_path / "idx" / "embeddings").exists()


def test_an_unfinished_index_of_other_settings_is_refused_before_encoding(tmp_path):
    encoder = FakeEncoder(dim=16)
    corpus = write_corpus(tmp_path / "c.jsonl", 300)
    config = IndexConfig(out=str(tmp_path / "idx"), corpus=str(corpus), factory="Flat", progress=False)
    build_index(config, encoder=encoder)
    (tmp_path / "idx" / "manifest.json").unlink()  # as if killed before the manifest: shard records remain
    encodes = encoder.calls
    config.num_shards = 3
    with pytest.raises(UserError, match=r"shard-00000\.json: this folder holds a shard of a different index build"):
        build_index(config, encoder=encoder)
    assert encoder.calls == encodes and not (tmp_path / "idx" / "embeddings").exists()


def test_index_from_a_corpus_checks_device_and_factory_before_encoding(tmp_path):
    import faiss

    encoder = FakeEncoder(dim=16)
    corpus = write_corpus(tmp_path / "c.jsonl", 50)
    with pytest.raises(UserError, match="unknown factory string 'IVFX'"):
        build_index(IndexConfig(out=str(tmp_path / "a"), corpus=str(corpus), factory="IVFX"), encoder=encoder)
    if not hasattr(faiss, "StandardGpuResources"):
        with pytest.raises(UserError, match="--device cuda needs faiss-gpu"):
            build_index(IndexConfig(out=str(tmp_path / "b"), corpus=str(corpus), device="cuda"), encoder=encoder)
    assert encoder.calls == 0 and not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_failed_index_write_names_the_file(tmp_path, monkeypatch):
    import faiss

    write_index = faiss.write_index

    def full_disk(index, target, *flags):
        if not isinstance(target, str):  # serialize_index writes to memory through it: not a file
            return write_index(index, target, *flags)
        raise RuntimeError("Error in faiss::FileIOWriter::operator(): ret == (n) failed: write error")

    monkeypatch.setattr(faiss, "write_index", full_disk)
    corpus = write_corpus(tmp_path / "c.jsonl", 20)
    config = IndexConfig(out=str(tmp_path / "idx"), corpus=str(corpus), factory="Flat", progress=False)
    with pytest.raises(OSError) as failure:
        build_index(config, encoder=FakeEncoder(dim=16))
    assert failure.value.filename == str(tmp_path / "idx" / "shard-00000.faiss")
    assert "ret == (n) failed: write error" in failure.value.strerror
