"""Training, hard-negative mining and distillation on a tiny random-weight model built by the tests."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import WORDS

from xretrieve.cli import main
from xretrieve.config import MineConfig, TrainConfig
from xretrieve.errors import UserError
from xretrieve.formats import read_trec_run
from xretrieve.train import batch_languages, language_batch_sampler, load_examples, mine_negatives, train
from xretrieve.training_data import iter_training

LANGS = ("en", "es", "de")


def write_pairs(path: Path, n: int = 48, seed: int = 0, negatives: int = 0) -> Path:
    """Query: four words; positive: the same words reversed plus one more (so the pair is learnable)."""
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            words = list(rng.choice(WORDS, 4, replace=False))
            row = {
                "query_id": f"q{i}",
                "query": " ".join(words),
                "query_lang": LANGS[i % 3],
                "passage_lang": LANGS[(i + 1) % 3],
                "positive_passages": [{"docid": f"p{i}", "title": "", "text": " ".join(words[::-1]) + " water"}],
                "negative_passages": [
                    {"docid": f"n{i}-{j}", "title": "", "text": " ".join(rng.choice(WORDS, 4))}
                    for j in range(negatives)
                ],
            }
            f.write(json.dumps(row) + "\n")
    return path


def losses(model_dir: Path) -> list[float]:
    history = json.loads((model_dir / "training.json").read_text())["log_history"]
    return [h["loss"] for h in history if "loss" in h]


def quick(tmp_path: Path, model: Path, **settings) -> TrainConfig:
    defaults = dict(
        train_data=str(write_pairs(tmp_path / "train.jsonl")),
        out=str(tmp_path / "out"),
        model=str(model),
        max_steps=12,
        batch_size=8,
        learning_rate=1e-3,
        logging_steps=2,
        save_steps=100,
        progress=False,
    )
    return TrainConfig(**(defaults | settings))


def mrr(model_dir: Path, pairs: Path) -> float:
    """MRR of each training query's positive among all positives, with the model's own prompts."""
    from xretrieve.model import BiEncoder

    examples = list(iter_training(pairs))
    encoder = BiEncoder(str(model_dir))
    q = encoder.encode_queries([e.query for e in examples])
    p = encoder.encode_passages([e.positives[0].text for e in examples])
    scores = q @ p.T
    ranks = (scores > np.diag(scores)[:, None]).sum(axis=1) + 1
    return float(np.mean(1.0 / ranks))


def test_training_lowers_the_loss_and_saves_a_usable_model(tiny_model, tmp_path):
    from sentence_transformers import SentenceTransformer

    config = quick(tmp_path, tiny_model, max_steps=24)
    out = train(config)
    curve = losses(out)
    assert len(curve) >= 6
    assert np.mean(curve[-3:]) < 0.7 * np.mean(curve[:3])
    assert mrr(out, Path(config.train_data)) > mrr(tiny_model, Path(config.train_data))

    # a normal sentence-transformers folder, prompts included, plus xretrieve's settings
    loaded = SentenceTransformer(str(out), device="cpu")
    assert loaded.prompts["query"] == "query: " and loaded.prompts["passage"] == "passage: "
    settings = json.loads((out / "xretrieve.json").read_text())
    assert settings["query_prompt_name"] == "query" and settings["passage_prompt_name"] == "passage"
    assert settings["training"]["steps"] == 24
    assert settings["training"]["languages"] == {"de": 16, "en": 16, "es": 16}

    # ... that xretrieve indexes and searches with
    examples = list(iter_training(config.train_data))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": e.positives[0].id, "text": e.positives[0].text}) + "\n" for e in examples)
    )
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"id": e.query_id, "text": e.query}) + "\n" for e in examples))
    assert main(["index", "--corpus", str(corpus), "--out", str(tmp_path / "idx"), "--model", str(out), "--quiet"]) == 0
    run = tmp_path / "run.trec"
    assert (
        main(["search", "--index", str(tmp_path / "idx"), "--queries", str(queries), "--out", str(run), "--k", "5"])
        == 0
    )
    top1 = sum(read_trec_run(run)[e.query_id][0].docid == e.positives[0].id for e in examples)
    assert top1 >= len(examples) // 2


def test_resume_continues_from_the_checkpoint(tiny_model, tmp_path):
    """A run interrupted after its checkpoint at step 6 and resumed ends with the weights of the
    uninterrupted run: same batches, learning-rate schedule and random state."""
    import shutil

    from safetensors.numpy import load_file

    whole = train(quick(tmp_path, tiny_model, out=str(tmp_path / "whole"), save_steps=6))
    checkpoints = tmp_path / "whole.checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-12", "checkpoint-6"]
    shutil.rmtree(checkpoints / "checkpoint-12")  # as if stopped between step 6 and 12

    with pytest.raises(UserError, match="--resume"):
        train(quick(tmp_path, tiny_model, out=str(tmp_path / "again"), checkpoints=str(checkpoints), save_steps=6))
    resumed = train(
        quick(
            tmp_path, tiny_model, out=str(tmp_path / "resumed"), checkpoints=str(checkpoints), save_steps=6, resume=True
        )
    )
    history = json.loads((resumed / "training.json").read_text())["log_history"]
    before = json.loads((whole / "training.json").read_text())["log_history"]
    # the same losses step for step, the first three carried over in the checkpoint's state ...
    assert [(h["step"], h["loss"]) for h in history if "loss" in h] == [
        (h["step"], h["loss"]) for h in before if "loss" in h
    ]
    # ... and only steps 7-12 run now: the run's mean loss is theirs
    run_loss = next(h["train_loss"] for h in history if "train_loss" in h)
    assert run_loss == pytest.approx(np.mean([h["loss"] for h in history if "loss" in h and h["step"] > 6]), rel=1e-3)
    assert json.loads((resumed / "xretrieve.json").read_text())["training"]["steps"] == 12
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-5, err_msg=name)
    initial = load_file(str(tiny_model / "model.safetensors"))
    assert any(not np.allclose(initial[n], a[n]) for n in a)


def test_hard_negatives_cached_loss_and_dev_evaluation(tiny_model, tmp_path):
    pairs = write_pairs(tmp_path / "neg.jsonl", negatives=2)
    examples = list(iter_training(pairs))
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "corpus.jsonl").write_text(
        "".join(json.dumps({"id": e.positives[0].id, "text": e.positives[0].text}) + "\n" for e in examples)
    )
    (dev / "queries.jsonl").write_text(
        "".join(json.dumps({"id": e.query_id, "text": e.query}) + "\n" for e in examples)
    )
    (dev / "qrels.txt").write_text("".join(f"{e.query_id} 0 {e.positives[0].id} 1\n" for e in examples))
    out = train(
        quick(
            tmp_path,
            tiny_model,
            train_data=str(pairs),
            negatives=2,
            mini_batch_size=3,
            dev_corpus=str(dev / "corpus.jsonl"),
            dev_queries=str(dev / "queries.jsonl"),
            dev_qrels=str(dev / "qrels.txt"),
            eval_steps=6,
        )
    )
    history = json.loads((out / "training.json").read_text())["log_history"]
    evals = [h for h in history if "eval_dev_nDCG@10" in h]
    assert [h["step"] for h in evals] == [6, 12]
    assert all(0 <= h["eval_dev_RR@10"] <= 1 for h in evals)
    assert evals[-1]["eval_dev_RR@10"] > evals[0]["eval_dev_RR@10"] - 0.05  # training on the dev pairs themselves
    assert json.loads((out / "xretrieve.json").read_text())["training"]["negatives_used"] == 2

    with pytest.raises(UserError, match=r"--negatives 3 but example 'q0' has 2"):
        train(quick(tmp_path, tiny_model, train_data=str(pairs), negatives=3, out=str(tmp_path / "x")))


def test_language_batches(tmp_path):
    """Same-language batches hold one positive language; alpha 0 draws languages uniformly even when one
    language has most examples; no batch repeats a positive; batches depend on (seed, epoch) only."""
    from datasets import Dataset

    languages = ["en"] * 60 + ["sw"] * 12 + ["fi"] * 12
    keys = [f"p{i % 80}" for i in range(84)]  # rows 80-83 repeat the positives of rows 0-3
    dataset = Dataset.from_dict({"query": [str(i) for i in range(84)]})

    def batches(same: bool, alpha: float, seed: int = 0, epoch: int = 0) -> list[list[int]]:
        sampler = language_batch_sampler(languages, same, alpha, keys)(dataset, 6, True, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    same = batches(True, 1.0)
    assert len(same) == 14 and all(len(b) == 6 for b in same)
    assert all(len({languages[i] for i in b}) == 1 for b in same)
    for b in batches(False, 1.0) + same:
        assert len({keys[i] for i in b}) == len(b)
    drawn = Counter(languages[i] for _ in range(5) for b in batches(False, 0.0, epoch=_) for i in b)
    assert drawn["sw"] > 0.25 * sum(drawn.values()) and drawn["en"] < 0.45 * sum(drawn.values())
    proportional = Counter(languages[i] for b in batches(False, 1.0) for i in b)
    assert proportional["en"] > 0.6 * sum(proportional.values())
    assert batches(False, 1.0) == batches(False, 1.0)
    assert batches(False, 1.0, epoch=1) != batches(False, 1.0)

    examples = load_examples(str(write_pairs(tmp_path / "p.jsonl", n=6)))
    assert batch_languages(examples, "same-language") == ["es", "de", "en", "es", "de", "en"]
    assert batch_languages(examples, "mixed") == ["en", "es", "de", "en", "es", "de"]


def test_mined_negatives_never_contain_positives(tiny_model, tmp_path):
    pairs = write_pairs(tmp_path / "train.jsonl", n=30)
    examples = list(iter_training(pairs))
    rng = np.random.default_rng(3)
    rows = [{"id": e.positives[0].id, "text": e.positives[0].text, "lang": "es"} for e in examples]
    rows += [{"id": f"other{i}", "text": " ".join(rng.choice(WORDS, 5)), "lang": "en"} for i in range(40)]
    # near-duplicates of positives under other ids: must never come back as negatives
    rows += [{"id": f"dup{i}", "text": examples[i].positives[0].text + " .", "lang": "en"} for i in range(10)]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert (
        main(["index", "--corpus", str(corpus), "--out", str(tmp_path / "idx"), "--model", str(tiny_model), "--quiet"])
        == 0
    )
    # the training file names its positives by id only: joined with the corpus
    by_id = tmp_path / "by_id.jsonl"
    by_id.write_text(
        "".join(
            json.dumps({"query_id": e.query_id, "query": e.query, "positive_passages": [e.positives[0].id]}) + "\n"
            for e in examples
        )
    )
    out = tmp_path / "mined.jsonl"
    counts = mine_negatives(
        MineConfig(
            train_data=str(by_id),
            index=str(tmp_path / "idx"),
            out=str(out),
            corpus=str(corpus),
            negatives=4,
            min_rank=2,
            max_rank=30,
            duplicate_threshold=0.8,
            progress=False,
        )
    )
    mined = list(iter_training(out))
    assert [e.query_id for e in mined] == [e.query_id for e in examples]
    assert counts["excluded_duplicate"] > 0 and counts["negatives"] > 0
    from xretrieve.search import Searcher

    searcher = Searcher(tmp_path / "idx")
    hits = searcher.search([e.query for e in examples], k=30)
    for k, (example, hit_list) in enumerate(zip(mined, hits, strict=True)):
        ids = [n.id for n in example.negatives]
        assert len(ids) <= 4 and len(set(ids)) == len(ids)
        assert example.positives[0].id not in ids
        assert f"dup{k}" not in ids  # the near-duplicate of this query's positive
        ranked = [h.docid for h in hit_list]
        assert all(ranked.index(i) >= 1 for i in ids)  # rank window starts at 2
        assert ids == [d for d in ranked if d in ids]  # hardest first
        assert all(n.text for n in example.negatives)  # texts from the index's document store

    # a margin drops candidates scoring close to the positive
    strict = mine_negatives(
        MineConfig(
            train_data=str(by_id),
            index=str(tmp_path / "idx"),
            out=str(tmp_path / "m2.jsonl"),
            corpus=str(corpus),
            negatives=4,
            margin=0.5,
            progress=False,
        )
    )
    assert strict["excluded_margin"] > 0 and strict["negatives"] < counts["negatives"] + strict["excluded_margin"]
    # ... and mined negatives train
    model = train(quick(tmp_path, tiny_model, train_data=str(out), corpus=str(corpus), negatives=1, max_steps=4))
    assert json.loads((model / "xretrieve.json").read_text())["training"]["negatives_used"] == 1


def test_mining_reports_progress_while_it_searches(tiny_model, tmp_path, capsys):
    pairs = write_pairs(tmp_path / "train.jsonl", n=6)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": e.positives[0].id, "text": e.positives[0].text}) + "\n" for e in iter_training(pairs))
    )
    assert (
        main(["index", "--corpus", str(corpus), "--out", str(tmp_path / "idx"), "--model", str(tiny_model), "--quiet"])
        == 0
    )
    capsys.readouterr()
    config = MineConfig(train_data=str(pairs), index=str(tmp_path / "idx"), out=str(tmp_path / "m.jsonl"), negatives=1)
    mine_negatives(config)
    err = capsys.readouterr().err
    assert "mine-negatives: search: 100%" in err and "6/6" in err


def test_distillation_maps_translations_onto_the_teacher(tiny_model, tiny_model_b, tmp_path):
    """The student (other weights) learns the teacher's embedding of the source for source and translation."""
    from xretrieve.model import BiEncoder

    english = "the quick brown fox jumps over lazy dog water river sea mountain light dark love peace war king".split()
    spanish = "el zorro marron salta sobre perro perezoso".split()
    rng = np.random.default_rng(0)
    pairs = [(" ".join(rng.choice(english, 4)), " ".join(rng.choice(spanish, 4))) for _ in range(40)]
    parallel = tmp_path / "parallel.tsv"
    parallel.write_text("".join(f"{s}\t{t}\n" for s, t in pairs))
    teacher = BiEncoder(str(tiny_model))

    def distance(student_dir) -> float:
        student = BiEncoder(str(student_dir))
        target = teacher.encode_queries([s for s, _ in pairs])
        return float(np.mean((student.encode_queries([t for _, t in pairs]) - target) ** 2))

    before = distance(tiny_model_b)
    code = main(
        [
            "distill",
            "--parallel",
            str(parallel),
            "--out",
            str(tmp_path / "student"),
            "--teacher",
            str(tiny_model),
            "--student",
            str(tiny_model_b),
            "--max-steps",
            "30",
            "--batch-size",
            "8",
            "--learning-rate",
            "2e-3",
            "--quiet",
        ]
    )
    assert code == 0
    assert distance(tmp_path / "student") < 0.5 * before
    assert losses(tmp_path / "student")[-1] < losses(tmp_path / "student")[0]
    assert json.loads((tmp_path / "student" / "xretrieve.json").read_text())["training"]["pairs"] == 40


def test_cli_errors(tiny_model, tmp_path, capsys):
    pairs = write_pairs(tmp_path / "train.jsonl", n=4)
    base = ["train", "--train-data", str(pairs), "--model", str(tiny_model), "--quiet"]
    (tmp_path / "exists").mkdir()
    assert main([*base, "--out", str(tmp_path / "exists")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "o"), "--precision", "fp16", "--device", "cpu"]) == 2
    assert "fp16 needs a CUDA device" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "o"), "--batch-size", "1"]) == 2
    assert "at least 2" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query_id": "q1", "query": "x", "positive_passages": ["d9"]}) + "\n")
    assert main(["train", "--train-data", str(bad), "--out", str(tmp_path / "o"), "--model", str(tiny_model)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
    parallel = tmp_path / "p.tsv"
    parallel.write_text("only one column\n")
    assert main(["distill", "--parallel", str(parallel), "--out", str(tmp_path / "d"), "--model", str(tiny_model)]) == 2
    assert "p.tsv:1" in capsys.readouterr().err


def test_training_readers(tmp_path):
    """DPR's biencoder JSON (XOR-TyDi's retriever training data), bible-xling's language fields, parallel text."""
    from xretrieve.formats import read_parallel

    dpr = tmp_path / "xor_train.json"
    ctx = {"title": "Helsinki", "text": "Helsinki is the capital of Finland.", "passage_id": "123"}
    dpr.write_text(
        json.dumps(
            [
                {
                    "question": "Mikä on Suomen pääkaupunki?",
                    "lang": "fi",
                    "answers": ["Helsinki"],
                    "positive_ctxs": [ctx],
                    "negative_ctxs": [{"title": "Oslo", "text": "Oslo is in Norway.", "passage_id": "7"}],
                    "hard_negative_ctxs": [{"title": "Turku", "text": "Turku was the capital.", "passage_id": "9"}],
                }
            ]
        )
    )
    (example,) = load_examples(str(dpr))
    assert (example.query_id, example.lang, example.positives[0].id) == ("dpr-0", "fi", "123")
    assert [n.id for n in example.negatives] == ["9", "7"]  # hard negatives first
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps([{"question": "q", "positive_ctxs": []}]))
    with pytest.raises(UserError, match=r"broken.json: example 0: field 'positive_ctxs'"):
        load_examples(str(broken))

    (pair,) = load_examples(str(write_pairs(tmp_path / "p.jsonl", n=1)))
    assert (pair.lang, pair.positives[0].lang) == ("en", "es")

    jsonl = tmp_path / "parallel.jsonl"
    jsonl.write_text(json.dumps({"source": "peace", "translation": "paz"}) + "\n")
    tsv = tmp_path / "parallel.tsv"
    tsv.write_text("peace\tpaz\tFrieden\n")
    assert read_parallel(jsonl) == [("peace", "paz")]
    assert read_parallel(tsv) == [("peace", "paz"), ("peace", "Frieden")]
