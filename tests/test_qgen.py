"""xQG: generator training (exact resume), sharded resumable generation, Apertium translation, and the chain
generate-queries -> augment -> index -> search/serve with real (tiny) models."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import WORDS, write_corpus

from xretrieve import cli
from xretrieve.apertium import ApertiumEngine
from xretrieve.config import GenerateConfig, TrainGeneratorConfig
from xretrieve.errors import UserError
from xretrieve.formats import Document, iter_generated
from xretrieve.xqg.backends.apertium import TranslationGenerator, lead_text
from xretrieve.xqg.backends.seq2seq import Seq2SeqGenerator
from xretrieve.xqg.generate import generate_queries
from xretrieve.xqg.shards import parts_folder
from xretrieve.xqg.template import GENERATOR_SETTINGS
from xretrieve.xqg.train_generator import init_t5, train_generator


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=8)) for _ in range(200)] + ["Generate a question for this passage:"]
    return init_t5(texts, tmp_path_factory.mktemp("t5") / "t5", vocab_size=120, d_model=32, layers=1)


def write_train(path: Path, n: int = 24) -> Path:
    rng = np.random.default_rng(1)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            passage = " ".join(rng.choice(WORDS, size=10))
            f.write(
                json.dumps(
                    {
                        "query_id": f"q{i}",
                        "query": " ".join(passage.split()[:4]),
                        "query_lang": ["es", "de"][i % 2],
                        "positive_passages": [{"docid": f"p{i}", "title": "", "text": passage}],
                        "negative_passages": [],
                    }
                )
                + "\n"
            )
    return path


def weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(folder / "model.safetensors")


def test_train_generator_resumes_exactly_where_it_stopped(tiny_t5, tmp_path):
    train = write_train(tmp_path / "train.jsonl")
    straight = tmp_path / "straight"
    code = cli.main(
        ["train-generator", "--model", str(tiny_t5), "--train", str(train), "--out", str(straight), "--quiet"]
        + ["--max-steps", "4", "--save-steps", "2", "--batch-size", "4", "--learning-rate", "1e-2"]
    )
    assert code == 0
    settings = json.loads((straight / GENERATOR_SETTINGS).read_text())
    assert settings["steps"] == 4 and settings["pairs"] == 24
    before, after = weights(tiny_t5), weights(straight)
    assert any(not np.array_equal(before[k], after[k]) for k in before)  # it trained
    # a run killed after its step-2 checkpoint leaves exactly that checkpoint behind
    killed = tmp_path / "killed"
    shutil.copytree(straight / "checkpoints" / "step-00000002", killed / "checkpoints" / "step-00000002")
    config = TrainGeneratorConfig(
        model=str(tiny_t5),
        out=str(killed),
        train=str(train),
        max_steps=4,
        save_steps=2,
        batch_size=4,
        learning_rate=1e-2,
        progress=False,
    )
    train_generator(config)
    resumed = weights(killed)
    assert all(np.array_equal(resumed[k], after[k]) for k in after)
    # a checkpoint of other settings is refused, not silently continued
    config.learning_rate = 1e-3
    with pytest.raises(UserError, match="different training run"):
        train_generator(config)


def test_train_generator_needs_query_languages(tiny_t5, tmp_path):
    train = tmp_path / "train.jsonl"
    record = {"query_id": "q1", "query": "a", "positive_passages": [{"docid": "p", "text": "the dog"}]}
    train.write_text(json.dumps(record) + "\n")
    config = TrainGeneratorConfig(model=str(tiny_t5), out=str(tmp_path / "g"), train=str(train), progress=False)
    with pytest.raises(UserError, match="no language"):
        train_generator(config)


def read_out(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_generate_queries_seq2seq(tiny_t5, tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", 7)
    out = tmp_path / "genq.jsonl"
    args = ["generate-queries", "--corpus", str(corpus), "--out", str(out), "--langs", "es,ja", "--quiet"]
    args += ["--generator", str(tiny_t5), "--num-queries", "3", "--max-new-tokens", "6", "--shard-size", "3"]
    assert cli.main(args) == 0
    rows = read_out(out)
    assert {(r["docid"], r["lang"]) for r in rows} == {(f"d{i}", lang) for i in range(7) for lang in ("es", "ja")}
    assert all(r["generator"] == str(tiny_t5.resolve()) and r["seed"] == 0 and r["text"] for r in rows)
    assert len(rows) <= 7 * 2 * 3 and len(rows) >= 7 * 2  # empty samples are dropped, the rest kept
    provenance = json.loads(Path(f"{out}.json").read_text())
    assert sum(provenance["queries"].values()) == len(rows) and provenance["passages"] == 7
    assert not parts_folder(out).exists()
    # the same seed gives the same queries; another seed other ones
    again = tmp_path / "again.jsonl"
    assert cli.main([*args[:4], str(again), *args[5:]]) == 0
    assert read_out(again) == rows
    other = tmp_path / "other.jsonl"
    assert cli.main([*args[:4], str(other), *args[5:], "--seed", "1"]) == 0
    assert [r["text"] for r in read_out(other)] != [r["text"] for r in rows]


class Dying:
    """Wraps a generator and raises after `calls` calls, as a kill in the middle of a run would stop it."""

    def __init__(self, inner, calls: int):
        self.inner, self.calls, self.identity = inner, calls, inner.identity
        self.made = 0

    def generate(self, docs, lang, num, seed):
        if self.made >= self.calls:
            raise KeyboardInterrupt
        self.made += 1
        return self.inner.generate(docs, lang, num, seed)


def test_generation_resumes_after_a_kill_and_shards_split_the_work(tiny_t5, tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", 10)
    generator = Seq2SeqGenerator(str(tiny_t5), max_new_tokens=5)

    def config(out, shard=None):
        return GenerateConfig(
            corpus=str(corpus),
            out=str(out),
            langs=["es", "fi"],
            generator=str(tiny_t5),
            num_queries=2,
            shard_size=4,
            batch_size=2,
            shard=shard,
            progress=False,
        )

    whole = generate_queries(config(tmp_path / "whole.jsonl"), Dying(generator, 10**6))
    # killed during the second shard (each 4-passage shard takes 2 languages x 2 batches = 4 calls)
    out = tmp_path / "resumed.jsonl"
    with pytest.raises(KeyboardInterrupt):
        generate_queries(config(out), Dying(generator, 6))
    assert not out.exists() and sorted(p.name for p in parts_folder(out).glob("*.json")) == ["shard-00000.json"]
    finishing = Dying(generator, 10**6)
    generate_queries(config(out), finishing)
    assert finishing.made == 4 + 2  # shard 1 (2 languages x 2 batches) and shard 2 (2 passages: 1 batch each)
    assert out.read_bytes() == whole.read_bytes()
    # two processes, each taking every other shard, write the same file
    split = tmp_path / "split.jsonl"
    generate_queries(config(split, (1, 2)), generator)
    assert not split.exists()
    generate_queries(config(split, (0, 2)), generator)
    assert split.read_bytes() == whole.read_bytes()


def test_generated_queries_reader_names_file_and_line(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text('{"docid": "d1", "lang": "es", "text": "hola"}\n{"docid": "d2", "lang": "es"}\n')
    with pytest.raises(UserError, match=r"g.jsonl:2: field 'text'"):
        list(iter_generated(path))


def test_lead_text():
    doc = Document("d", "In the beginning God created the heaven. And the earth was void.", title="Genesis")
    assert lead_text(doc, 32) == "Genesis In the beginning God created the heaven."
    assert lead_text(doc, 3) == "Genesis In the"


def apertium_or_skip() -> ApertiumEngine:
    """Skips where Apertium is missing; XRETRIEVE_REQUIRE_APERTIUM=1 (set in CI) makes that a failure."""
    missing = None
    if shutil.which("apertium") is None:
        missing = "Apertium is not installed (apt-get install apertium cg3 apertium-eng-spa apertium-spa-ita)"
    elif not {("en", "es"), ("es", "it")} <= set(ApertiumEngine().modes):
        missing = "Apertium pairs eng-spa and spa-ita are not installed"
    if missing and os.environ.get("XRETRIEVE_REQUIRE_APERTIUM") == "1":
        pytest.fail(f"XRETRIEVE_REQUIRE_APERTIUM=1 but {missing}")
    if missing:
        pytest.skip(missing)
    return ApertiumEngine()


def test_translation_backend_translates_pivots_and_skips_what_it_cannot(tmp_path):
    engine = apertium_or_skip()
    assert engine.route("en", "it") == ["eng-spa", "spa-ita"]  # no direct pair: through Spanish
    assert engine.route("en", "ja") is None
    generator = TranslationGenerator(engine)
    docs = [
        Document("e1", "The earth was empty. It was dark.", lang="en"),
        Document("s1", "La tierra estaba vacía.", lang="es"),
        Document("j1", "地は定形なく曠空くして", lang="ja"),
    ]
    spanish = generator.generate(docs, "es", 5, 0)
    assert spanish[0][0] == "apertium:eng-spa" and "tierra" in spanish[0][1][0]
    assert "oscuro" not in spanish[0][1][0]  # only the leading sentence
    assert spanish[1] == ("", []) and spanish[2] == ("", [])  # own language; no Japanese pair
    italian = generator.generate(docs, "it", 5, 0)
    assert italian[0][0] == "apertium:eng-spa>spa-ita" and "terra" in italian[0][1][0]
    assert italian[1][0] == "apertium:spa-ita"
    # through the CLI: passages with no route simply get no queries
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": d.id, "text": d.text, "lang": d.lang}) + "\n" for d in docs))
    out = tmp_path / "genq.jsonl"
    args = ["generate-queries", "--corpus", str(corpus), "--out", str(out), "--langs", "es,it,ja", "--quiet"]
    assert cli.main([*args, "--backend", "apertium"]) == 0
    got = {(r["docid"], r["lang"]) for r in read_out(out)}
    assert got == {("e1", "es"), ("e1", "it"), ("s1", "it")}


def test_seq2seq_backend_needs_a_generator(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", 3)
    code = cli.main(["generate-queries", "--corpus", str(corpus), "--out", str(tmp_path / "g"), "--langs", "es"])
    assert code == 2
