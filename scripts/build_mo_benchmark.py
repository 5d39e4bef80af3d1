#!/usr/bin/env python3
"""Build the offline cross-lingual benchmark benchmarks/data/mo-xling/ from Debian message catalogs.

REAL text that people translated: the interface messages (help texts, property descriptions, error
explanations) of the Debian packages installed on this machine, as their compiled gettext catalogs
(/usr/share/locale/LOCALE/LC_MESSAGES/DOMAIN.mo) hold them.  The English msgid and its translations
into the other languages give a human-made alignment, from which the relevance judgements are built.

    python3 scripts/build_mo_benchmark.py [--locale-root /usr/share/locale] [--out benchmarks/data/mo-xling]

Standard library only (plus `dpkg -S` / `dpkg-query` for provenance, where present).  No extra
package was installed: the catalogs of the base system and its GTK/GLib stack already cover the
chosen languages.  Deterministic: a fixed seed, sorted inputs, no clock; rerunning on the same set
of installed packages writes byte-identical files.  The README it writes records which packages (and
versions) the kept messages come from.

Output (written atomically: temporary file + os.replace)
---------------------------------------------------------
corpus.jsonl                    {"id": "LANG-MSGKEY", "text", "lang"}: every kept message in every language
queries-dev.jsonl / -test.jsonl {"id": "q-LANG-MSGKEY", "text", "lang"}: a message in each language
                                (its leading sentences when long); dev and test messages are disjoint
qrels-dev.txt / qrels-test.txt  TREC "qid 0 docid 1": the message in every language
README.md                       sources, licences, languages, filters, counts, how to evaluate
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import random
import re
import statistics
import struct
import subprocess
import sys
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_demo_corpus as demo  # noqa: E402  (same folder; stdlib only; atomic_write and jsonl)

# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------

SEED = 20261130
N_MESSAGES = 500  # kept messages, each in every language -> corpus
N_TEST = 100  # test messages: one query per language each
N_DEV = 50  # dev messages (for tuning), disjoint from the test messages
MAX_DOMAIN_SHARE = 0.15  # no catalog domain may give more than this share of the messages
MIN_WORDS, MAX_WORDS = 6, 60  # English words per message
QUERY_MAX_WORDS = 30  # longer messages (English-equivalent words) give only their leading part as query
QUERY_WORDS = 20  # ... of whole sentences up to this many words
NEAR_DUP_JACCARD = 0.4  # English content-word sets, as bible-xling
NEAR_DUP_OVERLAP = 0.7

# lang (ISO 639-1) -> locale folder.  English is the msgid itself.
LOCALES = {
    "en": None,
    "es": "es",
    "fr": "fr",
    "it": "it",
    "pt": "pt",
    "ca": "ca",
    "de": "de",
    "pl": "pl",
    "ja": "ja",
    "zh": "zh_CN",
}

# Debian's offline Apertium pairs between these languages (apt-cache search apertium).  Languages in
# no pair (de, pl, ja, zh here; pl only has pol-szl, Silesian) are the uncovered ones.
APERTIUM_PAIRS = {
    "apertium-eng-spa": ("en", "es"),
    "apertium-eng-cat": ("en", "ca"),
    "apertium-spa-cat": ("es", "ca"),
    "apertium-fr-es": ("fr", "es"),
    "apertium-fra-cat": ("fr", "ca"),
    "apertium-spa-ita": ("es", "it"),
    "apertium-cat-ita": ("ca", "it"),
    "apertium-es-pt": ("es", "pt"),
    "apertium-por-cat": ("pt", "ca"),
}

# iso-codes' catalogs (iso_3166, iso_4217, iso_639, ...) translate names of countries, currencies
# and languages: titles, not sentences someone wrote.
NAME_LIST_DOMAINS = re.compile(r"^iso_")

# --------------------------------------------------------------------------
# Reading .mo catalogs
# --------------------------------------------------------------------------

MO_MAGIC = 0x950412DE
CONTEXT_SEPARATOR = "\x04"  # msgctxt EOT msgid
PLURAL_SEPARATOR = b"\x00"  # msgid NUL msgid_plural


def read_mo(path: Path) -> dict[bytes, bytes]:
    """Raw msgid -> msgstr pairs of a compiled catalog (GNU .mo, either byte order)."""
    data = path.read_bytes()
    for order in "<>":
        if len(data) >= 20 and struct.unpack(order + "I", data[:4])[0] == MO_MAGIC:
            break
    else:
        raise ValueError(f"{path}: not a GNU .mo file")
    count, ids_at, strs_at = struct.unpack(order + "3I", data[8:20])
    pairs = {}
    for i in range(count):
        id_len, id_off = struct.unpack_from(order + "2I", data, ids_at + 8 * i)
        str_len, str_off = struct.unpack_from(order + "2I", data, strs_at + 8 * i)
        pairs[data[id_off : id_off + id_len]] = data[str_off : str_off + str_len]
    return pairs


def header_charset(header: bytes) -> str:
    match = re.search(rb"charset=([\w.-]+)", header)
    return match.group(1).decode("ascii") if match else "utf-8"


def read_catalog(path: Path) -> dict[str, str]:
    """English msgid -> translation, without the header, plural entries (their singular and plural
    forms do not align one to one across languages) and empty translations.  A msgctxt is dropped:
    the text is what a reader sees.  msgfmt leaves fuzzy entries out of .mo files unless told to."""
    raw = read_mo(path)
    charset = header_charset(raw.get(b"", b""))
    catalog = {}
    for key, value in sorted(raw.items()):
        if not key or PLURAL_SEPARATOR in key or not value.strip():
            continue
        try:
            msgid, text = key.decode(charset), value.decode(charset)
        except (UnicodeDecodeError, LookupError):
            continue
        catalog[msgid.rpartition(CONTEXT_SEPARATOR)[2]] = text
    return catalog


# --------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------

FORMAT = re.compile(r"[%{}$]")  # printf, Python/brace and shell-variable directives
MARKUP = re.compile(r"<[^>]*>|&\w+;|[<>]")
ACCELERATOR = re.compile(r"[_&]")  # GTK "_Open", Qt/Windows "&Open" and ja/zh "(_O)"; also identifiers
# "-x", "'--long'"; not "e-mail", nor German "und -knöpfe" or "»Zwischen«-Zustand"
OPTION = re.compile(r"(?<![\w-])(?:--[A-Za-z0-9]|-[A-Za-z0-9](?!\w))")
CODE = re.compile(
    r"[/\\=\[\]|*#@^~`+]"  # paths, assignments, globs, shell syntax
    r"|[a-z][A-Z]"  # CamelCase identifiers (GtkWidget)
    r"|\w\.\w"  # file names, versions, D-Bus and schema names
    r"|\w\("  # calls
    r"|::"
)
ENGLISH_WORDS = frozenset(
    "the a an of to in is are be for not and or this that with on by from it can will was has have no if as "
    "at you your which when should whether".split()
)
SENTENCE_END = re.compile(r"(?<=[.!?;:。！？；：])\s*")
WHITESPACE = re.compile(r"\s+")


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z']+", text)


def looks_english(text: str) -> bool:
    """ASCII letters only and at least one English function word."""
    return text.isascii() and any(w.lower() in ENGLISH_WORDS for w in words(text))


def letter_share(text: str) -> float:
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) / len(chars) if chars else 0.0


def directive(text: str) -> str | None:
    """Which kind of non-prose mark the text holds, if any (checked in English and translations)."""
    for reason, pattern in (("format", FORMAT), ("markup", MARKUP), ("accelerator", ACCELERATOR), ("option", OPTION)):
        if pattern.search(text):
            return reason
    return None


def reject_english(text: str) -> str | None:
    """Why an English msgid is not a usable message (None: it is): a sentence someone wrote,
    with no directive, markup, accelerator, option, path or code in it."""
    n = len(text.split())
    if n < MIN_WORDS:
        return "short"
    if n > MAX_WORDS:
        return "long"
    if "\n" in text or "\t" in text:
        return "multi-line"  # usage blocks, lists and formatted output
    reason = directive(text)
    if reason:
        return reason
    if CODE.search(text) or letter_share(text) < 0.75 or not text[0].isalpha():
        return "code"
    if not looks_english(text):
        return "not-english"
    return None


def script_ok(text: str, lang: str) -> bool:
    """Japanese needs kana; Chinese needs Han and no kana; the rest are Latin-script."""
    kana = any("\u3040" <= c <= "\u30ff" for c in text)
    han = any("\u4e00" <= c <= "\u9fff" for c in text)
    if lang == "ja":
        return kana
    if lang == "zh":
        return han and not kana
    return not (kana or han) and letter_share(text) >= 0.6


def reject_translation(text: str, lang: str, english: str) -> str | None:
    """Why a translation of a kept English message is not usable (None: it is)."""
    if not text:
        return "empty"
    if text.casefold() == english.casefold():
        return "untranslated"
    reason = directive(text)
    if reason:
        return reason
    if not script_ok(text, lang):
        return "script"
    return None


def clean(text: str) -> str:
    """NFC and single spaces: translators wrap long lines where the English has none."""
    return WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def normalized(text: str) -> str:
    """Key for exact duplicates: case, spacing and final punctuation do not count."""
    return clean(text).casefold().rstrip(".!。！ ")


_STOP = ENGLISH_WORDS | frozenset("all any its may must one only than their them then there these they".split())


def content_words(text: str) -> frozenset[str]:
    return frozenset(w for w in (x.lower() for x in words(text)) if len(w) > 2 and w not in _STOP)


def near_duplicate(a: frozenset[str], b: frozenset[str]) -> bool:
    shared = len(a & b)
    if not shared:
        return False
    return shared / len(a | b) >= NEAR_DUP_JACCARD or shared / min(len(a), len(b)) >= NEAR_DUP_OVERLAP


# --------------------------------------------------------------------------
# Collecting messages
# --------------------------------------------------------------------------


@dataclass
class Message:
    key: str  # DOMAIN.SHA1(msgid)[:10], stable across runs
    domain: str
    texts: dict[str, str]  # lang -> text, English included


@dataclass
class Collection:
    messages: list[Message] = field(default_factory=list)
    catalogs: list[Path] = field(default_factory=list)  # every catalog read
    english_rejects: Counter = field(default_factory=Counter)
    translation_rejects: Counter = field(default_factory=Counter)
    non_english_domains: list[str] = field(default_factory=list)


def message_key(domain: str, msgid: str) -> str:
    return f"{domain}.{hashlib.sha1(msgid.encode()).hexdigest()[:10]}"


def english_source(catalog: dict[str, str]) -> bool:
    """A catalog whose msgids are English: most of its longer msgids look English."""
    long_ids = [m for m in catalog if len(m.split()) >= MIN_WORDS]
    return not long_ids or sum(map(looks_english, long_ids)) >= 0.5 * len(long_ids)


def collect(locale_root: Path, langs: list[str]) -> Collection:
    """Messages that some domain translates, usably, into every language of `langs`.

    Where several domains translate the same msgid, the first domain (sorted) whose translations all
    pass is used, so a message's translations come from one catalog."""
    others = [lang for lang in langs if LOCALES[lang]]
    found = Collection()
    per_domain: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)  # domain -> lang -> catalog
    for lang in others:
        for path in sorted((locale_root / LOCALES[lang] / "LC_MESSAGES").glob("*.mo")):
            per_domain[path.stem][lang] = read_catalog(path)
            found.catalogs.append(path)
    by_msgid: dict[str, list[str]] = defaultdict(list)
    for domain in sorted(per_domain):
        catalogs = per_domain[domain]
        if len(catalogs) < len(others) or NAME_LIST_DOMAINS.match(domain):
            continue
        if not all(english_source(c) for c in catalogs.values()):
            found.non_english_domains.append(domain)
            continue
        for msgid in set.intersection(*(set(c) for c in catalogs.values())):
            by_msgid[msgid].append(domain)
    for msgid in sorted(by_msgid):
        english = clean(msgid)
        reason = reject_english(msgid)
        if reason:
            found.english_rejects[reason] += 1
            continue
        for domain in by_msgid[msgid]:
            texts = {lang: clean(per_domain[domain][lang][msgid]) for lang in others}
            reasons = {r for lang, t in texts.items() if (r := reject_translation(t, lang, english))}
            if not reasons:
                found.messages.append(Message(message_key(domain, msgid), domain, {"en": english, **texts}))
                break
        else:
            found.translation_rejects.update(reasons)
    return found


# --------------------------------------------------------------------------
# Selecting messages
# --------------------------------------------------------------------------


@dataclass
class Selection:
    kept: list[Message]  # in draw order: test first, then dev, then corpus-only
    skipped: Counter


def select(messages: list[Message], langs: list[str], n: int, seed: int) -> Selection:
    """Draw up to `n` messages at random (fixed seed), skipping a message whose normalized text in
    any language equals a kept one's (deduplication by msgid and by translation), whose English is
    a near-duplicate of a kept one's, or whose domain already gave its share."""
    order = sorted(messages, key=lambda m: m.key)
    random.Random(seed).shuffle(order)
    cap = max(1, int(MAX_DOMAIN_SHARE * n))
    seen = {lang: set() for lang in langs}
    kept, kept_words, per_domain, skipped = [], [], Counter(), Counter()
    for message in order:
        if len(kept) == n:
            break
        words_ = content_words(message.texts["en"])
        if per_domain[message.domain] >= cap:
            skipped["domain share"] += 1
        elif any(normalized(message.texts[lang]) in seen[lang] for lang in langs):
            skipped["duplicate text"] += 1
        elif any(near_duplicate(words_, other) for other in kept_words):
            skipped["near-duplicate"] += 1
        else:
            kept.append(message)
            kept_words.append(words_)
            per_domain[message.domain] += 1
            for lang in langs:
                seen[lang].add(normalized(message.texts[lang]))
    return Selection(kept, skipped)


# --------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------

CHARACTER_LANGS = {"ja", "zh"}  # no spaces between words: length in characters


def tokens(text: str, lang: str) -> int:
    return len("".join(text.split())) if lang in CHARACTER_LANGS else len(text.split())


def token_scales(messages: list[Message], langs: list[str]) -> dict[str, float]:
    """Median tokens of each language per English word, so query cuts are comparable."""
    return {
        lang: statistics.median(tokens(m.texts[lang], lang) / tokens(m.texts["en"], "en") for m in messages)
        for lang in langs
    }


def make_query(text: str, lang: str, scale: float) -> str:
    """The message itself, or when longer than ~QUERY_MAX_WORDS English-equivalent words its leading
    whole sentences up to ~QUERY_WORDS; a first sentence longer than that is cut at the limit (a word,
    or for ja/zh a character)."""
    if tokens(text, lang) <= round(QUERY_MAX_WORDS * scale):
        return text
    limit = round(QUERY_WORDS * scale)
    sentences = [s for s in SENTENCE_END.split(text) if s]
    joiner = "" if lang in CHARACTER_LANGS else " "
    query = sentences[0]
    for sentence in sentences[1:]:
        if tokens(query + joiner + sentence, lang) > limit:
            break
        query += joiner + sentence
    if tokens(query, lang) > limit:
        query = query[:limit] if lang in CHARACTER_LANGS else " ".join(query.split()[:limit])
    return query


# --------------------------------------------------------------------------
# Provenance (dpkg)
# --------------------------------------------------------------------------


def owning_packages(paths: list[Path]) -> dict[Path, str]:
    """Catalog path -> Debian package that installed it (paths dpkg does not know are left out)."""
    try:
        done = subprocess.run(["dpkg", "-S", *map(str, paths)], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return {}
    owners = {}
    for line in done.stdout.splitlines():
        package, _, path = line.partition(": ")
        owners[Path(path)] = package.split(":")[0]  # drop a ":amd64" architecture qualifier
    return owners


def package_versions(packages: list[str]) -> dict[str, tuple[str, str]]:
    """Package -> (version, source package)."""
    if not packages:
        return {}
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${source:Package}\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    )
    return {p: (v, s) for p, v, s in (line.split("\t") for line in done.stdout.splitlines())}


def po_licence(package: str) -> str:
    """The licence a machine-readable (DEP-5) copyright file gives the translations (po/*.po; the
    last matching Files: paragraph wins, as DEP-5 says); otherwise a pointer to the file."""
    path = Path("/usr/share/doc") / package / "copyright"
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    licence = None
    for paragraph in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", paragraph, re.MULTILINE)
        name = re.search(r"^License:[ \t]*(\S.*)", paragraph, re.MULTILINE)
        if files and name and any(fnmatch.fnmatch("po/xx.po", pattern) for pattern in files.group(1).split()):
            licence = name.group(1).strip()
    return licence or f"not machine-readable: see /usr/share/doc/{package}/copyright"


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


@dataclass
class Split:
    name: str
    messages: list[Message]
    queries: list[dict]
    qrels: list[tuple[str, str]]


def make_split(name: str, messages: list[Message], langs: list[str], scales: dict[str, float]) -> Split:
    """One query per message and language; all of the message's copies are relevant."""
    messages = sorted(messages, key=lambda m: m.key)
    queries = [
        {"id": f"q-{lang}-{m.key}", "text": make_query(m.texts[lang], lang, scales[lang]), "lang": lang}
        for m in messages
        for lang in langs
    ]
    qrels = [(f"q-{q}-{m.key}", f"{d}-{m.key}") for m in messages for q in langs for d in langs]
    return Split(name, messages, queries, qrels)


def provenance(catalogs: list[Path], kept: list[Message]) -> list[dict]:
    """One row per Debian package whose catalogs gave kept messages."""
    domains = Counter(m.domain for m in kept)
    used = [p for p in catalogs if p.stem in domains]
    owners = owning_packages(used)
    rows: dict[str, dict] = {}
    for path in used:
        package = owners.get(path, "(no Debian package)")
        row = rows.setdefault(package, {"package": package, "domains": set()})
        row["domains"].add(path.stem)
    versions = package_versions(sorted(p for p in rows if not p.startswith("(")))
    for package, row in rows.items():
        row["version"], row["source"] = versions.get(package, ("-", "-"))
        row["licence"] = po_licence(package) if package in versions else "-"
        row["messages"] = sum(domains[d] for d in row["domains"])
    return sorted(rows.values(), key=lambda r: (-r["messages"], r["package"]))


def counts_line(counter: Counter) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def apertium_coverage(langs: list[str]) -> tuple[list[str], list[str]]:
    covered = sorted({lang for pair in APERTIUM_PAIRS.values() for lang in pair if set(pair) <= set(langs)})
    return [lang for lang in langs if lang in covered], [lang for lang in langs if lang not in covered]


def cut_queries(splits: list[Split]) -> int:
    texts = {m.key: m.texts for split in splits for m in split.messages}
    return sum(q["text"] != texts[q["id"].split("-", 2)[2]][q["lang"]] for split in splits for q in split.queries)


def examples(messages: list[Message], n: int) -> list[Message]:
    """The first message of each of the first `n` domains, in draw order (random, so varied)."""
    first: dict[str, Message] = {}
    for m in messages:
        first.setdefault(m.domain, m)
    return list(first.values())[:n]


def readme(
    langs: list[str], found: Collection, chosen: Selection, splits: list[Split], packages: list[dict], files: dict
) -> str:
    covered, uncovered = apertium_coverage(langs)
    n = len(chosen.kept)
    test, dev = splits
    example = test.messages[0]
    lines = [
        "# mo-xling: cross-lingual retrieval benchmark from Debian's translated message catalogs",
        "",
        "Generated by `scripts/build_mo_benchmark.py`; do not edit by hand.",
        "",
        f"**Real interface messages** of Debian packages (help texts, descriptions, error explanations) in "
        f"{len(langs)} languages: the English msgid of a gettext catalog and the translations that the "
        "packages' translators wrote for it. The message is the alignment, so the relevance judgements are "
        "not hand-made: a query is a message (or its leading sentences) in one language, and its relevant "
        "documents are the same message in every language. The text is short, technical and unlike "
        "bible-xling's, which makes it a second, independent test of cross-lingual retrieval.",
        "",
        "## Files",
        "",
        "| file | content | bytes |",
        "| --- | --- | ---: |",
    ]
    for name, (what, text) in files.items():
        lines.append(f"| `{name}` | {what} | {len(text.encode())} |")
    lines += [
        "",
        "Ids: documents `LANG-MSGKEY`, queries `q-LANG-MSGKEY`, where `MSGKEY` is `DOMAIN.HASH` (the catalog's "
        "gettext domain and the first 10 hex digits of the SHA-1 of the English msgid), e.g. "
        f"`de-{example.key}`.",
        "",
        "### How to evaluate",
        "",
        f"The corpus holds each of the {n} messages in all {len(langs)} languages ({n} documents per language). "
        f"{len(test.messages)} of the messages are **test** messages and {len(dev.messages)} other ones **dev** "
        "messages; the rest are corpus-only distractors. Each test and dev message gives one query in every "
        "language, and its qrels mark the message's copy in every language relevant, the query's own "
        "language included. Evaluate as `benchmarks/xling_bible.py` does bible-xling: for the pair (query "
        "language Q, document language D) take the queries with `lang == Q`, search only the documents with "
        "`lang == D`, and keep the qrels whose docid starts with `D-`; each query then has exactly one relevant "
        f"document, so MRR@10 and R@10 (= Hit@10) fit. Every pair has {len(test.messages)} test queries, on the "
        "same messages for every pair. Q == D is the monolingual control.",
        "",
        "Tune (thresholds, recipes, training choices) on `queries-dev.jsonl` / `qrels-dev.txt` only; "
        "`queries-test.jsonl` / `qrels-test.txt` are held out and are read once, to report.",
        "",
        "## Languages",
        "",
        "| lang | locale folder | documents | test queries | dev queries | Apertium (offline MT) |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for lang in langs:
        pairs = [p for p, pair in APERTIUM_PAIRS.items() if lang in pair and set(pair) <= set(langs)]
        source = "the msgid (English source)" if LOCALES[lang] is None else f"`{LOCALES[lang]}`"
        mt = ", ".join(f"`{p}`" for p in pairs) if pairs else "**no pair**"
        lines.append(f"| {lang} | {source} | {n} | {len(test.messages)} | {len(dev.messages)} | {mt} |")
    lines += [
        "",
        f"Apertium-covered languages: {', '.join(covered)} (Debian packages the pairs above between them; "
        "any two of them are one pair or a pivot through es or ca apart). Not covered by any Debian Apertium "
        f"pair: {', '.join(uncovered)}. A benchmark can report the covered pairs (both languages covered) "
        "and the uncovered ones (at least one side uncovered) apart.",
        "",
        "## How it is built",
        "",
        "```sh",
        "python3 scripts/build_mo_benchmark.py",
        "```",
        "",
        f"Deterministic (seed {SEED}, sorted inputs): a rerun on the same installed packages writes identical "
        "files. Nothing was installed for it: the catalogs that the machine's packages (base system, GTK, "
        "GLib, systemd, PackageKit, ...) put under `/usr/share/locale` cover the chosen languages.",
        "",
        f"1. Read every `.mo` catalog of the {len(langs) - 1} locale folders ({len(found.catalogs)} catalogs) by "
        "parsing the GNU .mo format, decoding with the charset of the catalog's header. Plural entries "
        "(their forms do not align one to one across languages), empty translations and the header are "
        "dropped; a message context (msgctxt) is dropped from the key. Fuzzy entries are not in .mo files "
        "(msgfmt leaves them out).",
        "2. Keep only gettext domains that have a catalog in every language and whose msgids are English "
        "(at least half of the msgids of 6 or more words are ASCII and contain an English function word). "
        f"Domains left out as not English-source: {', '.join(found.non_english_domains) or 'none'}. "
        "iso-codes' domains (`iso_*`: names of countries, currencies, languages) are left out too: names, "
        "not sentences.",
        f"3. English filters on the msgid (count of distinct msgids dropped per reason): "
        f"{counts_line(found.english_rejects)}. That is: fewer than {MIN_WORDS} or more than {MAX_WORDS} words; "
        "line breaks or tabs (usage blocks, lists); format directives (`%`, `{`, `}`, `$`); markup (`<...>`, "
        "entities); accelerator markers (`_`, `&`: the message is dropped, not stripped); command-line options "
        "(`-x`, `--long`, also quoted); code and paths (`/ \\ = [ ] | * # @ ^ ~ + backtick`, CamelCase, dotted names, "
        "calls, `::`, under 75% letters, not starting with a letter); and text that does not look English.",
        "4. Translation filters, in every language (a message must pass in all of them, from one catalog; "
        "where several domains translate the msgid, the first that passes, sorted by name, is used): "
        f"{counts_line(found.translation_rejects) or 'none'}. That is: empty, identical to the English "
        "(untranslated), format directives, markup, accelerators (e.g. Japanese `(_O)`), options, or the wrong script "
        "(Japanese needs kana, Chinese Han and no kana, the others Latin letters). White space is collapsed "
        "to single spaces (translators wrap lines) and text is NFC.",
        f"5. {len(found.messages)} messages passed. They are drawn in random order (fixed seed) and kept "
        f"until {n}, skipping a message whose text in any language equals a kept message's after normalization "
        "(case, spacing, final full stop: deduplication by msgid and by translation), whose English is a "
        f"near-duplicate of a kept one (content words: Jaccard >= {NEAR_DUP_JACCARD} or overlap coefficient >= "
        f"{NEAR_DUP_OVERLAP}, as bible-xling), or whose domain already gave {int(MAX_DOMAIN_SHARE * 100)}% of "
        f"the messages (so GTK's property blurbs do not dominate). Skipped: {counts_line(chosen.skipped)}.",
        f"6. The first {len(test.messages)} drawn messages are the test messages, the next {len(dev.messages)} "
        "the dev messages.",
        f"7. Queries: the message itself, or when longer than about {QUERY_MAX_WORDS} English-equivalent words "
        f"its leading whole sentences within {QUERY_WORDS} (a longer first sentence is cut there). Limits are "
        "scaled by the median tokens per English word of each language ("
        + ", ".join(f"{lang} {s:.2f}" for lang, s in token_scales(chosen.kept, langs).items())
        + "; ja and zh count characters). Messages are short (median English length "
        f"{statistics.median(len(m.texts['en'].split()) for m in chosen.kept):g} words), so {cut_queries(splits)} of "
        f"the {sum(len(s.queries) for s in splits)} queries are cut; the others are whole messages.",
        "",
        "## Sources and licences",
        "",
        f"The kept messages come from {len(packages)} Debian packages (Debian 12, as installed on the build "
        "machine; `dpkg -S` on the catalogs, versions from `dpkg-query`). Message catalogs are part of their "
        "programs and mostly under the GPL or LGPL, so this data set is too: the licence column gives what the "
        "package's machine-readable copyright file says for `po/` (the translations), else points to the file. "
        "Redistribution must follow those licences (keep this README, which names the sources).",
        "",
        "| package | version | source package | gettext domains | messages kept | licence of po/ (debian/copyright) |",
        "| --- | --- | --- | --- | ---: | --- |",
    ]
    for row in packages:
        lines.append(
            f"| {row['package']} | {row['version']} | {row['source']} | {', '.join(sorted(row['domains']))} | "
            f"{row['messages']} | {row['licence']} |"
        )
    lines += ["", "## Examples (the first test messages drawn from five domains)", ""]
    for m in examples(chosen.kept[: len(test.messages)], 5):
        lines.append(f"* `{m.key}`")
        lines += [f"  * {lang}: {m.texts[lang]}" for lang in langs]
    return "\n".join(lines) + "\n"


def build(locale_root: Path, out: Path, langs: list[str], n: int, n_test: int, n_dev: int, seed: int) -> None:
    found = collect(locale_root, langs)
    chosen = select(found.messages, langs, n, seed)
    if len(chosen.kept) < n_test + n_dev:
        raise SystemExit(f"only {len(chosen.kept)} messages pass the filters; need {n_test + n_dev} for the queries")
    scales = token_scales(chosen.kept, langs)
    test = make_split("test", chosen.kept[:n_test], langs, scales)
    dev = make_split("dev", chosen.kept[n_test : n_test + n_dev], langs, scales)
    corpus = [
        {"id": f"{lang}-{m.key}", "text": m.texts[lang], "lang": lang}
        for m in sorted(chosen.kept, key=lambda m: m.key)
        for lang in langs
    ]
    files = {"corpus.jsonl": (f"{len(corpus)} documents: `id`, `text`, `lang`", demo.jsonl(corpus))}
    for split in (test, dev):
        files[f"queries-{split.name}.jsonl"] = (
            f"{len(split.queries)} {split.name} queries: `id`, `text`, `lang`",
            demo.jsonl(split.queries),
        )
        files[f"qrels-{split.name}.txt"] = (
            f"{len(split.qrels)} TREC lines `qid 0 docid 1`",
            "".join(f"{q} 0 {d} 1\n" for q, d in split.qrels),
        )
    for name, (_, text) in files.items():
        demo.atomic_write(out / name, text)
    packages = provenance(found.catalogs, chosen.kept)
    demo.atomic_write(out / "README.md", readme(langs, found, chosen, [test, dev], packages, files))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locale-root", default="/usr/share/locale")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "benchmarks/data/mo-xling"))
    parser.add_argument("--langs", default=",".join(LOCALES), help="comma-separated, from: " + ", ".join(LOCALES))
    parser.add_argument("--n-messages", type=int, default=N_MESSAGES)
    parser.add_argument("--n-test", type=int, default=N_TEST)
    parser.add_argument("--n-dev", type=int, default=N_DEV)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    langs = args.langs.split(",")
    unknown = [lang for lang in langs if lang not in LOCALES]
    if unknown or "en" not in langs:
        parser.error(f"--langs must include en and use only {', '.join(LOCALES)}; unknown: {unknown}")
    build(Path(args.locale_root), Path(args.out), langs, args.n_messages, args.n_test, args.n_dev, args.seed)


if __name__ == "__main__":
    main()
