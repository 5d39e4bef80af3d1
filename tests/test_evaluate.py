import json
import math

import pytest

from xretrieve.cli import main
from xretrieve.errors import UserError
from xretrieve.evaluation.evaluate import answer_hit, evaluate, parse_measures, xor_tokenize

QRELS = """q1 0 d1 1
q1 0 d2 2
q1 0 d3 0
q1 0 d9 1
q2 0 d4 1
q3 0 d5 1
q4 0 d6 0
"""
# q1: d1 and d2 tie (trec_eval puts d2 first: docid descending), u1/u2 unjudged; q2 found at rank 3;
# q3 judged but missing from the run; q4 has no relevant document; q5 is in the run but not judged.
RUN = """q1 Q0 d1 1 2.5 t
q1 Q0 d2 2 2.5 t
q1 Q0 u1 3 1.0 t
q1 Q0 d3 4 0.5 t
q1 Q0 u2 5 0.2 t
q2 Q0 u3 1 3.0 t
q2 Q0 u4 2 2.0 t
q2 Q0 d4 3 1.0 t
q4 Q0 d6 1 1.0 t
q5 Q0 d7 1 1.0 t
"""


def trec_eval_oracle(qrels: dict, run: dict, measure: str, cutoff: int, skip_missing: bool) -> float:
    """trec_eval by hand: order by score descending, ties by docid descending; -c unless skip_missing."""
    values = []
    for qid, judged in qrels.items():
        if skip_missing and qid not in run:
            continue
        ranked = sorted(run.get(qid, {}).items(), key=lambda item: (item[1], item[0]), reverse=True)[:cutoff]
        gains = [judged.get(doc, 0) for doc, _ in ranked]
        relevant = [g for g in judged.values() if g > 0]
        if measure == "ndcg":
            dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
            ideal = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(relevant, reverse=True)[:cutoff]))
            values.append(dcg / ideal if ideal else 0.0)
        elif measure == "recall":
            values.append(sum(g > 0 for g in gains) / len(relevant) if relevant else 0.0)
        elif measure == "rr":
            values.append(next((1 / (i + 1) for i, g in enumerate(gains) if g > 0), 0.0))
    return sum(values) / len(values)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "qrels.txt").write_text(QRELS)
    (tmp_path / "run.trec").write_text(RUN)
    queries = [
        {"id": "q1", "text": "a", "lang": "fi"},
        {"id": "q2", "text": "b", "lang": "fi"},
        {"id": "q3", "text": "c", "lang": "sw"},
        {"id": "q4", "text": "d", "lang": "sw"},
        {"id": "q5", "text": "e", "lang": "sw"},
    ]
    (tmp_path / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    return tmp_path


def parse(text, value_type):
    table = {}
    for line in text.strip().splitlines():
        fields = line.split()
        table.setdefault(fields[0], {})[fields[2]] = value_type(fields[3] if value_type is int else fields[4])
    return table


@pytest.mark.parametrize("skip_missing", [False, True])
def test_agrees_with_trec_eval_on_ties_missing_queries_and_unjudged_documents(files, skip_missing):
    summary = evaluate(
        str(files / "run.trec"),
        qrels=str(files / "qrels.txt"),
        skip_missing=skip_missing,
        metrics=["nDCG@10", "R@100", "RR@10"],
    )
    qrels, run = parse(QRELS, int), parse(RUN, float)
    assert summary["all"]["nDCG@10"] == pytest.approx(trec_eval_oracle(qrels, run, "ndcg", 10, skip_missing), abs=1e-4)
    assert summary["all"]["R@100"] == pytest.approx(trec_eval_oracle(qrels, run, "recall", 100, skip_missing), abs=1e-4)
    assert summary["all"]["RR@10"] == pytest.approx(trec_eval_oracle(qrels, run, "rr", 10, skip_missing), abs=1e-4)
    # the tie matters: ranking d1 before d2 (the run's own order) would give a higher nDCG
    assert summary["all"]["RR@10"] == pytest.approx((1 + 1 / 3 + 0 + 0) / (3 if skip_missing else 4), abs=1e-4)


def test_trec_eval_names_and_per_language_table(files):
    summary = evaluate(
        str(files / "run.trec"),
        qrels=str(files / "qrels.txt"),
        queries=str(files / "queries.jsonl"),
        metrics=["ndcg_cut.10", "recall.100"],
        out=str(files / "m.json"),
    )
    assert set(summary["all"]) == {"nDCG@10", "R@100"}
    assert set(summary["per_lang"]) == {"fi", "sw"}
    fi, sw = summary["per_lang"]["fi"]["R@100"], summary["per_lang"]["sw"]["R@100"]
    assert fi == pytest.approx((2 / 3 + 1) / 2, abs=1e-6) and sw == 0.0
    assert summary["macro"]["R@100"] == pytest.approx((fi + sw) / 2, abs=1e-6)
    assert json.loads((files / "m.json").read_text()) == summary


def test_unknown_measure_is_a_user_error():
    with pytest.raises(UserError, match="unknown measure 'nDCG@ten'"):
        parse_measures(["nDCG@ten"])


def test_xor_tokenization_follows_nltk_word_tokenize():
    assert xor_tokenize('Mr. Smith paid $3.50 in Washington D.C. today. He didn\'t "mind".') == [
        "Mr.",
        "Smith",
        "paid",
        "$",
        "3.50",
        "in",
        "Washington",
        "D.C.",
        "today",
        ".",
        "He",
        "did",
        "n't",
        "``",
        "mind",
        "''",
        ".",
    ]


def test_answer_recall_by_hand():
    passages = ["one two three four", "Helsinki is the capital of Finland"]
    assert answer_hit(passages, ["Helsinki"], max_tokens=5) is True  # tokens 1-4, then 'Helsinki' is the 5th
    assert answer_hit(passages, ["Helsinki"], max_tokens=4) is False
    assert answer_hit(passages, ["capital of Finland"], max_tokens=100) is True
    assert answer_hit(passages, ["yes", "no"], max_tokens=100) is None  # yes/no questions are skipped
    assert answer_hit(passages, ["yes", "Finland"], max_tokens=100) is True


def test_xor_retrieve_r_at_kt_from_cli(tmp_path):
    words = " ".join(f"w{i}" for i in range(1500))  # 1,500 tokens
    corpus = [
        {"id": "long1", "text": words},
        {"id": "long2", "text": words},
        {"id": "answer", "text": "Sibelius was born in Hämeenlinna ."},
    ]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in corpus))
    answers = [
        {"id": "a", "answers": ["Hämeenlinna"], "lang": "fi"},  # after 1,500 tokens: in 2kt and 5kt
        {"id": "b", "answers": ["Hämeenlinna"], "lang": "fi"},  # after 3,000 tokens: in 5kt only
        {"id": "c", "answers": ["yes"], "lang": "ja"},  # yes/no: not counted
        {"id": "d", "answers": ["Oslo"], "lang": "ja"},
    ]  # never found
    (tmp_path / "answers.jsonl").write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers))
    (tmp_path / "run.trec").write_text(
        "a Q0 long1 1 2 t\na Q0 answer 2 1 t\n"
        "b Q0 long1 1 3 t\nb Q0 long2 2 2 t\nb Q0 answer 3 1 t\n"
        "c Q0 answer 1 1 t\nd Q0 answer 1 1 t\n"
    )
    assert (
        main(
            [
                "evaluate",
                "--run",
                str(tmp_path / "run.trec"),
                "--answers",
                str(tmp_path / "answers.jsonl"),
                "--corpus",
                str(tmp_path / "corpus.jsonl"),
                "--out",
                str(tmp_path / "m.json"),
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "m.json").read_text())
    assert summary["per_lang"]["fi"] == {"R@2kt": 0.5, "R@5kt": 1.0}
    assert summary["per_lang"]["ja"] == {"R@2kt": 0.0, "R@5kt": 0.0}
    assert summary["all"] == {"R@2kt": pytest.approx(1 / 3, abs=1e-6), "R@5kt": pytest.approx(2 / 3, abs=1e-6)}
    assert summary["macro"] == {"R@2kt": 0.25, "R@5kt": 0.5}


def test_bad_run_line_names_file_and_line(tmp_path, capsys):
    (tmp_path / "run.trec").write_text("q1 Q0 d1 1 0.5 t\nq1 Q0 d2 two 0.4 t\n")
    (tmp_path / "qrels.txt").write_text("q1 0 d1 1\n")
    assert main(["evaluate", "--run", str(tmp_path / "run.trec"), "--qrels", str(tmp_path / "qrels.txt")]) == 2
    assert "run.trec:2: rank must be an integer" in capsys.readouterr().err


def test_rr_at_k_honours_its_cutoff_in_trec_eval_order(tmp_path):
    # qa: relevant at rank 3 -> RR@2 = 0, RR@3 = 1/3. qb: b and c tie at 1.0 and c is relevant; trec_eval
    # orders ties by docid descending, so c is 2nd -> RR@2 = 1/2 (1/3 if ties went the other way, or 0 at @2).
    # qc: relevant at rank 12 -> RR@10 = 0 (trec_eval's recip_rank without a cutoff would give 1/12).
    qrels = "qa 0 x3 1\nqb 0 c 1\nqc 0 z12 1\n"
    run = ["qa Q0 x1 1 3.0 t", "qa Q0 x2 2 2.0 t", "qa Q0 x3 3 1.0 t"]
    run += ["qb Q0 a 1 2.0 t", "qb Q0 b 2 1.0 t", "qb Q0 c 3 1.0 t"]
    run += [f"qc Q0 z{i:02d} {i} {100 - i}.0 t" for i in range(1, 12)] + ["qc Q0 z12 12 1.0 t"]
    (tmp_path / "qrels.txt").write_text(qrels)
    (tmp_path / "run.trec").write_text("\n".join(run) + "\n")
    summary = evaluate(
        str(tmp_path / "run.trec"), qrels=str(tmp_path / "qrels.txt"), metrics=["RR@2", "RR@3", "RR@10", "RR"]
    )
    per = summary["all"]
    assert per["RR@2"] == pytest.approx((0 + 1 / 2 + 0) / 3, abs=1e-6)
    assert per["RR@3"] == pytest.approx((1 / 3 + 1 / 2 + 0) / 3, abs=1e-6)
    assert per["RR@10"] == pytest.approx((1 / 3 + 1 / 2 + 0) / 3, abs=1e-6)
    assert per["RR"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 12) / 3, abs=1e-6)
