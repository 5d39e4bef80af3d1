import gzip
import json
from pathlib import Path

import pytest

from xretrieve.convert import convert_dataset
from xretrieve.convert.xor_retrieve import iter_dpr_passages
from xretrieve.errors import UserError
from xretrieve.formats import Document, read_corpus, read_lines, read_queries
from xretrieve.training_data import TrainingExample, iter_training


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def write(path, text: str, compress: bool = False):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def jsonl(*records) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def corpus_rows(path):
    return [(d.id, d.title, d.text, d.lang) for d in read_corpus(path)]


# --- MIRACL ---------------------------------------------------------------------------------------------------


def miracl_tree(root, lang="sw"):
    """The two official HF repos side by side: miracl/miracl (topics, qrels) and miracl/miracl-corpus."""
    base = root / "miracl" / f"miracl-v1.0-{lang}"
    write(base / "topics" / f"topics.miracl-v1.0-{lang}-dev.tsv", "0\tNini maana ya albedo?\n7\tMji mkuu wa Kenya\n")
    # MIRACL writes tabs; TREC tools write spaces: both are TREC qrels
    write(base / "qrels" / f"qrels.miracl-v1.0-{lang}-dev.tsv", "0\tQ0\t39#0\t1\n0\tQ0\t39#1\t0\n7 Q0 12#3 1\n")
    shards = root / "miracl-corpus" / f"miracl-corpus-v1.0-{lang}"
    for n in (10, 0, 2):  # numeric order 0, 2, 10; name order would put docs-10 before docs-2
        write(
            shards / f"docs-{n}.jsonl.gz", jsonl({"docid": f"{n}#0", "title": f"T{n}", "text": f"maandishi {n}"}), True
        )
    return root


def test_miracl_root_converts_topics_qrels_and_corpus_shards_in_numeric_order(tmp_path):
    written = convert_dataset("miracl", str(miracl_tree(tmp_path / "src")), str(tmp_path / "out"), lang="sw")
    assert set(written) == {"queries", "qrels", "corpus"}
    queries = read_queries(written["queries"])
    assert [(q.id, q.text, q.lang) for q in queries] == [
        ("0", "Nini maana ya albedo?", "sw"),
        ("7", "Mji mkuu wa Kenya", "sw"),
    ]
    assert read_lines(written["qrels"]) == ["0 0 39#0 1", "0 0 39#1 0", "7 0 12#3 1"]
    assert corpus_rows(written["corpus"]) == [
        ("0#0", "T0", "maandishi 0", "sw"),
        ("2#0", "T2", "maandishi 2", "sw"),
        ("10#0", "T10", "maandishi 10", "sw"),
    ]


def test_miracl_train_split_writes_training_rows_joined_with_the_corpus(tmp_path):
    root = miracl_tree(tmp_path / "src")
    base = root / "miracl" / "miracl-v1.0-sw"
    write(base / "topics" / "topics.miracl-v1.0-sw-train.tsv", "1\tSwali moja\n2\tSwali bila jibu\n")
    # query 1: one relevant, two judged non-relevant; query 2: nothing relevant, so no training row
    write(base / "qrels" / "qrels.miracl-v1.0-sw-train.tsv", "1 Q0 2#0 0\n1 Q0 10#0 1\n1 Q0 0#0 0\n2 Q0 0#0 0\n")
    written = convert_dataset("miracl", str(root), str(tmp_path / "out"), lang="sw", split="train")
    assert set(written) == {"queries", "qrels", "corpus", "train"}
    corpus = {d.id: d for d in read_corpus(written["corpus"])}
    assert list(iter_training(written["train"], corpus)) == [
        TrainingExample("1", "Swali moja", [corpus["10#0"]], [corpus["2#0"], corpus["0#0"]], "sw")
    ]


def test_miracl_test_split_has_topics_only_and_takes_the_loader_split_name(tmp_path):
    root = tmp_path / "src"
    write(root / "miracl-v1.0-te" / "topics" / "topics.miracl-v1.0-te-test-a.tsv", "5\tప్రశ్న\n")
    written = convert_dataset("miracl", str(root), str(tmp_path / "out"), lang="te", split="testA")
    assert set(written) == {"queries"}
    assert [(q.id, q.lang) for q in read_queries(written["queries"])] == [("5", "te")]


def test_miracl_reads_a_plain_jsonl_corpus_folder_given_directly(tmp_path):
    root = tmp_path / "miracl-corpus-v1.0-yo"
    write(root / "topics.miracl-v1.0-yo-test-b.tsv", "1\tibeere\n")
    write(root / "docs-0.jsonl", jsonl({"docid": "4#1", "title": "Ọ̀yọ́", "text": "ìlú"}))
    written = convert_dataset("miracl", str(root), str(tmp_path / "out"), lang="yo", split="test-b")
    assert corpus_rows(written["corpus"]) == [("4#1", "Ọ̀yọ́", "ìlú", "yo")]


def test_miracl_missing_topics_names_the_file_looked_for(tmp_path):
    root = miracl_tree(tmp_path / "src")
    with pytest.raises(UserError, match=r"no MIRACL sw train topics found \(looked for topics\.miracl-v1\.0-sw-train"):
        convert_dataset("miracl", str(root), str(tmp_path / "out"), lang="sw", split="train")


def test_miracl_dev_without_qrels_is_an_error(tmp_path):
    root = tmp_path / "src"
    write(root / "miracl-v1.0-fi" / "topics" / "topics.miracl-v1.0-fi-dev.tsv", "1\tkysymys\n")
    with pytest.raises(UserError, match=r"no MIRACL fi dev qrels found \(looked for qrels\.miracl-v1\.0-fi-dev\.tsv\)"):
        convert_dataset("miracl", str(root), str(tmp_path / "out"), lang="fi")


def test_miracl_without_lang_lists_the_languages_present(tmp_path):
    root = miracl_tree(tmp_path / "src", lang="sw")
    write(root / "miracl" / "miracl-v1.0-ja" / "topics" / "topics.miracl-v1.0-ja-dev.tsv", "1\t質問\n")
    with pytest.raises(UserError, match=r"MIRACL needs a language \(found in .*: ja, sw\)"):
        convert_dataset("miracl", str(root), str(tmp_path / "out"))


def test_miracl_bad_corpus_row_names_shard_line_and_field(tmp_path):
    root = miracl_tree(tmp_path / "src")
    shard = root / "miracl-corpus" / "miracl-corpus-v1.0-sw" / "docs-2.jsonl.gz"
    write(shard, jsonl({"docid": "2#0", "text": "sawa"}, {"docid": "2#1", "title": "", "text": ""}), True)
    with pytest.raises(UserError, match=r"docs-2\.jsonl\.gz:2: field 'text' is missing or empty"):
        convert_dataset("miracl", str(root), str(tmp_path / "out"), lang="sw")
    assert not (tmp_path / "out" / "corpus.jsonl").exists()  # the atomic write left nothing half-written


def test_corrupt_gzip_shard_is_a_user_error(tmp_path):
    root = miracl_tree(tmp_path / "src")
    (root / "miracl-corpus" / "miracl-corpus-v1.0-sw" / "docs-0.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match=r"docs-0\.jsonl\.gz: not a readable gzip file"):
        convert_dataset("miracl", str(root), str(tmp_path / "out"), lang="sw")


# --- XOR-TyDi XOR-Retrieve ------------------------------------------------------------------------------------

DPR_TSV = (
    'id\ttext\ttitle\n1\t"Aaron Aaron ( or ; ""Ahärôn"") is a prophet"\tAaron\n2\tSo he said: Moses and Aaron\tAaron\n'
)


def test_xor_dev_writes_queries_answers_and_the_dpr_collection(tmp_path):
    root = tmp_path / "xor"
    write(
        root / "xor_dev_retrieve_eng_span_v1_1.jsonl",
        jsonl(
            {"id": "-7998386046307637779", "question": "東京の人口は？", "answers": ["14 million"], "lang": "ja"},
            {"id": "4711", "question": "Кто такой Аарон?", "answers": ["prophet", "priest"], "lang": "ru "},
        ),
    )
    write(root / "psgs_w100.tsv", DPR_TSV)
    written = convert_dataset("xor-retrieve", str(root), str(tmp_path / "out"))
    assert set(written) == {"queries", "answers", "corpus"}
    queries = read_queries(written["queries"])
    assert [(q.id, q.text, q.lang) for q in queries] == [
        ("-7998386046307637779", "東京の人口は？", "ja"),
        ("4711", "Кто такой Аарон?", "ru"),
    ]
    assert read_jsonl(written["answers"]) == [
        {"id": "-7998386046307637779", "answers": ["14 million"], "lang": "ja"},
        {"id": "4711", "answers": ["prophet", "priest"], "lang": "ru"},
    ]
    assert corpus_rows(written["corpus"]) == [
        ("1", "Aaron", 'Aaron Aaron ( or ; "Ahärôn") is a prophet', "en"),
        ("2", "Aaron", "So he said: Moses and Aaron", "en"),
    ]


def test_xor_test_split_has_no_answers_and_v1_0_names_are_found(tmp_path):
    root = tmp_path / "xor"
    write(root / "test" / "xor_test_retrieve_eng_span_q_only.jsonl", jsonl({"id": 9, "question": "?", "lang": "ko"}))
    written = convert_dataset("xor-retrieve", str(root), str(tmp_path / "out"), split="test")
    assert set(written) == {"queries"}
    assert [(q.id, q.lang) for q in read_queries(written["queries"])] == [("9", "ko")]


def test_xor_lang_keeps_one_language(tmp_path):
    questions = write(
        tmp_path / "xor_train_retrieve_eng_span.jsonl",
        jsonl(
            {"id": "a", "question": "q1", "answers": ["x"], "lang": "fi"},
            {"id": "b", "question": "q2", "answers": ["y"], "lang": "te"},
        ),
    )
    written = convert_dataset("xor-retrieve", str(questions), str(tmp_path / "out"), lang="te")
    assert read_jsonl(written["answers"]) == [{"id": "b", "answers": ["y"], "lang": "te"}]
    with pytest.raises(UserError, match=r"no questions in language 'bn'"):
        convert_dataset("xor-retrieve", str(questions), str(tmp_path / "out2"), lang="bn")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"id": "a", "question": "q", "answers": ["x"], "lang": "ja"}, {"id": "b", "question": "q", "lang": "ja"}],
            r"\.jsonl:2: field 'answers' is missing here but not in the first question",
        ),
        ([{"id": "a", "question": "q", "answers": "x", "lang": "ja"}], r"\.jsonl:1: field 'answers' must be a list"),
        ([{"id": "a", "question": " ", "answers": [], "lang": "ja"}], r"\.jsonl:1: field 'question' is missing"),
        ([{"id": "a", "question": "q", "answers": []}], r"\.jsonl:1: field 'lang' is missing or empty"),
        ([{"id": "a", "question": "q", "lang": "ja"}] * 2, r"\.jsonl:2: duplicate id 'a'"),
    ],
)
def test_xor_bad_questions_name_file_line_and_field(tmp_path, rows, message):
    questions = write(tmp_path / "xor_dev_retrieve_eng_span.jsonl", jsonl(*rows))
    with pytest.raises(UserError, match=message):
        convert_dataset("xor-retrieve", str(questions), str(tmp_path / "out"))


def test_xor_missing_questions_lists_the_names_looked_for(tmp_path):
    (tmp_path / "xor").mkdir()
    with pytest.raises(UserError, match=r"xor_dev_retrieve_eng_span_v1_1\.jsonl or xor_dev_retrieve_eng_span\.jsonl"):
        convert_dataset("xor-retrieve", str(tmp_path / "xor"), str(tmp_path / "out"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("id\ttitle\ttext\n1\tx\ty\n", r"psgs_w100\.tsv:1: expected the DPR header"),
        ("id\ttext\ttitle\n1\tonly text\n", r"psgs_w100\.tsv:2: expected 3 tab-separated fields .* found 2"),
        ('id\ttext\ttitle\n1\t"unclosed\tT\n', r"psgs_w100\.tsv:2: expected 3 tab-separated fields"),
        ("id\ttext\ttitle\n1 2\tx\tT\n", r"psgs_w100\.tsv:2: field 'id' contains whitespace"),
    ],
)
def test_dpr_collection_errors_name_file_and_line(tmp_path, content, message):
    path = write(tmp_path / "psgs_w100.tsv", content)
    with pytest.raises(UserError, match=message):
        list(iter_dpr_passages(path))


# --- Tevatron -------------------------------------------------------------------------------------------------


def test_iter_training_reads_passage_objects(tmp_path):
    path = write(
        tmp_path / "train.jsonl",
        jsonl(
            {
                "query_id": 3,
                "query": "who is aaron",
                "positive_passages": [{"docid": "1", "title": "Aaron", "text": "a prophet"}],
                "negative_passages": [{"docid": "2", "text": "unrelated"}],
            }
        ),
    )
    assert list(iter_training(path)) == [
        TrainingExample("3", "who is aaron", [Document("1", "a prophet", "Aaron")], [Document("2", "unrelated")])
    ]


def test_iter_training_joins_bare_docids_and_reads_tevatron_v2_fields(tmp_path):
    corpus = {"p": Document("p", "positive text", "P"), "n": Document("n", "negative text")}
    path = write(
        tmp_path / "train.jsonl",
        jsonl({"query_id": "q", "query_text": "query", "positive_document_ids": ["p"], "negative_document_ids": ["n"]}),
    )
    assert list(iter_training(path, corpus)) == [TrainingExample("q", "query", [corpus["p"]], [corpus["n"]])]


@pytest.mark.parametrize(
    ("row", "corpus", "message"),
    [
        (
            {"query_id": "q", "query": "x", "positive_passages": ["p"], "negative_passages": ["zz"]},
            {"p": Document("p", "t")},
            r"train\.jsonl:1: negative_passages\[0\]: unknown docid 'zz' \(not in the corpus\)",
        ),
        (
            {"query_id": "q", "query": "x", "positive_passages": ["p"]},
            None,
            r"train\.jsonl:1: positive_passages\[0\]: passage given as docid 'p' but no corpus",
        ),
        (
            {"query_id": "q", "query": "x", "positive_passages": [], "negative_passages": []},
            None,
            r"train\.jsonl:1: field 'positive_passages' is missing or empty; a training example needs a positive",
        ),
        (
            {"query_id": "q", "query": "x", "positive_passages": [{"docid": "d", "title": "", "text": ""}]},
            None,
            r"train\.jsonl:1: positive_passages\[0\]: field 'text' is missing or empty",
        ),
        (
            {"query": "x", "positive_passages": [{"docid": "d", "text": "t"}]},
            None,
            r"train\.jsonl:1: field 'query_id' is missing or empty",
        ),
    ],
)
def test_iter_training_errors_name_file_line_and_field(tmp_path, row, corpus, message):
    path = write(tmp_path / "train.jsonl", jsonl(row))
    with pytest.raises(UserError, match=message):
        list(iter_training(path, corpus))


def test_tevatron_folder_converts_gzip_training_and_corpus_and_round_trips(tmp_path):
    src = tmp_path / "tevatron"
    write(
        src / "xor-t2e-100w.jsonl.gz",
        jsonl(
            {
                "query_id": "q1",
                "query": "アーロンとは？",
                "positive_passages": [{"docid": "1", "title": "Aaron", "text": "a prophet"}],
                "negative_passages": ["2"],
            }
        ),
        compress=True,
    )
    write(
        src / "corpus.jsonl.gz",
        jsonl({"docid": "1", "title": "Aaron", "text": "a prophet"}, {"docid": "2", "text": "b"}),
        True,
    )
    written = convert_dataset("tevatron", str(src), str(tmp_path / "out"))
    assert set(written) == {"train", "corpus"}
    assert read_jsonl(written["train"]) == [
        {
            "query_id": "q1",
            "query": "アーロンとは？",
            "positive_passages": [{"docid": "1", "title": "Aaron", "text": "a prophet"}],
            "negative_passages": ["2"],  # kept as an id: joined with corpus.jsonl when training reads it
        }
    ]
    corpus = {d.id: d for d in read_corpus(written["corpus"])}
    (example,) = iter_training(written["train"], corpus)
    assert example.negatives == [Document("2", "b", "", "")]


def test_tevatron_bare_docids_without_a_corpus_is_an_error(tmp_path):
    path = write(tmp_path / "train.jsonl", jsonl({"query_id": "q", "query": "x", "positive_passages": ["7"]}))
    with pytest.raises(
        UserError, match=r"train\.jsonl:1: passages given as docids need corpus\.jsonl or corpus\.jsonl\.gz"
    ):
        convert_dataset("tevatron", str(path), str(tmp_path / "out"))
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_tevatron_rejects_a_language(tmp_path):
    path = write(tmp_path / "train.jsonl", jsonl({"query_id": "q", "query": "x", "positive_passages": ["7"]}))
    with pytest.raises(UserError, match=r"tevatron layout takes no language"):
        convert_dataset("tevatron", str(path), str(tmp_path / "out"), lang="ja")


# --- SWIM-IR --------------------------------------------------------------------------------------------------


def test_swim_ir_cross_lingual_and_monolingual_sections(tmp_path):
    root = tmp_path / "swim_ir_v1"
    write(
        root / "cross_lingual" / "zh" / "train.jsonl",
        jsonl(
            {
                "_id": "10770836",
                "lang": "Chinese",
                "code": "zh",
                "query": "托马斯·爱迪生在哪里发明了留声机？",
                "title": "Menlo Park, New Jersey",
                "text": "Menlo Park is an unincorporated community",
            }
        ),
    )
    write(
        root / "monolingual" / "hi" / "train.jsonl",
        jsonl(
            {"_id": "hindi_8987#4", "lang": "Hindi", "code": "hi", "query": "प्रश्न?", "title": "आर्यभट", "text": "पाठ"}
        ),
    )
    written = convert_dataset("swim-ir", str(root), str(tmp_path / "out"))
    assert read_jsonl(written["train"]) == [
        {
            "query_id": "zh-10770836",
            "query": "托马斯·爱迪生在哪里发明了留声机？",
            "lang": "zh",
            "positive_passages": [
                {
                    "docid": "10770836",
                    "title": "Menlo Park, New Jersey",
                    "text": "Menlo Park is an unincorporated community",
                    "lang": "en",
                }
            ],
            "negative_passages": [],
        },
        {
            "query_id": "hi-hindi_8987#4",
            "query": "प्रश्न?",
            "lang": "hi",
            "positive_passages": [{"docid": "hindi_8987#4", "title": "आर्यभट", "text": "पाठ", "lang": "hi"}],
            "negative_passages": [],
        },
    ]
    only_hi = convert_dataset("swim-ir", str(root), str(tmp_path / "out-hi"), lang="hi")
    assert [row["query_id"] for row in read_jsonl(only_hi["train"])] == ["hi-hindi_8987#4"]
    with pytest.raises(UserError, match=r"no SWIM-IR pairs with code 'yo'"):
        convert_dataset("swim-ir", str(root), str(tmp_path / "out-yo"), lang="yo")


def test_swim_ir_row_without_code_names_file_line_and_field(tmp_path):
    path = write(
        tmp_path / "cross_lingual" / "ja" / "train.jsonl",
        jsonl({"_id": "1", "lang": "Japanese", "code": "ja", "query": "q", "title": "t", "text": "x"})
        + jsonl({"_id": "2", "lang": "Japanese", "query": "q", "title": "t", "text": "x"}),
    )
    with pytest.raises(UserError, match=r"train\.jsonl:2: field 'code' is missing or empty"):
        convert_dataset("swim-ir", str(path), str(tmp_path / "out"))


# --- BEIR -----------------------------------------------------------------------------------------------------


def beir_folder(root):
    write(
        root / "corpus.jsonl",
        jsonl(
            {"_id": "d1", "title": "Covid", "text": "an abstract", "metadata": {"url": "x"}},
            {"_id": "d2", "title": "Only a title", "text": ""},  # trec-covid has such rows
        ),
    )
    write(
        root / "queries.jsonl",
        jsonl({"_id": "1", "text": "what is covid", "metadata": {}}, {"_id": "2", "text": "train only"}),
    )
    write(root / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\n1\td1\t2\n1\td2\t0\n")
    write(root / "qrels" / "train.tsv", "query-id\tcorpus-id\tscore\n2\td2\t1\n")
    return root


def test_beir_split_keeps_its_judged_queries_and_title_only_rows(tmp_path):
    written = convert_dataset("beir", str(beir_folder(tmp_path / "trec-covid")), str(tmp_path / "out"), split="test")
    assert set(written) == {"queries", "qrels", "corpus"}
    assert [(q.id, q.text, q.lang) for q in read_queries(written["queries"])] == [("1", "what is covid", "")]
    assert read_lines(written["qrels"]) == ["1 0 d1 2", "1 0 d2 0"]
    assert corpus_rows(written["corpus"]) == [("d1", "Covid", "an abstract", ""), ("d2", "", "Only a title", "")]


def test_beir_lang_labels_rows(tmp_path):
    written = convert_dataset("beir", str(beir_folder(tmp_path / "b")), str(tmp_path / "out"), lang="en", split="train")
    assert [(q.id, q.lang) for q in read_queries(written["queries"])] == [("2", "en")]
    assert {d.lang for d in read_corpus(written["corpus"])} == {"en"}


def test_beir_missing_split_lists_the_splits_found(tmp_path):
    with pytest.raises(UserError, match=r"no qrels/dev\.tsv \(splits found: test, train\)"):
        convert_dataset("beir", str(beir_folder(tmp_path / "b")), str(tmp_path / "out"))


def test_beir_judged_query_missing_from_queries_names_the_qrels_line(tmp_path):
    root = beir_folder(tmp_path / "b")
    write(root / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\n1\td1\t1\n9\td1\t1\n")
    with pytest.raises(UserError, match=r"test\.tsv:3: query '9' is not in .*queries\.jsonl"):
        convert_dataset("beir", str(root), str(tmp_path / "out"), split="test")


def test_beir_bad_score_names_file_line_and_field(tmp_path):
    root = beir_folder(tmp_path / "b")
    write(root / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\n1\td1\thigh\n")
    with pytest.raises(UserError, match=r"test\.tsv:2: field 'score' must be an integer, got 'high'"):
        convert_dataset("beir", str(root), str(tmp_path / "out"), split="test")


# --- entry point ----------------------------------------------------------------------------------------------


def test_unknown_layout_and_missing_source_are_user_errors(tmp_path):
    with pytest.raises(UserError, match=r"unknown dataset layout 'mrtydi'; expected one of miracl, xor-retrieve"):
        convert_dataset("mrtydi", str(tmp_path), str(tmp_path / "out"))
    with pytest.raises(UserError, match=r"nowhere: no such file or folder"):
        convert_dataset("beir", str(tmp_path / "nowhere"), str(tmp_path / "out"))


def test_convert_from_the_cli_then_evaluate_a_run_on_it(tmp_path, capsys):
    from xretrieve.cli import main

    out = tmp_path / "out"
    assert (
        main(
            [
                "convert",
                "--layout",
                "beir",
                "--source",
                str(beir_folder(tmp_path / "b")),
                "--out",
                str(out),
                "--split",
                "test",
            ]
        )
        == 0
    )
    assert "qrels:" in capsys.readouterr().out
    qrels = (out / "qrels.txt").read_text().split()
    run = tmp_path / "run.trec"
    run.write_text(f"{qrels[0]} Q0 {qrels[2]} 1 1.0 t\n")
    assert main(["evaluate", "--run", str(run), "--qrels", str(out / "qrels.txt"), "--metrics", "RR@10"]) == 0
