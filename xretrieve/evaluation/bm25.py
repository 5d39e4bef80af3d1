"""BM25 baseline through pyserini (Lucene/Anserini), an optional extra: `pip install '.[bm25]'` plus a Java 21+ JDK.

Nothing here imports pyserini or starts a JVM at import time. Indexing runs pyserini's indexer in a subprocess
(its JVM logs stay out of the caller's output and a failure becomes a UserError); search runs Anserini's
`SimpleSearcher` in this process, the Java class that pyserini's `LuceneSearcher` wraps.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from xretrieve.errors import UserError
from xretrieve.formats import iter_corpus, passage_text, read_queries, write_run
from xretrieve.manifest import read_manifest, sha256_file, write_manifest

INDEX_KIND = "bm25-index"
MIN_JAVA = 21  # Anserini 1.x is compiled for Java 21
_SEARCH_BLOCK = 1000  # queries per batch_search call (Anserini spreads each over the threads)
JVM_DIRS = ("/usr/lib/jvm",)

# pyserini's --language codes and the Lucene analyzer Anserini uses for each (Anserini's AnalyzerMap and
# SimpleSearcher.set_language). Anserini silently falls back to English for any other code, so we refuse them.
ANALYZERS = {
    "en": "DefaultEnglishAnalyzer",  # Porter stemming, English stopwords; the default
    "ar": "ArabicAnalyzer",
    "bn": "BengaliAnalyzer",
    "da": "DanishAnalyzer",
    "de": "GermanAnalyzer",
    "es": "SpanishAnalyzer",
    "fa": "PersianAnalyzer",
    "fi": "FinnishAnalyzer",
    "fr": "FrenchAnalyzer",
    "hi": "HindiAnalyzer",
    "hu": "HungarianAnalyzer",
    "id": "IndonesianAnalyzer",
    "it": "ItalianAnalyzer",
    "ja": "JapaneseAnalyzer",
    "ko": "CJKAnalyzer",
    "nl": "DutchAnalyzer",
    "no": "NorwegianAnalyzer",
    "pl": "MorfologikAnalyzer",
    "pt": "PortugueseAnalyzer",
    "ru": "RussianAnalyzer",
    "sv": "SwedishAnalyzer",
    "te": "TeluguAnalyzer",
    "th": "ThaiAnalyzer",
    "tr": "TurkishAnalyzer",
    "uk": "UkrainianMorfologikAnalyzer",
    "zh": "CJKAnalyzer",
    # split on whitespace only: no lowercasing, no stemming
    "ha": "WhitespaceAnalyzer",
    "so": "WhitespaceAnalyzer",
    "sw": "WhitespaceAnalyzer",
    "yo": "WhitespaceAnalyzer",
}


def java_major(version_output: str) -> int | None:
    """The major version in `java -version` output: 'version "17.0.15"' -> 17, 'version "1.8.0_202"' -> 8."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def _run_java(java: Path, flag: str) -> str:
    try:
        proc = subprocess.run([str(java), flag], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stderr + proc.stdout


def find_java(env: Mapping[str, str] | None = None, jvm_dirs: Iterable[str | Path] = JVM_DIRS) -> str:
    """A JAVA_HOME holding Java 21+: $JAVA_HOME if it qualifies, else `java` on $PATH, else a folder in `jvm_dirs`.

    `env` defaults to os.environ; only its JAVA_HOME and PATH are read.
    """
    env = os.environ if env is None else env
    jvm_dirs = [Path(folder) for folder in jvm_dirs]
    java_home = Path(env["JAVA_HOME"]) if env.get("JAVA_HOME") else None
    candidates: list[tuple[Path, Path]] = []  # (java home, java binary)
    if java_home:
        candidates.append((java_home, java_home / "bin" / "java"))
    on_path = shutil.which("java", path=env.get("PATH", ""))
    if on_path:
        real = Path(on_path).resolve()
        candidates.append((real.parent.parent, Path(on_path)))
    for folder in jvm_dirs:
        if folder.is_dir():
            candidates += [(home, home / "bin" / "java") for home in sorted(folder.iterdir())]

    found: list[str] = []
    seen: set[Path] = set()
    for home, java in candidates:
        if not java.is_file():
            if home == java_home:
                found.append(f"JAVA_HOME={home} with no bin/java")
            continue
        if java.resolve() in seen:
            continue
        seen.add(java.resolve())
        major = java_major(_run_java(java, "-version"))
        if major is None:
            found.append(f"{java} (version unknown)")
        elif major < MIN_JAVA:
            found.append(f"Java {major} at {java}")
        elif "jdk.incubator.vector" not in _run_java(java, "--list-modules"):  # pyserini starts the JVM with it
            found.append(f"Java {major} at {java} without the jdk.incubator.vector module")
        else:
            return str(home)
    where = ", ".join(found) or f"no java (JAVA_HOME unset, none on PATH, none under {', '.join(map(str, jvm_dirs))})"
    raise UserError(
        f"BM25 through pyserini needs Java {MIN_JAVA} or newer; found {where}. Install a JDK {MIN_JAVA}+ "
        "(e.g. Temurin) and point JAVA_HOME at it: export JAVA_HOME=/path/to/jdk PATH=/path/to/jdk/bin:$PATH"
    )


def _require_pyserini() -> None:
    if importlib.util.find_spec("pyserini") is None:
        raise UserError("BM25 needs pyserini, an optional extra: pip install '.[bm25]' (and a Java 21+ JDK)")


def _java_env(java_home: str, env: Mapping[str, str]) -> dict[str, str]:
    # pyserini's own helpers (trec_eval) run `java` from PATH, so the JDK's bin goes first there too.
    path = env.get("PATH", "")
    java_bin = str(Path(java_home) / "bin")
    if path.split(os.pathsep)[0] != java_bin:
        path = java_bin + os.pathsep + path if path else java_bin
    return {**env, "JAVA_HOME": java_home, "PATH": path}


def _autoclass():
    """pyserini's Java bridge, its JVM started with a Java 21+ home (the JVM starts when jnius is first imported).

    We import `pyserini.pyclass` rather than `pyserini.search.lucene`: the latter also imports torch,
    transformers and an OpenAI client (about 20 s here, and it fails unless OPENAI_API_KEY is set), none of
    which BM25 uses. `pyserini.pyclass` puts Anserini's jar on the classpath and adds jdk.incubator.vector.
    """
    _require_pyserini()
    if "jnius" not in sys.modules:  # once a JVM runs in this process its Java cannot change
        os.environ.update(_java_env(find_java(), os.environ))
    from pyserini.pyclass import autoclass

    return autoclass


def _language(language: str | None) -> str:
    code = (language or "en").lower()
    if code not in ANALYZERS:
        raise UserError(f"language {language!r}: pyserini has no analyzer for it; choose one of {', '.join(ANALYZERS)}")
    return code


def _write_collection(corpus: Path, collection: Path, threads: int) -> int:
    """pyserini's JsonCollection: one {"id", "contents"} per line, one file per thread so all threads work.
    Returns the number of documents."""
    collection.mkdir()
    files = [open(collection / f"part-{i:05d}.jsonl", "w", encoding="utf-8") for i in range(threads)]
    rows = 0
    try:
        for doc in iter_corpus(corpus):
            record = {"id": doc.id, "contents": passage_text(doc)}
            files[rows % threads].write(json.dumps(record, ensure_ascii=False) + "\n")
            rows += 1
    finally:
        for f in files:
            f.close()
    return rows


def bm25_index(corpus: str, out: str, language: str | None = None, threads: int = 1, progress: bool = True) -> Path:
    """Build a Lucene BM25 index of a corpus jsonl in folder `out` (which must be new or empty).

    Each document is indexed as "title text" with the analyzer for `language` (default English).
    """
    language = _language(language)
    _require_pyserini()
    corpus_path, out_path = Path(corpus), Path(out)
    if out_path.exists() and (not out_path.is_dir() or any(out_path.iterdir())):
        raise UserError(f"{out_path}: already exists and is not an empty folder; choose a new --out or delete it")
    env = _java_env(find_java(), os.environ)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(dir=out_path.parent, prefix=f".{out_path.name}."))
    try:
        collection = build / "collection"
        threads = max(1, threads)
        rows = _write_collection(corpus_path, collection, threads)

        index = build / "index"
        command = [sys.executable, "-m", "pyserini.index.lucene", "-collection", "JsonCollection"]
        command += ["-generator", "DefaultLuceneDocumentGenerator", "-threads", str(threads)]
        command += ["-input", str(collection), "-index", str(index)]
        if language != "en":
            command += ["-language", language]
        started = time.perf_counter()
        if progress:  # pyserini's own log is kept for errors: say what runs meanwhile
            print(f"bm25: indexing {rows} documents with pyserini, {threads} thread(s) ...", file=sys.stderr)
        proc = subprocess.run(command, env=env, capture_output=True, text=True)
        log = proc.stdout + proc.stderr
        # the count is printed with the JVM locale's digit grouping ("100,000", "100.000", "100 000")
        indexed = [
            re.sub(r"\D", "", n) for n in re.findall(r"- indexed:\s+(\d[\d.,\u00a0\u202f ]*)$", log, re.MULTILINE)
        ]
        if proc.returncode != 0 or not index.is_dir():
            raise UserError(f"pyserini's indexer failed (exit {proc.returncode}) on {corpus_path}:\n{log[-3000:]}")
        if indexed and int(indexed[-1]) != rows:
            raise UserError(f"pyserini indexed {indexed[-1]} of {rows} documents of {corpus_path}:\n{log[-3000:]}")

        from importlib.metadata import version

        write_manifest(
            index,
            INDEX_KIND,
            {
                "corpus": {"path": str(corpus_path.resolve()), "sha256": sha256_file(corpus_path), "rows": rows},
                "language": language,
                "analyzer": ANALYZERS[language],
                "contents": "title text",
                "pyserini": version("pyserini"),
            },
        )
        os.replace(index, out_path)  # whole folder at once; replaces an empty folder
        if progress:
            print(f"bm25: indexed {rows} documents in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return out_path


def bm25_search(
    index: str,
    queries: str,
    out: str,
    k: int = 100,
    k1: float = 0.9,
    b: float = 0.4,
    language: str | None = None,
    tag: str = "bm25",
    threads: int = 1,
    progress: bool = True,
) -> Path:
    """Search a BM25 index with a queries file; write a TREC run and its provenance (`OUT.json`).

    The query analyzer is the index's (from its manifest). Anserini orders hits by (-score, docid) and reports
    scores rounded to 4 decimals, nudging equal rounded scores down by 1e-6 steps so the order survives; the
    run keeps that order.
    """
    from tqdm import tqdm

    manifest = read_manifest(index, INDEX_KIND)
    if language is not None and _language(language) != manifest["language"]:
        raise UserError(f"language {language!r}: {index} was built with the {manifest['language']!r} analyzer")
    language = manifest["language"]
    query_list = read_queries(queries)
    autoclass = _autoclass()
    JArrayList = autoclass("java.util.ArrayList")
    searcher = autoclass("io.anserini.search.SimpleSearcher")(str(Path(index).resolve()))
    try:
        searcher.set_bm25(float(k1), float(b))
        if language != "en":
            searcher.set_language(language)
        hits = {}
        with tqdm(total=len(query_list), desc="bm25 search", unit="query", disable=not progress) as bar:
            for start in range(0, len(query_list), _SEARCH_BLOCK):  # blocks, so that the bar moves
                block = query_list[start : start + _SEARCH_BLOCK]
                texts, qids = JArrayList(), JArrayList()
                for query in block:
                    texts.add(query.text)
                    qids.add(query.id)
                results = searcher.batch_search(texts, qids, int(k), max(1, int(threads)))
                for entry in results.entrySet().toArray():
                    hits[entry.getKey()] = [(h.docid, float(h.score)) for h in entry.getValue()]
                bar.update(len(block))
    finally:
        searcher.close()
    model = {"name": "bm25", "k1": k1, "b": b, "language": language, "analyzer": ANALYZERS[language]}
    write_run(out, ((q.id, hits.get(q.id, [])) for q in query_list), tag, index, queries, model=model, k=k)
    return Path(out)
