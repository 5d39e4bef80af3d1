"""benchmarks/data/mo-xling: the committed data's invariants, and the builder's reading and filters on
small .mo catalogs written here byte by byte."""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import struct
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data" / "mo-xling"
LANGS = {"en", "es", "fr", "it", "pt", "ca", "de", "pl", "ja", "zh"}


def load_builder():
    spec = importlib.util.spec_from_file_location("build_mo_benchmark", ROOT / "scripts" / "build_mo_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


builder = load_builder()


def write_mo(path: Path, entries: dict[bytes, bytes], order: str = "<") -> Path:
    """A GNU .mo file: header, table of msgid (length, offset), table of msgstr, then the strings."""
    keys = sorted(entries)
    strings_at = 28 + 16 * len(keys)
    blob, ids, strs = b"", [], []
    for table, values in ((ids, keys), (strs, [entries[k] for k in keys])):
        for value in values:
            table.append((len(value), strings_at + len(blob)))
            blob += value + b"\0"
    header = struct.pack(order + "7I", 0x950412DE, 0, len(keys), 28, 28 + 8 * len(keys), 0, 0)
    tables = b"".join(struct.pack(order + "2I", *entry) for entry in ids + strs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + tables + blob)
    return path


HEADER = b"Content-Type: text/plain; charset=UTF-8\n"

# ---------------------------------------------------------------------------
# The committed data
# ---------------------------------------------------------------------------


def read_jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()]


def read_qrels(name: str) -> dict[str, set[str]]:
    qrels = defaultdict(set)
    for line in (DATA / name).read_text().splitlines():
        qid, zero, docid, rel = line.split()
        assert (zero, rel) == ("0", "1")
        qrels[qid].add(docid)
    return qrels


def message_of(record_id: str) -> str:
    """'q-de-glib20.abc' or 'de-glib20.abc' -> 'glib20.abc'."""
    return record_id.removeprefix("q-").split("-", 1)[1]


@pytest.fixture(scope="module")
def corpus() -> dict[str, dict]:
    docs = read_jsonl("corpus.jsonl")
    assert len({d["id"] for d in docs}) == len(docs), "document ids must be unique"
    return {d["id"]: d for d in docs}


@pytest.fixture(scope="module")
def splits() -> dict[str, tuple[list[dict], dict[str, set[str]]]]:
    return {name: (read_jsonl(f"queries-{name}.jsonl"), read_qrels(f"qrels-{name}.txt")) for name in ("dev", "test")}


def test_every_message_is_in_every_language(corpus):
    by_message = defaultdict(set)
    for doc in corpus.values():
        assert doc["id"] == f"{doc['lang']}-{message_of(doc['id'])}"
        by_message[message_of(doc["id"])].add(doc["lang"])
    assert 400 <= len(by_message) <= 600
    assert all(langs == LANGS for langs in by_message.values())


def test_split_sizes_and_disjoint_messages(splits):
    messages = {name: {message_of(q["id"]) for q in queries} for name, (queries, _) in splits.items()}
    assert (len(messages["test"]), len(messages["dev"])) == (100, 50)
    assert not messages["test"] & messages["dev"]
    ids = [q["id"] for queries, _ in splits.values() for q in queries]
    assert len(set(ids)) == len(ids) == 10 * 150
    for queries, _ in splits.values():
        per_lang = defaultdict(int)
        for q in queries:
            per_lang[q["lang"]] += 1
        assert set(per_lang) == LANGS and len(set(per_lang.values())) == 1


def test_each_query_has_its_message_in_every_language_and_nothing_else(corpus, splits):
    for queries, qrels in splits.values():
        assert set(qrels) == {q["id"] for q in queries}
        for q in queries:
            assert q["id"] == f"q-{q['lang']}-{message_of(q['id'])}"
            relevant = qrels[q["id"]]
            assert relevant <= set(corpus)
            assert sorted(corpus[d]["lang"] for d in relevant) == sorted(LANGS)
            assert {message_of(d) for d in relevant} == {message_of(q["id"])}


def test_queries_are_the_leading_part_of_their_message(corpus, splits):
    for queries, _ in splits.values():
        for q in queries:
            doc = corpus[q["id"].removeprefix("q-")]["text"]
            assert "".join(doc.split()).startswith("".join(q["text"].split()))
            if len(corpus[f"en-{message_of(q['id'])}"]["text"].split()) <= 20:
                assert q["text"] == doc  # short messages are queries whole


def test_filters_hold_in_the_data(corpus):
    for doc in corpus.values():
        text = doc["text"]
        assert text == " ".join(text.split()), doc["id"]
        for mark in ("%", "{", "}", "$", "<", ">", "_", "&", "\n"):
            assert mark not in text, (doc["id"], mark)
        assert not re.search(r"(?<![\w-])--?[A-Za-z](?!\w)|(?<![\w-])--\w", text), doc["id"]  # options
        if doc["lang"] == "en":
            assert len(text.split()) >= 6 and text.isascii() and not re.search(r"[/\\=|@#]", text), doc["id"]
        else:
            assert text != corpus[f"en-{message_of(doc['id'])}"]["text"], "untranslated"
    ja = [d["text"] for d in corpus.values() if d["lang"] == "ja"]
    assert all(any("\u3040" <= c <= "\u30ff" for c in t) for t in ja)


def test_no_two_kept_messages_share_a_translation(corpus):
    for lang in LANGS:
        texts = [d["text"].casefold().rstrip(".。 ") for d in corpus.values() if d["lang"] == lang]
        assert len(set(texts)) == len(texts), lang


def test_readme_names_sources_and_apertium_coverage():
    text = (DATA / "README.md").read_text(encoding="utf-8")
    for needle in ("libc-l10n", "GPL", "apertium-eng-spa", "Not covered by any Debian Apertium pair: de, pl, ja, zh"):
        assert needle in text


# ---------------------------------------------------------------------------
# The builder on hand-made catalogs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["<", ">"])
def test_read_catalog_drops_header_plurals_empties_and_context(tmp_path, order):
    path = write_mo(
        tmp_path / "x.mo",
        {
            b"": HEADER,
            b"Open the file in a new window": "Öffnet die Datei in einem neuen Fenster".encode(),
            b"one file\0%d files": b"eine Datei\0%d Dateien",
            b"Nothing has been translated here yet": b"",
            b"menu\x04Close the window and quit the program": b"Schliesst das Fenster und beendet das Programm",
        },
        order,
    )
    assert builder.read_catalog(path) == {
        "Open the file in a new window": "Öffnet die Datei in einem neuen Fenster",
        "Close the window and quit the program": "Schliesst das Fenster und beendet das Programm",
    }


def test_read_catalog_decodes_with_the_header_charset(tmp_path):
    path = write_mo(
        tmp_path / "x.mo",
        {b"": b"Content-Type: text/plain; charset=ISO-8859-1\n", b"Save": "Sauvegarder à nouveau".encode("latin-1")},
    )
    assert builder.read_catalog(path) == {"Save": "Sauvegarder à nouveau"}


def test_read_mo_rejects_other_files(tmp_path):
    (tmp_path / "x.mo").write_bytes(b"not a catalog at all")
    with pytest.raises(ValueError, match="not a GNU .mo"):
        builder.read_mo(tmp_path / "x.mo")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Print the version", "short"),
        ("Cannot open %s for reading right now", "format"),
        ("Could not find the file {0} in the folder", "format"),
        ("Set $HOME to the directory you want to use", "format"),
        ("Use <b>bold</b> text for the window title", "markup"),
        ("_Open the selected file in the editor", "accelerator"),
        ("Save &As a new file with another name", "accelerator"),
        ("Give either -a or --all to list every entry", "option"),
        ("You must give one of the '-x' options here", "option"),
        ("Read the configuration from /etc/foo.conf at startup", "code"),
        ("The GtkWidget that will receive the focus first", "code"),
        ("Usage: this command takes two arguments\nand one more", "multi-line"),
        ("Diese Datei kann nicht gelesen werden leider nein", "not-english"),
        ("Whether the window should be shown on every workspace", None),
        ("Authentication is required to reload the system state.", None),
    ],
)
def test_english_filters(text, reason):
    assert builder.reject_english(text) == reason


@pytest.mark.parametrize(
    ("text", "lang", "reason"),
    [
        ("", "de", "empty"),
        ("Whether the window is shown", "de", "untranslated"),
        ("ウィンドウを表示する (_S)", "ja", "accelerator"),
        ("Ob das Fenster mit %s angezeigt wird", "de", "format"),
        ("是否显示窗口", "ja", "script"),  # Chinese where Japanese is expected
        ("ウィンドウを表示するかどうか", "zh", "script"),
        ("Ob das Fenster angezeigt wird", "de", None),
        ("Ist der Umschaltknopf in einem »Zwischen«-Zustand, und -knöpfe?", "de", None),
        ("ウィンドウを表示するかどうか", "ja", None),
    ],
)
def test_translation_filters(text, lang, reason):
    assert builder.reject_translation(text, lang, "Whether the window is shown") == reason


def message(key: str, en: str, de: str, domain: str | None = None):
    return builder.Message(key, domain or key, {"en": en, "de": de})


def test_select_skips_near_duplicates_and_duplicate_translations():
    messages = [
        message("a", "Whether the widget should show the label text", "Ob das Widget den Text zeigt"),
        message("b", "Whether the widget should show the label icon", "Ob das Widget das Symbol zeigt"),
        message("c", "Failed to read the configuration file from disk", "Ob das Widget den Text zeigt."),
        message("d", "Authentication is required to suspend the system", "Legitimierung ist nötig"),
    ]
    chosen = builder.select(messages, ["en", "de"], n=10, seed=0)
    kept = {m.key for m in chosen.kept}
    assert "d" in kept and len(kept & {"a", "b"}) == 1 and not {"a", "c"} <= kept
    assert sum(chosen.skipped.values()) == 4 - len(kept)


def test_near_duplicates_differ_in_about_one_word():
    def words(text):
        return builder.content_words(text)

    assert builder.near_duplicate(
        words("The minimum vertical width of the bar"), words("The minimum horizontal width of the bar")
    )
    assert not builder.near_duplicate(
        words("Failed to read the file"), words("Failed to allocate memory for the buffer")
    )


def test_select_caps_each_domain_share():
    # distinct made-up words, so no message is a near-duplicate of another
    tokens = ["".join(letters) for letters in itertools.product("bcdfgh", "aeiou", "klmn")][:120]
    messages = [
        message(f"m{i}", " ".join(tokens[6 * i : 6 * i + 6]), tokens[6 * i], domain=f"d{i % 2}") for i in range(20)
    ]
    chosen = builder.select(messages, ["en", "de"], n=10, seed=0)
    assert sorted(m.domain for m in chosen.kept) == ["d0", "d1"]  # 15% of 10: one message per domain
    assert chosen.skipped == {"domain share": 18}


def test_make_query_keeps_short_messages_and_cuts_long_ones_at_a_sentence():
    short = "Authentication is required to reload the system state."
    assert builder.make_query(short, "en", 1.0) == short
    first = "The page size for the print job was not the printer's default page size."
    long = (
        first + " If this is not intentional it may cause alignment problems with every single page of this print job."
    )
    assert builder.make_query(long, "en", 1.0) == first
    run_on = " ".join(["word"] * 40)
    assert builder.make_query(run_on, "en", 1.0) == " ".join(["word"] * 20)
    assert builder.make_query("あ" * 100, "ja", 3.0) == "あ" * 60


def test_build_writes_the_layout_deterministically(tmp_path):
    root = tmp_path / "locale"
    sentences = {
        "Whether the window should be shown on every workspace": (
            "Ob das Fenster überall gezeigt wird",
            "ウィンドウを全ての場所に表示するかどうか",
        ),
        "Failed to read the configuration file from disk": (
            "Konfigurationsdatei konnte nicht gelesen werden",
            "設定ファイルを読めませんでした",
        ),
        "Authentication is required to suspend the system": (
            "Legitimierung ist zum Anhalten nötig",
            "システムのサスペンドには認証が必要です",
        ),
        "Cannot allocate enough memory for the new buffer": (
            "Speicher für den Puffer fehlt",
            "新しいバッファのメモリを確保できません",
        ),
        "Open the selected item in a new window, please": (
            "Öffnet das Element in neuem Fenster",
            "選択した項目を新しいウィンドウで開きます",
        ),
        "Show the %s window on top of the others": ("Zeige %s oben", "%s を上に表示"),
        "Die Datei kann nicht gelesen werden heute": ("Die Datei", "ファイル"),  # a German-source domain
    }
    # one domain per message, since a domain may give only 15% of the messages
    for domain, (english, texts) in enumerate(sentences.items()):
        for lang, text in zip(("de", "ja"), texts, strict=True):
            write_mo(root / lang / "LC_MESSAGES" / f"d{domain}.mo", {b"": HEADER, english.encode(): text.encode()})
    out = tmp_path / "out"
    args = ["--locale-root", str(root), "--out", str(out), "--langs", "en,de,ja", "--n-messages", "5"]
    builder.main([*args, "--n-test", "2", "--n-dev", "1"])

    corpus = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    assert len(corpus) == 15 and {d["lang"] for d in corpus} == {"en", "de", "ja"}
    assert not any("%" in d["text"] or "Datei kann" in d["text"] for d in corpus)
    assert len((out / "qrels-test.txt").read_text().splitlines()) == 2 * 3 * 3
    assert len((out / "qrels-dev.txt").read_text().splitlines()) == 1 * 3 * 3
    assert "Domains left out as not English-source: d6." in (out / "README.md").read_text()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    builder.main([*args, "--n-test", "2", "--n-dev", "1"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(SystemExit, match="only 5 messages pass"):
        builder.main([*args, "--n-test", "5", "--n-dev", "1"])
