"""synthesize (SWIM-IR synthetic training data) and the LLM backends of generate-queries: Apertium translation,
a stand-in OpenAI-compatible server on loopback, and a tiny random-weight causal LM folder (plumbing only)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import WORDS
from test_qgen import apertium_or_skip

from xretrieve import cli
from xretrieve.config import SynthesizeConfig
from xretrieve.errors import UserError
from xretrieve.formats import Document
from xretrieve.train import load_examples
from xretrieve.xqg.backends.apertium import key_texts, lead_text
from xretrieve.xqg.backends.llm import LLMGenerator
from xretrieve.xqg.llm import OpenAIChat, check_reply, parse_query
from xretrieve.xqg.shards import parts_folder
from xretrieve.xqg.synthesize import TranslationSynthesizer, synthesize

PASSAGES = [
    Document("e1", "Rivers carry water to the sea. The sea is large and deep. It is blue.", "Water", "en"),
    Document("s1", "El perro es un animal. El perro vive con las personas en la casa grande.", "El perro", "es"),
    Document("f1", "La nuit tombe sur la ville. Les gens rentrent chez eux le soir.", "La ville", "fr"),
    Document("j1", "地は定形なく曠空くして", "", "ja"),
]


def write_passages(path: Path, docs=PASSAGES) -> Path:
    path.write_text(
        "".join(json.dumps({"id": d.id, "title": d.title, "text": d.text, "lang": d.lang}) + "\n" for d in docs)
    )
    return path


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_key_texts_are_the_lead_then_the_longest_other_sentences():
    doc = Document("d", "One two. Three four five six. Seven eight nine. Ten.", "T")
    assert key_texts(doc, 3, 32) == ["T One two.", "T Three four five six.", "T Seven eight nine."]
    assert key_texts(doc, 1, 32) == [lead_text(doc, 32)]
    assert key_texts(Document("x", "Only one sentence"), 3, 2) == ["Only one"]


# --- --mt apertium ------------------------------------------------------------------------------------------------


def test_mt_translates_every_passage_into_other_languages_pivoting_and_counting_skips(tmp_path):
    engine = apertium_or_skip()
    if engine.route("fr", "it") != ["fr-es", "spa-ita"]:  # CI installs fr-es with the other pairs
        missing = "Apertium pair fr-es is not installed"
        if os.environ.get("XRETRIEVE_REQUIRE_APERTIUM") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    corpus = write_passages(tmp_path / "c.jsonl")
    out = synthesize(
        SynthesizeConfig(
            corpus=str(corpus),
            out=str(tmp_path / "d" / "train.jsonl"),
            langs=["es", "it"],
            mt="apertium",
            per_passage=2,
            seed=0,
            progress=False,
        )
    )
    rows = read_rows(out)
    assert [(r["query_id"], r["lang"]) for r in rows] == [
        ("e1-es-0", "es"),
        ("e1-es-1", "es"),
        ("e1-it-0", "it"),
        ("e1-it-1", "it"),
        ("s1-it-0", "it"),
        ("s1-it-1", "it"),
        ("f1-es-0", "es"),
        ("f1-es-1", "es"),
        ("f1-it-0", "it"),
        ("f1-it-1", "it"),
    ]  # no Spanish query for the Spanish passage; the Japanese one has no route
    by_id = {r["query_id"]: r for r in rows}
    assert by_id["f1-it-0"]["positive_passages"] == [
        {"docid": "f1", "title": "La ville", "text": PASSAGES[2].text, "lang": "fr"}
    ]
    assert all(r["negative_passages"] == [] for r in rows)
    # oracle: the same texts through the same modes by hand; French to Italian pivots through Spanish
    f1 = key_texts(PASSAGES[2], 2, 32)
    assert [by_id["f1-it-0"]["query"], by_id["f1-it-1"]["query"]] == engine.translate(
        engine.translate(f1, "fr-es"), "spa-ita"
    )
    assert by_id["e1-es-1"]["query"] == engine.translate(["Water The sea is large and deep."], "eng-spa")[0]
    summary = json.loads(Path(f"{out}.json").read_text())
    assert summary["queries"] == {"es": 4, "it": 6} and summary["passages"] == 4
    assert summary["skipped_no_route"] == {"es": 1, "it": 1} and summary["dropped"] == {}
    assert summary["settings"]["backend"]["backend"] == "apertium"
    assert not parts_folder(out).exists()
    # train's reader takes it as it is
    examples = load_examples(str(out))
    assert [e.query_id for e in examples] == [r["query_id"] for r in rows]
    assert examples[0].lang == "es" and examples[0].positives[0].id == "e1"
    # a rerun with the same settings does nothing: the file is not rewritten
    before = out.stat().st_mtime_ns
    assert (
        cli.main(
            [
                "synthesize",
                "--corpus",
                str(corpus),
                "--out",
                str(out),
                "--langs",
                "es,it",
                "--mt",
                "apertium",
                "--per-passage",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    assert out.stat().st_mtime_ns == before


def test_mt_runs_apertium_once_per_mode_for_all_source_languages(tmp_path):
    engine = apertium_or_skip()
    if engine.route("fr", "it") != ["fr-es", "spa-ita"]:
        pytest.skip("Apertium pair fr-es is not installed (the test above fails for it under CI)")
    calls = []

    class Counting:
        modes = engine.modes
        route = engine.route

        def translate(self, texts, mode):
            calls.append(mode)
            return engine.translate(texts, mode)

    docs = PASSAGES[:3]
    made = TranslationSynthesizer(Counting()).shard_queries(docs, ["es", "it", "en"], 2, 0)
    # en->es eng-spa; en->it eng-spa, spa-ita; es->it spa-ita; es->en spa-eng; fr->es fr-es; fr->it fr-es,
    # spa-ita; fr->en fr-es, spa-eng: four modes, each run once for every passage that needs it
    assert sorted(calls) == ["eng-spa", "fr-es", "spa-eng", "spa-ita"]
    by_key = {(docs[i].id, lang, k): q for i, lang, k, q in made.queries}
    assert len(by_key) == 2 * (2 + 2 + 3)  # two key texts each: en to es, it; es to it, en; fr to es, it, en
    fr_texts = key_texts(docs[2], 2, 32)
    assert [by_key["f1", "en", 0], by_key["f1", "en", 1]] == engine.translate(
        engine.translate(fr_texts, "fr-es"), "spa-eng"
    )


def test_mt_sample_and_shards(tmp_path):
    apertium_or_skip()
    docs = [Document(f"d{i}", f"The dog number {i} is here. It sleeps.", "", "en") for i in range(7)]
    corpus = write_passages(tmp_path / "c.jsonl", docs)

    def config(out, **kw):
        return SynthesizeConfig(
            corpus=str(corpus), out=str(out), langs=["es"], mt="apertium", shard_size=2, progress=False, **kw
        )

    whole = synthesize(config(tmp_path / "whole.jsonl"))
    assert [r["query_id"] for r in read_rows(whole)] == [f"d{i}-es-0" for i in range(7)]
    split = tmp_path / "split.jsonl"
    synthesize(config(split, shard=(1, 2)))
    assert not split.exists() and parts_folder(split).is_dir()
    synthesize(config(split, shard=(0, 2)))
    assert split.read_bytes() == whole.read_bytes()
    sampled = [r["query_id"] for r in read_rows(synthesize(config(tmp_path / "s.jsonl", sample=3, seed=5)))]
    assert len(sampled) == 3 and sampled == sorted(sampled, key=lambda q: int(q[1:].split("-")[0]))
    again = [r["query_id"] for r in read_rows(synthesize(config(tmp_path / "s2.jsonl", sample=3, seed=5)))]
    assert again == sampled


# --- bad input ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, message",
    [
        ([], "exactly one backend"),
        (["--mt", "apertium", "--llm", "http://127.0.0.1:9/v1"], "exactly one backend"),
        (["--mt", "apertium", "--langs", "es,xx"], "unknown language code 'xx'"),
        (["--llm", "no/such/folder"], "neither an http(s) URL nor an existing folder"),
        (["--mt", "apertium", "--index", "somewhere"], "--index is where --negatives are mined from"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, flags, message):
    corpus = write_passages(tmp_path / "c.jsonl")
    args = ["synthesize", "--corpus", str(corpus), "--out", str(tmp_path / "t.jsonl"), "--quiet"]
    if "--langs" not in flags:
        args += ["--langs", "es"]
    assert cli.main(args + flags) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "t.jsonl").exists()


def test_an_empty_corpus_is_one_line_and_exit_2(tmp_path, capsys):
    corpus = tmp_path / "empty.jsonl"
    corpus.write_text("\n")
    args = ["synthesize", "--corpus", str(corpus), "--out", str(tmp_path / "t.jsonl"), "--langs", "es"]
    assert cli.main([*args, "--mt", "apertium"]) == 2
    err = capsys.readouterr().err
    assert "empty.jsonl: no documents" in err and err.count("\n") == 1


def test_mt_with_negatives_is_mine_negatives_on_a_flat_index_of_the_corpus(tmp_path, tiny_model):
    apertium_or_skip()
    sentences = [
        "the dog sleeps by the river",
        "the king loves the sea",
        "water runs over the mountain",
        "light and dark in the war",
        "peace comes to the lazy fox",
        "the brown dog jumps over water",
    ]
    docs = [Document(f"d{i}", f"{s}. {s} again.", "", "en") for i, s in enumerate(sentences)]
    corpus = write_passages(tmp_path / "c.jsonl", docs)
    out = tmp_path / "train.jsonl"
    config = SynthesizeConfig(
        corpus=str(corpus),
        out=str(out),
        langs=["es"],
        mt="apertium",
        negatives=2,
        model=str(tiny_model),
        progress=False,
    )
    synthesize(config)
    index = tmp_path / "train.jsonl.index"
    assert json.loads((index / "manifest.json").read_text())["factory"] == "Flat"
    # oracle: the rows without negatives, then mine-negatives by hand on that index
    plain = synthesize(
        SynthesizeConfig(
            corpus=str(corpus), out=str(tmp_path / "p" / "plain.jsonl"), langs=["es"], mt="apertium", progress=False
        )
    )
    by_hand = tmp_path / "p" / "mined.jsonl"
    assert (
        cli.main(
            [
                "mine-negatives",
                "--train-data",
                str(plain),
                "--index",
                str(index),
                "--out",
                str(by_hand),
                "--corpus",
                str(corpus),
                "--negatives",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    assert out.read_bytes() == by_hand.read_bytes()
    examples = load_examples(str(out))  # train's reader
    assert len(examples) == 6 and sum(len(e.negatives) for e in examples) > 0
    assert all(n.text for e in examples for n in e.negatives)  # whole passages, not bare ids
    summary = json.loads(Path(f"{out}.json").read_text())
    assert summary["negatives"]["negatives"] == sum(len(e.negatives) for e in examples)
    assert summary["settings"]["negatives"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "c.jsonl",
        "p",
        "train.jsonl",
        "train.jsonl.index",
        "train.jsonl.json",
    ]


# --- parsing and checking replies --------------------------------------------------------------------------------


def test_parse_query_takes_the_text_after_the_last_query_line():
    assert parse_query("Summary: about bees.\nQuery: how do bees dance") == "how do bees dance"
    assert parse_query("Summary: x\nQuery (Swahili): nyuki hucheza vipi?") == "nyuki hucheza vipi?"
    assert parse_query("Query: first\nsome words\nQuery (Spanish): «segunda»\n") == "segunda"
    assert parse_query("**Query (German):** wann   wurde er eröffnet") == "wann wurde er eröffnet"
    assert parse_query("Query language: Swahili\nSummary: no query here") is None  # the echoed header is no query
    assert parse_query("just a sentence") is None
    assert parse_query("Query:   ") == ""


def test_check_reply_drops_by_reason():
    doc = Document("d", "The Suez Canal opened in 1869 after ten years of digging.", "Suez Canal")
    assert check_reply("Summary: s\nQuery (Swahili): mfereji wa Suez ulifunguliwa lini?", doc, 8) == (
        "mfereji wa Suez ulifunguliwa lini?",
        None,
    )
    assert check_reply(None, doc, 8) == (None, "request_failed")
    assert check_reply("I cannot help with that.", doc, 8) == (None, "no_query")
    assert check_reply("Summary: s\nQuery:", doc, 8) == (None, "empty_query")
    assert check_reply("Query: " + "word " * 9, doc, 8) == (None, "too_long")
    assert check_reply("Query: the suez canal opened in 1869.", doc, 8) == (None, "copied")  # a substring
    assert check_reply("Query: Suez Canal opened 1869 after ten years", doc, 8) == (None, "copied")  # 3-grams


# --- a stand-in OpenAI-compatible server ------------------------------------------------------------------------


class StandIn:
    """A chat completions endpoint on 127.0.0.1 that records every request and answers through `respond`:
    (request body, headers) -> (status, extra headers, body bytes). By default a SAP-style reply whose
    query names the passage's first word, so each row can be traced to its passage."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        stand_in = self
        self.requests: list[tuple[dict, dict]] = []
        self.lock = threading.Lock()
        self.respond = self.answer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stand_in.lock:
                    stand_in.requests.append((body, dict(self.headers)))
                status, headers, payload = stand_in.respond(body, dict(self.headers))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def passage(body: dict) -> str:
        """The passage the prompt asks about: the last 'Passage:' line of the user message."""
        return [line for line in body["messages"][0]["content"].splitlines() if line.startswith("Passage: ")][-1]

    @staticmethod
    def chat(content: str) -> tuple[int, dict, bytes]:
        return 200, {}, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()

    def answer(self, body: dict, headers: dict) -> tuple[int, dict, bytes]:
        word = self.passage(body).split()[1].rstrip(":")
        lang = body["messages"][0]["content"].rsplit("Query language: ", 1)[1].split()[0]
        return self.chat(f"Summary: a passage.\nQuery: not this one\nQuery ({lang}): what is zz {word} in {lang}?")

    def prompts(self) -> list[str]:
        return [body["messages"][0]["content"] for body, _ in self.requests]


@pytest.fixture
def stand_in():
    server = StandIn()
    yield server
    server.server.shutdown()
    server.server.server_close()


WORDED = [
    Document(f"d{i}", f"{w} river sea mountain light. The king of {w}.", "", "en")
    for i, w in enumerate(["alpha", "bravo", "charlie", "delta", "echo"])
]


def test_llm_endpoint_end_to_end(tmp_path, stand_in, monkeypatch):
    monkeypatch.setenv("XRETRIEVE_LLM_API_KEY", "sekret")
    monkeypatch.setenv("OPENAI_API_KEY", "other")
    corpus = write_passages(tmp_path / "c.jsonl", WORDED[:3])
    out = tmp_path / "train.jsonl"
    args = ["synthesize", "--corpus", str(corpus), "--out", str(out), "--langs", "es,sw", "--quiet"]
    assert cli.main([*args, "--llm", stand_in.url, "--llm-model", "tiny-chat", "--temperature", "0"]) == 0
    rows = read_rows(out)
    assert [(r["query_id"], r["query"]) for r in rows] == [
        (f"d{i}-{lang}-0", f"what is zz {w} in {name}?")
        for i, w in enumerate(["alpha", "bravo", "charlie"])
        for lang, name in (("es", "Spanish"), ("sw", "Swahili"))
    ]  # the last Query line wins
    assert rows[0]["positive_passages"][0]["text"] == WORDED[0].text
    assert len(stand_in.requests) == 6
    for body, headers in stand_in.requests:
        assert headers["Authorization"] == "Bearer sekret"
        assert body["model"] == "tiny-chat" and body["temperature"] == 0 and body["max_tokens"] == 256
    prompts = stand_in.prompts()
    assert all(any(f"Passage: {d.text}" in p for p in prompts) for d in WORDED[:3])  # the passage reaches the prompt
    assert sum("Query language: Swahili\nSummary:" in p for p in prompts) == 3  # summarize, then ask
    summary = json.loads(Path(f"{out}.json").read_text())
    assert summary["queries"] == {"es": 3, "sw": 3} and summary["dropped"] == {}
    assert summary["settings"]["backend"]["url"] == f"{stand_in.url}/chat/completions"
    assert "sekret" not in Path(f"{out}.json").read_text()
    # a rerun with the same settings asks nothing
    assert cli.main([*args, "--llm", stand_in.url, "--llm-model", "tiny-chat", "--temperature", "0"]) == 0
    assert len(stand_in.requests) == 6


def test_openai_api_key_is_the_fallback(stand_in, monkeypatch):
    monkeypatch.delenv("XRETRIEVE_LLM_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "from-openai")
    assert OpenAIChat(stand_in.url).complete(["Passage: x y\nQuery language: Spanish\n"], [0])[0]
    assert stand_in.requests[0][1]["Authorization"] == "Bearer from-openai"
    assert "model" not in stand_in.requests[0][0]  # no --llm-model: the server's own choice (llama.cpp, Ollama)
    assert LLMGenerator(OpenAIChat(stand_in.url), 32).label == f"llm:{stand_in.url}/chat/completions"


def scripted(stand_in: StandIn, *answers):
    """Answer the first requests with `answers` (status, headers), then normally."""
    queue = list(answers)

    def respond(body, headers):
        if queue:
            status, extra = queue.pop(0)
            return status, extra, b'{"error": "scripted"}'
        return stand_in.answer(body, headers)

    stand_in.respond = respond


PROMPT = "Passage: alpha beta\nQuery language: Spanish\n"


def test_a_500_then_a_200_is_retried(stand_in):
    scripted(stand_in, (500, {}), (503, {}))
    replies = OpenAIChat(stand_in.url, backoff=0.01).complete([PROMPT], [0])
    assert parse_query(replies[0]) == "what is zz alpha in Spanish?" and len(stand_in.requests) == 3


def test_a_429_waits_as_retry_after_says(stand_in):
    import time

    scripted(stand_in, (429, {"Retry-After": "1"}))
    start = time.monotonic()
    replies = OpenAIChat(stand_in.url, backoff=0.01).complete([PROMPT], [0])
    assert time.monotonic() - start >= 1.0 and replies[0] and len(stand_in.requests) == 2


def test_a_timeout_is_retried(stand_in):
    import time

    slow_once = [True]

    def respond(body, headers):
        if slow_once.pop() if slow_once else False:
            time.sleep(0.6)
        return stand_in.answer(body, headers)

    stand_in.respond = respond
    replies = OpenAIChat(stand_in.url, timeout=0.2, backoff=0.01).complete([PROMPT], [0])
    assert replies[0] and len(stand_in.requests) == 2


def test_another_4xx_stops_at_once_with_one_line(stand_in):
    scripted(stand_in, (401, {}))
    with pytest.raises(UserError, match=r"HTTP 401 Unauthorized: \{\"error\": \"scripted\"\}$"):
        OpenAIChat(stand_in.url, backoff=0.01).complete([PROMPT], [0])
    assert len(stand_in.requests) == 1


def test_a_4xx_stops_at_once_while_other_requests_wait_to_retry(stand_in):
    import time

    def respond(body, headers):
        if "alpha" in stand_in.passage(body):
            return 503, {"Retry-After": "30"}, b"busy"
        return 403, {}, b"forbidden"

    stand_in.respond = respond
    start = time.monotonic()
    with pytest.raises(UserError, match="HTTP 403"):
        OpenAIChat(stand_in.url, concurrency=2).complete([PROMPT, PROMPT.replace("alpha", "bravo")], [0, 1])
    assert time.monotonic() - start < 10  # not the 30 s the first request was told to wait


def test_an_endpoint_that_never_answers_stops_the_run(stand_in):
    scripted(stand_in, *[(500, {})] * 10)
    with pytest.raises(UserError, match="every request failed after 2 retries: HTTP 500"):
        OpenAIChat(stand_in.url, retries=2, backoff=0.01).complete([PROMPT, PROMPT], [0, 1])
    assert len(stand_in.requests) == 6


def test_garbage_replies_are_dropped_and_counted_by_reason(tmp_path, stand_in):
    garbage = {
        "alpha": "I am sorry, I cannot do that.",  # no query line
        "bravo": "Summary: fine.\nQuery (Spanish):",  # empty
        "charlie": "Query: " + "muy " * 40,  # too long
        "delta": "Query: delta river sea mountain light",  # copied from the passage
    }

    def respond(body, headers):
        word = stand_in.passage(body).split()[1]
        if word == "echo":
            return 200, {}, b"<html>not json</html>"  # a broken reply: the request failed
        return stand_in.chat(garbage[word]) if word in garbage else stand_in.answer(body, headers)

    stand_in.respond = respond
    corpus = write_passages(tmp_path / "c.jsonl", WORDED + [Document("d5", "foxtrot dog. Dark.", "", "en")])
    out = synthesize(
        SynthesizeConfig(
            corpus=str(corpus), out=str(tmp_path / "t.jsonl"), langs=["es"], llm=stand_in.url, progress=False
        )
    )
    assert [r["query"] for r in read_rows(out)] == ["what is zz foxtrot in Spanish?"]
    summary = json.loads(Path(f"{out}.json").read_text())
    assert summary["dropped"] == {"no_query": 1, "empty_query": 1, "too_long": 1, "copied": 1, "request_failed": 1}
    assert summary["queries"] == {"es": 1}


def test_a_run_stopped_by_the_endpoint_resumes_without_asking_again(tmp_path, stand_in):
    corpus = write_passages(tmp_path / "c.jsonl", WORDED)  # shards of 2: {alpha, bravo} {charlie, delta} {echo}
    fresh = synthesize(
        SynthesizeConfig(
            corpus=str(corpus),
            out=str(tmp_path / "fresh.jsonl"),
            langs=["es", "fr"],
            llm=stand_in.url,
            shard_size=2,
            progress=False,
        )
    )
    stand_in.requests.clear()

    def fail_on_shard_1(body, headers):
        if stand_in.passage(body).split()[1] in ("charlie", "delta"):
            return 400, {}, b'{"error": "context length exceeded"}'
        return stand_in.answer(body, headers)

    stand_in.respond = fail_on_shard_1
    out = tmp_path / "train.jsonl"
    args = ["synthesize", "--corpus", str(corpus), "--out", str(out), "--langs", "es,fr", "--shard-size", "2"]
    assert cli.main([*args, "--llm", stand_in.url, "--quiet"]) == 2
    assert not out.exists() and (parts_folder(out) / "shard-00000.json").is_file()
    assert not (parts_folder(out) / "shard-00001.json").exists()
    stand_in.requests.clear()
    stand_in.respond = stand_in.answer
    assert cli.main([*args, "--llm", stand_in.url, "--quiet"]) == 0
    asked = {StandIn.passage(body).split()[1] for body, _ in stand_in.requests}
    assert asked == {"charlie", "delta", "echo"}  # shard 0 was not asked again
    assert out.read_bytes() == fresh.read_bytes()


def test_generate_queries_llm_backend(tmp_path, stand_in):
    def respond(body, headers):
        if "bravo" in stand_in.passage(body):
            return stand_in.chat("no idea")
        return stand_in.answer(body, headers)

    stand_in.respond = respond
    corpus = write_passages(tmp_path / "c.jsonl", WORDED[:3])
    out = tmp_path / "genq.jsonl"
    args = ["generate-queries", "--corpus", str(corpus), "--out", str(out), "--langs", "sw", "--quiet"]
    assert cli.main([*args, "--backend", "llm", "--llm", stand_in.url, "--llm-model", "m", "--num-queries", "2"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # greedy-equal replies for the same passage are one query: the repeat is dropped as a duplicate
    assert [(r["docid"], r["lang"], r["text"], r["generator"]) for r in rows] == [
        ("d0", "sw", "what is zz alpha in Swahili?", "llm:m"),
        ("d2", "sw", "what is zz charlie in Swahili?", "llm:m"),
    ]
    prompts = stand_in.prompts()
    assert len(prompts) == 6 and all(p.endswith("Query language: Swahili\n") for p in prompts)
    assert "Summary" not in prompts[0]  # xQG asks for the query alone
    summary = json.loads(Path(f"{out}.json").read_text())
    assert summary["queries"] == {"sw": 2} and summary["dropped"] == {"no_query": 2, "duplicate": 2}
    assert cli.main([*args, "--backend", "llm"]) == 2  # --backend llm needs --llm


# --- a local causal LM (random weights: plumbing, no quality) -----------------------------------------------------


@pytest.fixture(scope="module")
def tiny_causal_lm(tmp_path_factory) -> Path:
    """A 2-layer Llama with random weights and a word-level tokenizer over a few words, built offline."""
    import torch
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    words = sorted(set(WORDS) | {"Query:", "Query", "(Spanish):", "Summary:", "Passage:", "?"})
    vocab = {token: i for i, token in enumerate(["<pad>", "<unk>", "<s>", "</s>", *words])}
    tokenizer = Tokenizer(tok_models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece()  # joins the words with spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    folder = tmp_path_factory.mktemp("causal") / "lm"
    LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def test_local_causal_lm_plumbing(tmp_path, tiny_causal_lm):
    corpus = write_passages(tmp_path / "c.jsonl", WORDED[:3])
    out = tmp_path / "train.jsonl"
    args = ["synthesize", "--corpus", str(corpus), "--out", str(out), "--langs", "es,sw", "--per-passage", "2"]
    args += ["--llm", str(tiny_causal_lm), "--max-new-tokens", "6", "--batch-size", "4", "--quiet"]
    assert cli.main(args) == 0
    summary = json.loads(Path(f"{out}.json").read_text())
    rows = read_rows(out)
    # every prompt got a reply (none failed); each became a row or a drop with its reason
    assert "request_failed" not in summary["dropped"]
    assert len(rows) + sum(summary["dropped"].values()) == 3 * 2 * 2
    assert sum(summary["queries"].values()) == len(rows)
    assert summary["settings"]["backend"]["backend"] == "causal-lm"
    assert summary["settings"]["backend"]["name"] == str(tiny_causal_lm.resolve())
    # greedy generation repeats exactly
    from xretrieve.xqg.llm import LocalCausalLM, sap_prompt

    lm = LocalCausalLM(str(tiny_causal_lm), batch_size=2, max_new_tokens=5, temperature=0)
    prompts = [sap_prompt(d, "es") for d in WORDED[:3]]
    first = lm.complete(prompts, [1, 2, 3])
    assert all(isinstance(r, str) for r in first) and lm.complete(prompts, [7, 8, 9]) == first
    # left padding: a prompt's reply does not depend on the batch it shares
    assert (
        LocalCausalLM(str(tiny_causal_lm), batch_size=1, max_new_tokens=5, temperature=0).complete(prompts, [1, 2, 3])
        == first
    )


def test_local_causal_lm_uses_the_chat_template_when_there_is_one(tmp_path, tiny_causal_lm):
    import shutil

    from transformers import AutoTokenizer

    from xretrieve.xqg.llm import LocalCausalLM

    chat = tmp_path / "chat"
    shutil.copytree(tiny_causal_lm, chat)
    tokenizer = AutoTokenizer.from_pretrained(chat)
    tokenizer.chat_template = "{% for m in messages %}<s> {{ m['content'] }}{% endfor %} Summary:"
    tokenizer.save_pretrained(chat)
    lm = LocalCausalLM(str(chat), max_new_tokens=3, temperature=0)
    assert lm.identity["chat_template"] and lm._render("the dog") == "<s> the dog Summary:"
    assert LocalCausalLM(str(tiny_causal_lm))._render("the dog") == "the dog"
    assert len(lm.complete(["the dog", "the sea"], [0, 1])) == 2


def test_endpoint_urls_and_retry_after_values():
    import email.utils
    import time

    from xretrieve.xqg.llm import _retry_after, chat_url

    for given in ("http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/chat/completions"):
        assert chat_url(given) == "http://h:8000/v1/chat/completions"
    assert _retry_after("3") == 3.0 and _retry_after("-2") == 0.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= _retry_after(in_a_minute) <= 60
