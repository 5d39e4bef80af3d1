"""synthesize (SWIM-IR synthetic training data) and the LLM backends of generate-queries: Apertium translation,
a stand-in OpenAI-compatible server on loopback, and a tiny random-weight causal LM folder (plumbing only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_qgen import apertium_or_skip

from xretrieve import cli
from xretrieve.config import SynthesizeConfig
from xretrieve.formats import Document
from xretrieve.qgen import key_texts, lead_text, parts_folder
from xretrieve.synthesize import synthesize
from xretrieve.train import load_examples

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
    if engine.route("fr", "it") != ["fr-es", "spa-ita"]:
        pytest.skip("Apertium pair fr-es is not installed")
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
