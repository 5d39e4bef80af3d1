"""evaluate --by doc-lang: the measures per language of the relevant documents, against hand-computed values."""

import json

import pytest

from xretrieve.cli import main
from xretrieve.errors import UserError
from xretrieve.evaluation.evaluate import evaluate

CORPUS = [("e1", "en"), ("e2", "en"), ("f1", "fi"), ("f2", "fi"), ("j1", "ja")]
QRELS = "q1 0 e1 1\nq1 0 f2 1\nq2 0 f1 1\nq2 0 e2 0\nq3 0 j1 0\n"
# q1 has an English and a Finnish answer, q2 a Finnish one (and a judged non-relevant English document);
# q3 judges only a non-relevant Japanese document, so no language of it counts q3
RUN = "q1 Q0 f1 1 0.9 t\nq1 Q0 e1 2 0.8 t\nq1 Q0 f2 3 0.7 t\nq2 Q0 e2 1 0.9 t\nq2 Q0 f1 2 0.5 t\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "corpus.jsonl").write_text(
        "".join(json.dumps({"id": d, "text": f"text {d}", "lang": lang}) + "\n" for d, lang in CORPUS)
    )
    (tmp_path / "qrels.txt").write_text(QRELS)
    (tmp_path / "run.trec").write_text(RUN)
    return tmp_path


def test_doc_lang_scores_each_language_with_its_own_judgments(files):
    summary = evaluate(
        str(files / "run.trec"),
        qrels=str(files / "qrels.txt"),
        corpus=str(files / "corpus.jsonl"),
        metrics=["RR@10", "R@2"],
        by="doc-lang",
    )
    # en: q1 only, e1 at rank 2. fi: q1 (f2 at rank 3, outside the top 2), q2 (f1 at rank 2).
    assert summary["per_doc_lang"] == {
        "en": {"RR@10": 0.5, "R@2": 1.0},
        "fi": {"RR@10": round((1 / 3 + 1 / 2) / 2, 6), "R@2": 0.5},
    }
    # every judgment at once, as before: q1's first relevant at rank 2, q2's at rank 2, q3 none
    assert summary["all"] == {"RR@10": round((0.5 + 0.5 + 0) / 3, 6), "R@2": round((0.5 + 1 + 0) / 3, 6)}


def test_doc_lang_from_the_cli(files, capsys):
    argv = ["evaluate", "--run", str(files / "run.trec"), "--qrels", str(files / "qrels.txt")]
    out = files / "m.json"
    assert (
        main(
            [
                *argv,
                "--corpus",
                str(files / "corpus.jsonl"),
                "--by",
                "doc-lang",
                "--metrics",
                "RR@10",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "doc:en" in table and "doc:fi" in table and "doc:ja" not in table
    assert json.loads(out.read_text())["per_doc_lang"]["en"] == {"RR@10": 0.5}


def test_doc_lang_needs_the_corpus(files):
    with pytest.raises(UserError, match="--by doc-lang needs --qrels and --corpus"):
        evaluate(str(files / "run.trec"), qrels=str(files / "qrels.txt"), by="doc-lang")
