"""The CLI in-process: index + search with a tiny model, and every user error as one line with exit code 2."""

import json
import shutil

import pytest

from xretrieve.cli import main


@pytest.fixture
def queries(tmp_path):
    path = tmp_path / "queries.jsonl"
    rows = [
        {"id": "q1", "text": "the quick brown fox", "lang": "en"},
        {"id": "q2", "text": "el zorro marron salta", "lang": "es"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def built_index(tmp_path, corpus, tiny_model):
    out = tmp_path / "idx"
    assert (
        main(
            [
                "index",
                "--corpus",
                str(corpus),
                "--out",
                str(out),
                "--model",
                str(tiny_model),
                "--shards",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    return out


def run_lines(path):
    return [line.split() for line in path.read_text().splitlines()]


def test_index_then_search_writes_a_trec_run_with_provenance(built_index, queries, tmp_path, tiny_model):
    manifest = json.loads((built_index / "manifest.json").read_text())
    assert manifest["model"]["name"] == str(tiny_model) and manifest["rows"] == 60
    assert manifest["langs"] == {"de": 12, "en": 12, "es": 12, "fi": 12, "ja": 12}
    run = tmp_path / "run.trec"
    assert main(["search", "--index", str(built_index), "--queries", str(queries), "--out", str(run), "--k", "5"]) == 0
    lines = run_lines(run)
    assert len(lines) == 10
    assert [line[3] for line in lines[:5]] == ["1", "2", "3", "4", "5"]
    scores = [float(line[4]) for line in lines[:5]]
    assert scores == sorted(scores, reverse=True)
    provenance = json.loads((tmp_path / "run.trec.json").read_text())
    assert provenance["k"] == 5 and provenance["model"]["name"] == str(tiny_model)


def test_search_with_language_filter(built_index, queries, tmp_path):
    run = tmp_path / "run.trec"
    assert (
        main(
            [
                "search",
                "--index",
                str(built_index),
                "--queries",
                str(queries),
                "--out",
                str(run),
                "--k",
                "20",
                "--lang",
                "fi,ja",
            ]
        )
        == 0
    )
    docs = {
        json.loads(line)["id"]: json.loads(line)["lang"]
        for line in (built_index.parent / "corpus.jsonl").read_text().splitlines()
    }
    assert {docs[line[2]] for line in run_lines(run)} == {"fi", "ja"}
    assert len(run_lines(run)) == 40


def test_search_is_deterministic(built_index, queries, tmp_path):
    for name in ("a.trec", "b.trec"):
        assert (
            main(["search", "--index", str(built_index), "--queries", str(queries), "--out", str(tmp_path / name)]) == 0
        )
    assert (tmp_path / "a.trec").read_text() == (tmp_path / "b.trec").read_text()


def test_encode_shard_by_shard_then_index_embeddings(tmp_path, corpus, tiny_model, queries):
    emb = tmp_path / "emb"
    for shard in ("1/2", "0/2"):
        assert (
            main(
                [
                    "encode",
                    "--corpus",
                    str(corpus),
                    "--out",
                    str(emb),
                    "--model",
                    str(tiny_model),
                    "--shard",
                    shard,
                    "--quiet",
                ]
            )
            == 0
        )
    assert (
        main(["index", "--embeddings", str(emb), "--out", str(tmp_path / "idx"), "--factory", "HNSW8", "--quiet"]) == 0
    )
    assert (
        main(
            [
                "search",
                "--index",
                str(tmp_path / "idx"),
                "--queries",
                str(queries),
                "--out",
                str(tmp_path / "r.trec"),
                "--k",
                "3",
            ]
        )
        == 0
    )
    assert len(run_lines(tmp_path / "r.trec")) == 6


def test_config_file_supplies_flags(tmp_path, corpus, tiny_model):
    config = tmp_path / "encode.yaml"
    config.write_text(f"corpus: {corpus}\nout: {tmp_path / 'emb'}\nmodel: {tiny_model}\nbatch-size: 4\nquiet: true\n")
    assert main(["encode", "--config", str(config)]) == 0
    assert (tmp_path / "emb" / "manifest.json").exists()


def user_error(capsys, argv) -> str:
    capsys.readouterr()  # drop what fixtures printed
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xretrieve: error: ")
    return lines[0]


def test_bad_inputs_exit_2_with_one_line_and_leave_nothing_behind(tmp_path, capsys, tiny_model, built_index, queries):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    out = tmp_path / "never"
    assert "bad.jsonl:2: duplicate id 'a'" in user_error(
        capsys, ["index", "--corpus", str(bad), "--out", str(out), "--model", str(tiny_model)]
    )
    assert not out.exists()

    bad.write_text('{"id": "a", "text": "x"\n')
    assert "bad.jsonl:1: not valid JSON" in user_error(
        capsys, ["encode", "--corpus", str(bad), "--out", str(out), "--model", str(tiny_model)]
    )
    assert not out.exists()

    assert "--shard 2/2: shard index must be in 0..1" in user_error(
        capsys, ["encode", "--corpus", str(bad), "--out", str(out), "--shard", "2/2"]
    )

    assert "no manifest.json" in user_error(
        capsys, ["index", "--embeddings", str(tmp_path / "nothing"), "--out", str(out)]
    )

    run = tmp_path / "r.trec"
    bad_queries = tmp_path / "q.jsonl"
    bad_queries.write_text('{"id": "q 1", "text": "x"}\n')
    assert "field 'id' contains whitespace" in user_error(
        capsys, ["search", "--index", str(built_index), "--queries", str(bad_queries), "--out", str(run)]
    )
    assert not run.exists()

    assert "no documents in xx" in user_error(
        capsys, ["search", "--index", str(built_index), "--queries", str(queries), "--out", str(run), "--lang", "xx"]
    )
    assert not run.exists()

    config = tmp_path / "c.yaml"
    config.write_text("bogus_flag: 1\n")
    assert "unknown setting 'bogus_flag'" in user_error(capsys, ["encode", "--config", str(config)])

    assert "is a folder, not a file" in user_error(
        capsys, ["search", "--index", str(built_index), "--queries", str(tmp_path), "--out", str(run)]
    )
    assert "is a folder; give a file name" in user_error(  # before any query is encoded
        capsys, ["search", "--index", str(built_index), "--queries", str(queries), "--out", str(tmp_path)]
    )
    assert "run tag 'my run'" in user_error(
        capsys, ["search", "--index", str(built_index), "--queries", str(queries), "--out", str(run), "--tag", "my run"]
    )
    assert "--batch-size 0" in user_error(
        capsys,
        ["search", "--index", str(built_index), "--queries", str(queries), "--out", str(run), "--batch-size", "0"],
    )
    assert not run.exists()
    runs = [str(run.with_name(name)) for name in ("a", "b")]
    for path in runs:
        open(path, "w").close()
    assert "--rrf-k must be >= 0" in user_error(capsys, ["fuse", "--runs", *runs, "--out", "f", "--rrf-k", "-1"])
    broken_model = tmp_path / "broken-model"
    shutil.copytree(tiny_model, broken_model)
    (broken_model / "xretrieve.json").write_text("{oops")
    assert "xretrieve.json: not valid JSON" in user_error(
        capsys,
        [
            "search",
            "--index",
            str(built_index),
            "--queries",
            str(queries),
            "--out",
            str(run),
            "--model",
            str(broken_model),
        ],
    )


def test_unknown_factory_from_cli(tmp_path, capsys, corpus, tiny_model):
    emb = tmp_path / "emb"
    assert main(["encode", "--corpus", str(corpus), "--out", str(emb), "--model", str(tiny_model), "--quiet"]) == 0
    assert "unknown factory string 'IVFX'" in user_error(
        capsys, ["index", "--embeddings", str(emb), "--out", str(tmp_path / "idx"), "--factory", "IVFX"]
    )
    assert not (tmp_path / "idx").exists()


def test_index_searched_with_another_model_is_refused(tmp_path, capsys, built_index, queries, tiny_model_b):
    message = user_error(
        capsys,
        [
            "search",
            "--index",
            str(built_index),
            "--queries",
            str(queries),
            "--out",
            str(tmp_path / "r.trec"),
            "--model",
            str(tiny_model_b),
        ],
    )
    assert "index was built with model" in message and "use the same model" in message


def test_checksum_mismatch_from_cli(tmp_path, capsys, built_index, queries):
    (built_index / "shard-00000.docids.txt").write_text("changed\n")
    assert "shard-00000.docids.txt: checksum mismatch" in user_error(
        capsys, ["search", "--index", str(built_index), "--queries", str(queries), "--out", str(tmp_path / "r")]
    )


def test_demo_prints_ranked_hits_per_query(tmp_path, capsys, tiny_model):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--model", str(tiny_model), "--show", "2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n[") == 126  # one block per sample query, headed by its language
    assert "  1. " in printed and "  2. " in printed and "  3. " not in printed
    assert "504 passages (ar 56, de 56, en 56, es 56, fa 56, fr 56, hi 56, ja 56, ru 56)" in printed
    assert "Top hit is a translation of the query (+) for" in printed
    assert "reusing" not in printed
    assert main(["demo", "--out", str(out), "--model", str(tiny_model), "--show", "1", "--quiet"]) == 0
    assert f"xretrieve: reusing {out} (built earlier; delete it to build it again)" in capsys.readouterr().out


def test_search_reports_progress_in_queries_per_second_unless_quiet(built_index, queries, tmp_path, capsys):
    run = tmp_path / "run.trec"
    assert main(["search", "--index", str(built_index), "--queries", str(queries), "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "search: encode queries: 100%" in err and "2/2" in err and "query/s" in err
    assert main(["search", "--index", str(built_index), "--queries", str(queries), "--out", str(run), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_config_file_values_are_checked_like_flags(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("corpus: c.jsonl\nout: emb\nbatch-size: many\n")
    with pytest.raises(SystemExit) as stopped:
        main(["encode", "--config", str(config)])
    assert stopped.value.code == 2
    assert "argument --batch-size: invalid int value: 'many'" in capsys.readouterr().err
    config.write_text("corpus: c.jsonl\nout: emb\ndtype: float64\n")
    with pytest.raises(SystemExit):
        main(["encode", "--config", str(config)])
    assert "invalid choice: 'float64'" in capsys.readouterr().err


def test_config_file_lists_and_switches(tmp_path, built_index, queries):
    config = tmp_path / "s.yaml"
    config.write_text(f"index: {built_index}\nqueries: {queries}\nk: 3\nlang: [fi, ja]\nquiet: true\n")
    out = tmp_path / "run.trec"
    assert main(["search", "--config", str(config), "--out", str(out)]) == 0
    docs = {
        json.loads(line)["id"]: json.loads(line)["lang"]
        for line in (built_index.parent / "corpus.jsonl").read_text().splitlines()
    }
    assert {docs[line[2]] for line in run_lines(out)} == {"fi", "ja"} and len(run_lines(out)) == 6


def test_verbs_offer_only_the_flags_they_use(capsys):
    # a flag that would be silently ignored is refused instead
    for argv in (["evaluate", "--run", "r", "--qrels", "q", "--model", "m"], ["fuse", "--runs", "a", "b", "--quiet"]):
        with pytest.raises(SystemExit):
            main([*argv, "--out", "x"])
        assert "unrecognized arguments" in capsys.readouterr().err


def test_help_shows_the_default_of_every_flag_that_takes_a_value():
    import argparse

    from xretrieve.cli import build_parser

    # flags whose unset value means a behaviour (all shards, the model's maximum, cpu ...) say which
    implicit = {"device", "max_seq_length", "shard", "lang", "search_params", "metrics", "ray", "lang_weights"}
    _, verbs = build_parser()
    checked = 0
    for name, parser in verbs.items():
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0 or action.help == argparse.SUPPRESS:
                continue
            if action.default is not None or action.dest in implicit:
                line = argparse.HelpFormatter(name)._format_action(action)
                assert "default" in line, f"{name} {action.option_strings[-1]}: {line!r}"
                checked += 1
            if action.default is not None:
                assert str(action.default) in line.replace("\n", " "), f"{name} {action.option_strings[-1]}"
    assert checked > 80
    batch = next(a for a in verbs["encode"]._actions if a.dest == "batch_size")
    assert "(default: 32)" in argparse.HelpFormatter("encode")._format_action(batch)


def test_generate_queries_offers_no_model_flag(capsys):
    from xretrieve.cli import build_parser

    _, verbs = build_parser()
    assert "--model" not in verbs["generate-queries"].format_help()
    assert "--generator" in verbs["generate-queries"].format_help()


def python(*argv, cwd, timeout=60):
    """This Python in a fresh process, importing this checkout's xretrieve: (exit code, stderr lines, seconds)."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stderr.strip().splitlines(), time.perf_counter() - started


def run_cli(*argv, cwd):
    return python("-m", "xretrieve", *argv, cwd=cwd)


def test_bad_input_fails_before_torch_is_imported(tmp_path, corpus, built_index, tiny_model, fake_encoder):
    """Each fails with exit 2 and one line in well under the seconds that importing torch alone takes
    (the bound is generous: the machine may be busy)."""
    from xretrieve.config import EncodeConfig
    from xretrieve.encode import encode_corpus

    array = tmp_path / "array.json"
    array.write_text(json.dumps([{"id": "a", "text": "x"}], indent=1))
    no_text = tmp_path / "no-text.jsonl"
    no_text.write_text('{"docid": "d1", "query_id": "q1", "lang": "es"}\n')
    emb = encode_corpus(EncodeConfig(str(corpus), str(tmp_path / "emb"), progress=False), encoder=fake_encoder)
    cases = [
        (["train", "--train-data", str(no_text), "--out", "m"], "field 'positive_passages' is missing"),
        (["distill", "--parallel", str(no_text), "--out", "m"], "field 'source' is missing"),
        (["augment", "--embeddings", str(emb), "--generated", str(no_text), "--out", "a"], "field 'text' is missing"),
        (["index", "--corpus", "/no/such.jsonl", "--out", "x"], "/no/such.jsonl: no such file"),
        (["encode", "--corpus", str(array), "--out", "x"], "array.json:1: expected a JSON object per line"),
        (["index", "--corpus", str(corpus), "--out", "x", "--model", "./no-such-model"], "no such model folder"),
        (["search", "--index", "/no/such", "--queries", str(corpus), "--out", "r"], "/no/such: no manifest.json"),
        (["serve", "--index", str(tmp_path / "nothing")], "nothing: no manifest.json"),
        (
            ["index", "--corpus", str(corpus), "--out", str(built_index), "--model", str(tiny_model), "--shards", "3"],
            "idx: holds an index built with other settings (num_shards)",
        ),
    ]
    for argv, message in cases:
        code, lines, seconds = run_cli(*argv, cwd=tmp_path)
        assert (code, len(lines)) == (2, 1) and message in lines[0], (argv, lines)
        assert seconds < 3, (argv, seconds)
    assert not (tmp_path / "x").exists()
    assert "jq -c '.[]'" in run_cli("encode", "--corpus", str(array), "--out", "x", cwd=tmp_path)[1][0]


def test_serve_exits_when_its_index_cannot_be_loaded_at_start_up(built_index, tmp_path):
    (built_index / "shard-00001.faiss").write_bytes(b"damaged")
    code, lines, _ = run_cli("serve", "--index", str(built_index), "--port", "0", cwd=tmp_path)
    assert code == 2 and lines[-1].startswith(f"xretrieve: error: {built_index}: could not load the index: ")
    assert "shard-00001.faiss: checksum mismatch" in lines[-1]


def test_serve_logs_no_faiss_loader_chatter(tmp_path):
    code = (
        "import logging; from xretrieve.server import configure_logging; configure_logging(); import faiss; "
        "logging.getLogger('xretrieve.server').info('ready'); logging.getLogger('faiss').warning('act on this')"
    )
    _, lines, _ = python("-c", code, cwd=tmp_path)
    assert [line.split(" ", 2)[2] for line in lines] == [
        "xretrieve.server INFO ready",
        "faiss WARNING act on this",
    ], lines
