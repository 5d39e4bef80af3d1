"""Live indexes: adds, replaces and deletes against a fresh build of the resulting corpus, the log's crash
behaviour, the writer lock and compaction (xretrieve/live.py, update.py, compact.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import WORDS, FakeEncoder, write_corpus

from xretrieve.compact import compact, index_info
from xretrieve.config import CompactConfig, IndexConfig
from xretrieve.errors import UserError
from xretrieve.formats import Document
from xretrieve.index import build_index
from xretrieve.live import Record, WriterLock, read_log, wal_path
from xretrieve.search import Searcher
from xretrieve.update import LiveWriter

LANGS = ("en", "es", "de", "fi", "ja")
QUERIES = [f"{w} {v}" for w, v in zip(WORDS[:12], WORDS[12:24], strict=False)]  # < 20: one faiss code path


def corpus_docs(path: Path) -> dict[str, Document]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["id"]: Document(r["id"], r["text"], "", r["lang"]) for r in rows}


def fresh_build(tmp_path: Path, docs: dict[str, Document], encoder, name: str, factory="Flat", shards=1) -> Searcher:
    corpus = tmp_path / f"{name}.jsonl"
    corpus.write_text("".join(json.dumps({"id": d.id, "text": d.text, "lang": d.lang}) + "\n" for d in docs.values()))
    out = tmp_path / name
    build_index(
        IndexConfig(out=str(out), corpus=str(corpus), factory=factory, num_shards=shards, progress=False), encoder
    )
    return Searcher(out, encoder=encoder)


def ranked(searcher: Searcher, k: int = 10, langs=None) -> list[list[tuple[str, float]]]:
    return [[(h.docid, h.score) for h in hits] for hits in searcher.search(QUERIES, k=k, langs=langs)]


def assert_same_results(ours: Searcher, fresh: Searcher) -> None:
    for langs in (None, ["es", "fi"]):
        for got, want in zip(ranked(ours, langs=langs), ranked(fresh, langs=langs), strict=True):
            assert [d for d, _ in got] == [d for d, _ in want]
            np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=0, atol=1e-5)
    assert ours.langs == fresh.langs


def random_changes(rng, docs: dict[str, Document], writer: LiveWriter, steps: int, start: int) -> None:
    """Random batches of adds, replaces and deletes, applied to the writer and to `docs` alike."""
    for step in range(steps):
        batch: dict[str, Document] = {}
        for j in range(int(rng.integers(1, 6))):
            existing = list(docs)
            if rng.random() < 0.5 or not existing:
                docid = f"n{start + step}_{j}"
            else:
                docid = str(rng.choice(existing))
            words = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 9))))
            batch[docid] = Document(docid, f"{words} {docid} v{step}", "", str(rng.choice(LANGS)))
        if rng.random() < 0.7:
            writer.upsert(list(batch.values()))
            docs.update(batch)
        gone = [str(d) for d in rng.choice(list(docs), size=int(rng.integers(0, 4)), replace=False)]
        deleted = writer.delete([*gone, "no-such-id"])
        assert sorted(deleted) == sorted(gone)
        for docid in gone:
            del docs[docid]


def open_writer(folder: Path, encoder) -> tuple[Searcher, LiveWriter]:
    lock = WriterLock(folder, "test")
    searcher = Searcher(folder, encoder=encoder)
    return searcher, LiveWriter(searcher, lock)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_changes_give_the_top_k_of_a_fresh_build_exactly_on_flat(tmp_path, seed):
    encoder = FakeEncoder()
    corpus = write_corpus(tmp_path / "corpus.jsonl", 90)
    out = tmp_path / "live"
    build_index(IndexConfig(out=str(out), corpus=str(corpus), factory="Flat", num_shards=3, progress=False), encoder)
    docs = corpus_docs(corpus)
    rng = np.random.default_rng(seed)
    searcher, writer = open_writer(out, encoder)
    for round_ in range(3):
        random_changes(rng, docs, writer, steps=8, start=100 * round_)
        fresh = fresh_build(tmp_path, docs, encoder, f"fresh{round_}")
        assert_same_results(searcher, fresh)  # what the writing process sees
        assert_same_results(Searcher(out, encoder=encoder), fresh)  # a new reader: replayed from the log
    for docid, doc in docs.items():
        assert searcher.document(docid)["text"] == doc.text
    writer.close()
    writer.lock.release()
    assert compact(CompactConfig(index=str(out), progress=False)) == 1
    compacted = Searcher(out, encoder=encoder)
    assert compacted.changes.added == {} and compacted.changes.removed == frozenset()
    assert sum(len(s.docids) for s in compacted.shards) == len(docs)
    assert_same_results(compacted, fresh)
    assert {d: compacted.document(d)["text"] for d in docs} == {d: doc.text for d, doc in docs.items()}
    # and it lives on: more changes over the compacted generation, then a second compaction
    searcher, writer = open_writer(out, encoder)
    random_changes(rng, docs, writer, steps=6, start=900)
    writer.close()
    writer.lock.release()
    assert_same_results(Searcher(out, encoder=encoder), fresh_build(tmp_path, docs, encoder, "fresh-late"))
    assert compact(CompactConfig(index=str(out), progress=False)) == 2
    assert_same_results(Searcher(out, encoder=encoder), fresh_build(tmp_path, docs, encoder, "fresh-last"))
    assert not (out / "shard-00000.faiss").exists()  # generation 0 removed once generation 2 is in place
    assert (out / "gen-000001").is_dir() and (out / "gen-000002").is_dir()


def recall(searcher: Searcher, exact: Searcher, k: int = 10) -> float:
    got, want = searcher.search(QUERIES, k=k), exact.search(QUERIES, k=k)
    return np.mean([len({h.docid for h in g} & {h.docid for h in w}) / k for g, w in zip(got, want, strict=True)])


@pytest.mark.parametrize("factory", ["IVF8,Flat", "HNSW16"])
def test_approximate_indexes_keep_the_recall_of_a_fresh_build(tmp_path, factory):
    encoder = FakeEncoder()
    corpus = write_corpus(tmp_path / "corpus.jsonl", 600)
    out = tmp_path / "live"
    build_index(IndexConfig(out=str(out), corpus=str(corpus), factory=factory, num_shards=2, progress=False), encoder)
    docs = corpus_docs(corpus)
    searcher, writer = open_writer(out, encoder)
    random_changes(np.random.default_rng(5), docs, writer, steps=40, start=0)
    writer.close()
    writer.lock.release()
    exact = fresh_build(tmp_path, docs, encoder, "exact")
    fresh = recall(fresh_build(tmp_path, docs, encoder, "approx", factory=factory, shards=2), exact)
    assert recall(searcher, exact) >= fresh - 0.05
    deleted = set(corpus_docs(corpus)) - set(docs)
    assert not deleted & {h.docid for hits in searcher.search(QUERIES, k=50) for h in hits}
    compact(CompactConfig(index=str(out), progress=False))
    compacted = Searcher(out, encoder=encoder)
    assert recall(compacted, exact) >= fresh - 0.05
    assert sorted(d for s in compacted.shards for d in s.docids) == sorted(docs)


def test_a_torn_last_record_is_ignored_and_cut_off_by_the_next_writer(tmp_path, corpus):
    encoder = FakeEncoder()
    out = tmp_path / "idx"
    build_index(IndexConfig(out=str(out), corpus=str(corpus), progress=False), encoder)
    searcher, writer = open_writer(out, encoder)
    writer.upsert([Document("a1", "first batch", "", "en")])
    log = wal_path(out, 0)
    whole = log.stat().st_size
    torn = Record(
        2, "upsert", (Document("a2", "never acknowledged", "", "en"),), encoder.encode_passages(["x"]), (True,)
    )
    with open(log, "ab") as f:
        f.write(torn.frame()[:-7])  # the crash came mid-append
    writer.close()
    writer.lock.release()
    reader = Searcher(out, encoder=encoder)
    assert reader.exists("a1") and not reader.exists("a2")
    searcher, writer = open_writer(out, encoder)
    assert log.stat().st_size == whole  # cut off before anything follows it
    writer.upsert([Document("a3", "after the crash", "", "en")])
    writer.close()
    writer.lock.release()
    records, end = read_log(log)
    assert [r.seq for r in records] == [1, 2] and end == log.stat().st_size
    assert [d.id for r in records for d in r.docs] == ["a1", "a3"]


def test_a_damaged_record_followed_by_others_is_an_error(tmp_path, corpus):
    encoder = FakeEncoder()
    out = tmp_path / "idx"
    build_index(IndexConfig(out=str(out), corpus=str(corpus), progress=False), encoder)
    searcher, writer = open_writer(out, encoder)
    writer.upsert([Document("a1", "first", "", "en")])
    writer.delete(["a1"])
    writer.close()
    writer.lock.release()
    log = wal_path(out, 0)
    data = bytearray(log.read_bytes())
    data[20] ^= 0xFF
    log.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"wal-000000.log: damaged record at byte 0 with more records after it"):
        Searcher(out, encoder=encoder)


def test_a_second_writer_gets_a_clear_error(tmp_path, corpus):
    out = tmp_path / "idx"
    build_index(IndexConfig(out=str(out), corpus=str(corpus), progress=False), FakeEncoder())
    with WriterLock(out, "serve --writable"):
        with pytest.raises(UserError, match=r"another writer is changing this index \(pid \d+, serve --writable"):
            WriterLock(out, "xretrieve add")
        with pytest.raises(UserError, match="another writer"):
            compact(CompactConfig(index=str(out), progress=False))
    WriterLock(out, "free again").release()


def test_the_lock_of_a_killed_writer_is_free(tmp_path, corpus):
    out = tmp_path / "idx"
    build_index(IndexConfig(out=str(out), corpus=str(corpus), progress=False), FakeEncoder())
    code = (
        f"from xretrieve.live import WriterLock; import os, signal; WriterLock({str(out)!r}, 'x'); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    WriterLock(out, "after the crash").release()


_KILL_AFTER_FIRST_SHARD = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import xretrieve.compact as compact_module
from xretrieve.config import CompactConfig
write = compact_module._write_shard
def dying(target, i, *args):
    record = write(target, i, *args)
    if i == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return record
compact_module._write_shard = dying
compact_module.compact(CompactConfig(index={out!r}, progress=False))
"""


def test_kill_9_during_compact_leaves_the_old_generation_and_a_rerun_finishes(tmp_path):
    encoder = FakeEncoder()
    corpus = write_corpus(tmp_path / "corpus.jsonl", 90)
    out = tmp_path / "idx"
    build_index(IndexConfig(out=str(out), corpus=str(corpus), num_shards=3, progress=False), encoder)
    docs = corpus_docs(corpus)
    searcher, writer = open_writer(out, encoder)
    random_changes(np.random.default_rng(3), docs, writer, steps=10, start=0)
    writer.close()
    writer.lock.release()
    before = ranked(Searcher(out, encoder=encoder))
    script = _KILL_AFTER_FIRST_SHARD.format(tests=str(Path(__file__).parent), out=str(out))
    assert subprocess.run([sys.executable, "-c", script], env=os.environ).returncode == -9
    assert (out / "gen-000001" / "shard-00001.json").is_file()  # two of three shards were written
    assert not (out / "gen-000001" / "shard-00002.json").exists()
    reader = Searcher(out, encoder=encoder)
    assert reader.generation == 0 and ranked(reader) == before  # the old generation, changes and all
    first = (out / "gen-000001" / "shard-00000.faiss").stat().st_mtime_ns
    assert compact(CompactConfig(index=str(out), progress=False)) == 1
    assert (out / "gen-000001" / "shard-00000.faiss").stat().st_mtime_ns == first  # resumed, not redone
    assert_same_results(Searcher(out, encoder=encoder), fresh_build(tmp_path, docs, encoder, "fresh", shards=3))


def test_compact_with_nothing_pending_changes_nothing_and_info_counts(tmp_path, corpus):
    encoder = FakeEncoder()
    out = tmp_path / "idx"
    build_index(IndexConfig(out=str(out), corpus=str(corpus), progress=False), encoder)
    manifest = (out / "manifest.json").read_text()
    assert compact(CompactConfig(index=str(out), progress=False)) is None
    assert (out / "manifest.json").read_text() == manifest
    searcher, writer = open_writer(out, encoder)
    writer.upsert([Document("x1", "one", "", "en"), Document("d0", "two", "", "es")])
    writer.delete(["d1"])
    writer.close()
    writer.lock.release()
    info = index_info(out)
    assert info["generation"] == 0 and info["documents"] == 60 + 1 - 1
    assert info["pending"] == {"upserted": 2, "removed_from_base": 2, "last_seq": 2}


def test_rebuilding_over_a_live_index_is_refused(tmp_path, corpus):
    encoder = FakeEncoder()
    out = tmp_path / "idx"
    build_index(IndexConfig(out=str(out), corpus=str(corpus), progress=False), encoder)
    searcher, writer = open_writer(out, encoder)
    writer.delete(["d1"])
    writer.close()
    writer.lock.release()
    with pytest.raises(UserError, match="holds a live index changed since its build"):
        build_index(IndexConfig(out=str(out), corpus=str(corpus), progress=False), encoder)
    assert not Searcher(out, encoder=encoder).exists("d1")


def test_a_batch_with_a_repeated_id_is_refused_whole(tmp_path, corpus):
    encoder = FakeEncoder()
    out = tmp_path / "idx"
    build_index(IndexConfig(out=str(out), corpus=str(corpus), progress=False), encoder)
    searcher, writer = open_writer(out, encoder)
    with pytest.raises(UserError, match="id 'x' appears twice in one batch"):
        writer.upsert([Document("x", "a", "", "en"), Document("y", "b", "", "en"), Document("x", "c", "", "en")])
    assert not searcher.exists("y") and read_log(wal_path(out, 0)) == ([], 0)
    writer.close()


def adapt_like_index(tmp_path: Path, corpus: Path, encoder) -> Path:
    """An index whose manifest records adapt's Apertium recipe (queries into es, folded in at alpha 0.2)."""
    from xretrieve.index import INDEX_KIND
    from xretrieve.manifest import update_manifest

    out = tmp_path / "adapted"
    build_index(IndexConfig(out=str(out), corpus=str(corpus), progress=False), encoder)
    update_manifest(out, INDEX_KIND, {"adapt": {"backend": {"mt": "apertium"}, "langs": ["es"], "alpha": 0.2}})
    return out


@pytest.mark.skipif(not __import__("shutil").which("apertium"), reason="needs Apertium (apertium-eng-spa)")
def test_added_documents_of_an_adapted_index_get_its_augmentation(tmp_path, corpus):
    from xretrieve.xqg.augment import fuse
    from xretrieve.xqg.backends.apertium import TranslationGenerator

    encoder = FakeEncoder()
    out = adapt_like_index(tmp_path, corpus, encoder)
    searcher, writer = open_writer(out, encoder)
    docs = [Document("new-en", "The house is big.", "", "en"), Document("new-fi", "Talo on iso.", "", "fi")]
    writer.upsert(docs)
    writer.close()
    [(_, queries)] = TranslationGenerator().generate(docs[:1], "es", 1, 0)
    assert queries and queries[0] != docs[0].text  # the English document reached Spanish
    passage = encoder.encode_passages([docs[0].text])
    want = fuse(passage, encoder.encode_queries(queries), np.ones(1), 0.2, "mean", False)[0]
    added = searcher.changes.added
    np.testing.assert_allclose(added["new-en"].vector, want, atol=1e-6)
    assert not np.allclose(added["new-en"].vector, passage[0], atol=1e-3)
    # Finnish reaches no Spanish pair here: its vector stays the passage's own, as in the built index
    np.testing.assert_array_equal(added["new-fi"].vector, encoder.encode_passages([docs[1].text])[0])
    assert searcher.changes.summary(True)["unaugmented"] == 0


def test_without_the_recipe_backend_added_documents_are_counted_unaugmented(tmp_path, corpus, monkeypatch):
    import xretrieve.translate

    monkeypatch.setattr(xretrieve.translate, "apertium_available", lambda: False)
    encoder = FakeEncoder()
    out = adapt_like_index(tmp_path, corpus, encoder)
    searcher, writer = open_writer(out, encoder)
    writer.upsert([Document("n1", "The house is big.", "", "en"), Document("n2", "Otra casa.", "", "es")])
    writer.close()
    np.testing.assert_array_equal(
        searcher.changes.added["n1"].vector, encoder.encode_passages(["The house is big."])[0]
    )
    writer.lock.release()
    assert index_info(out)["pending"]["unaugmented"] == 2


def test_cli_add_delete_compact_with_a_real_model(tiny_model, tmp_path, capsys):
    """The verbs end to end: a tiny BERT encodes, `search` sees every change, a second writer is refused."""
    from xretrieve import cli

    corpus = write_corpus(tmp_path / "corpus.jsonl", 20)
    out = tmp_path / "idx"
    assert cli.main(["index", "--corpus", str(corpus), "--out", str(out), "--model", str(tiny_model), "--quiet"]) == 0
    new = tmp_path / "new.jsonl"
    rows = [
        {"id": "fresh", "text": "zebra quantum lighthouse", "lang": "en"},
        {"id": "d3", "text": "rewritten", "lang": "fi"},
    ]
    new.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert cli.main(["add", "--index", str(out), "--corpus", str(new), "--quiet"]) == 0
    assert "1 documents added, 1 replaced" in capsys.readouterr().out
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"id": "q", "text": "zebra quantum lighthouse"}) + "\n")

    def top(k: int = 21) -> list[str]:
        run = tmp_path / "run.trec"
        assert (
            cli.main(["search", "--index", str(out), "--queries", str(queries), "--out", str(run), "--k", str(k)]) == 0
        )
        return [line.split()[2] for line in run.read_text().splitlines()]

    assert top(1) == ["fresh"] and len(top()) == 21
    ids_file = tmp_path / "gone.txt"
    ids_file.write_text("fresh\n\nd4\nnot-there\n")
    assert cli.main(["delete", "--index", str(out), "--ids-file", str(ids_file)]) == 0
    captured = capsys.readouterr()
    assert "2 documents deleted" in captured.out and "not-there" in captured.err
    assert "fresh" not in top() and "d4" not in top() and len(top()) == 19
    capsys.readouterr()
    assert cli.main(["compact", "--index", str(out), "--info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["documents"] == 19 and info["pending"]["upserted"] == 1 and info["pending"]["removed_from_base"] == 2
    with WriterLock(out, "serve --writable"):
        assert cli.main(["add", "--index", str(out), "--corpus", str(new), "--quiet"]) == 2
        assert "another writer is changing this index" in capsys.readouterr().err
    assert cli.main(["compact", "--index", str(out), "--quiet"]) == 0
    assert "generation 1" in capsys.readouterr().out
    assert sorted(top()) == sorted([f"d{i}" for i in range(20) if i != 4]) and len(top()) == 19
    assert cli.main(["compact", "--index", str(out)]) == 0
    assert "nothing to compact" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["delete", "--index", "IDX"], "one of the arguments --ids --ids-file is required"),
        (["delete", "--index", "IDX", "--ids", "a", "--ids-file", "f"], "not allowed with argument"),
        (["delete", "--index", "IDX", "--ids", " , "], "no ids given"),
        (["add", "--index", "IDX", "--corpus", "no-such.jsonl"], "no-such.jsonl"),
        (["compact", "--index", "MISSING"], "no manifest.json"),
        (["delete", "--index", "MISSING", "--ids", "a"], "no manifest.json"),
    ],
)
def test_cli_live_verbs_refuse_bad_input_in_one_line(tmp_path, corpus, capsys, args, message):
    from xretrieve import cli

    out = tmp_path / "idx"
    build_index(IndexConfig(out=str(out), corpus=str(corpus), progress=False), FakeEncoder())
    args = [{"IDX": str(out), "MISSING": str(tmp_path / "missing")}.get(a, a) for a in args]
    try:
        status = cli.main(args)
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "missing").exists()  # nothing created where no index is


def test_a_log_of_vectors_of_another_dimension_is_refused(tmp_path, corpus):
    encoder = FakeEncoder()
    out = tmp_path / "idx"
    build_index(IndexConfig(out=str(out), corpus=str(corpus), progress=False), encoder)
    log = wal_path(out, 0)
    log.parent.mkdir(exist_ok=True)
    other = FakeEncoder(dim=8).encode_passages(["x"])
    log.write_bytes(Record(1, "upsert", (Document("x", "x", "", "en"),), other, (True,)).frame())
    with pytest.raises(UserError, match=r"wal-000000.log: change 1 holds 8-dimensional vectors, the index 16"):
        Searcher(out, encoder=encoder)
