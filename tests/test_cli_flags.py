"""Flags come from the verbs' settings dataclasses only: --help, --print-config and --config agree."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xretrieve.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
CLI_OWN = {"help", "config", "print_config"}


def printed_config(capsys, argv) -> dict:
    capsys.readouterr()
    assert main([*argv, "--print-config"]) == 0
    return json.loads(capsys.readouterr().out)


def flag_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The verb's own flags and positionals, without deprecated spellings (hidden from --help)."""
    return [a for a in parser._actions if a.dest not in CLI_OWN and a.help != argparse.SUPPRESS]


def help_line(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    return " ".join(argparse.HelpFormatter(parser.prog)._format_action(action).split())


def test_there_are_at_least_the_nineteen_verbs():
    _, verbs = build_parser()
    assert len(verbs) >= 19
    assert {"encode", "index", "search", "serve", "train-generator", "generate-queries", "augment", "demo"} <= set(
        verbs
    )


@pytest.mark.parametrize("verb", list(build_parser()[1]))
def test_print_config_prints_the_defaults_that_help_shows(verb, capsys):
    parser = build_parser()[1][verb]
    printed = printed_config(capsys, [verb] + (["index"] if verb == "bm25" else []))
    actions = flag_actions(parser)
    assert set(printed) == {a.dest for a in actions}
    for action in actions:
        value, line = printed[action.dest], help_line(parser, action)
        if action.dest == "action":  # bm25's positional, given above
            continue
        assert value == action.default, (verb, action.dest)
        if action.nargs == 0:  # a switch: off unless given
            continue
        if action.required or "(required)" in line:
            assert value is None, (verb, action.dest)
        elif value is None:
            assert "(default: none" in line, (verb, action.dest, line)
        else:
            shown = value if isinstance(value, str) and value else json.dumps(value)
            assert f"(default: {shown})" in line, (verb, action.dest, line)


def test_the_batch_sizes_users_got_from_the_cli_are_the_library_defaults_too(capsys):
    from xretrieve.config import AugmentConfig, GenerateConfig, TrainGeneratorConfig

    for verb in ("generate-queries", "train-generator", "augment"):
        assert printed_config(capsys, [verb])["batch_size"] == 32
    assert GenerateConfig("c", "o", ["es"], backend="apertium").batch_size == 32
    assert TrainGeneratorConfig("t5", "o", train="t.jsonl").batch_size == 32
    assert AugmentConfig("e", "g", "o").batch_size == 32


def test_missing_required_flags_print_as_null_and_given_ones_as_typed(capsys):
    printed = printed_config(capsys, ["search", "--index", "idx", "--k", "7", "--lang", "fi,ja", "--no-translate"])
    assert printed["index"] == "idx" and printed["queries"] is None and printed["out"] is None
    assert printed["k"] == 7 and printed["lang"] == "fi,ja" and printed["translate"] is False
    assert printed_config(capsys, ["reproduce"])["file"] is None
    assert printed_config(capsys, ["index", "--corpus", "c.jsonl"])["embeddings"] is None


def test_print_config_does_no_work_and_checks_no_files(tmp_path, capsys):
    out = tmp_path / "emb"
    printed = printed_config(capsys, ["encode", "--corpus", str(tmp_path / "no-such.jsonl"), "--out", str(out)])
    assert printed["corpus"] == str(tmp_path / "no-such.jsonl") and not out.exists()


def test_a_yaml_setting_shows_in_print_config_and_a_flag_overrides_it(tmp_path, capsys):
    config = tmp_path / "search.yaml"
    config.write_text("index: idx\nbatch-size: 4\nk: 3\nlang: [fi, ja]\nquiet: true\ntranslate: false\n")
    printed = printed_config(capsys, ["search", "--config", str(config), "--k", "9"])
    assert printed["batch_size"] == 4 and printed["lang"] == "fi,ja" and printed["quiet"] is True
    assert printed["translate"] is False and printed["index"] == "idx"
    assert printed["k"] == 9  # the flag given on the line wins
    assert printed["queries"] is None


def test_print_config_output_is_a_config_file_that_gives_the_same_settings(tmp_path, capsys):
    argv = ["serve", "--index", "idx", "--cors-origin", "https://a.example", "--port", "9000", "--no-translate"]
    first = printed_config(capsys, argv)
    config = tmp_path / "serve.json"  # JSON is YAML
    config.write_text(json.dumps(first))
    assert printed_config(capsys, ["serve", "--config", str(config)]) == first


def test_print_config_hides_api_keys(capsys):
    key = "a-secret-key-0123456789"
    printed = printed_config(capsys, ["serve", "--index", "idx", "--api-key", key])
    assert printed["api_key"] == ["<hidden>"] and key not in json.dumps(printed)


@pytest.mark.parametrize(
    ("verb", "new"), [("generate-queries", "--generator"), ("train-generator", "--generator"), ("distill", "--teacher")]
)
def test_model_where_it_meant_another_role_is_a_hidden_deprecated_alias(verb, new, capsys, tmp_path):
    parser = build_parser()[1][verb]
    assert "--model" not in parser.format_help() and new in parser.format_help()
    printed = printed_config(capsys, [verb, "--model", "m"])
    assert printed[new[2:]] == "m"
    capsys.readouterr()
    main([verb, "--model", "m", "--print-config"])
    assert capsys.readouterr().err.splitlines() == [f"xretrieve: {verb} --model is deprecated: use {new}"]
    assert printed_config(capsys, [verb, "--model", "old", new, "current"])[new[2:]] == "current"
    config = tmp_path / "c.yaml"
    config.write_text("model: m\n")  # old config files keep working, with the same warning
    assert printed_config(capsys, [verb, "--config", str(config)])[new[2:]] == "m"


def test_model_keeps_meaning_the_bi_encoder_where_a_verb_has_one():
    _, verbs = build_parser()
    for verb in ("encode", "index", "search", "train", "mine-negatives", "augment", "synthesize", "adapt", "serve"):
        assert "--model" in verbs[verb].format_help(), verb


def test_missing_required_flags_are_refused_with_argparse_words(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["train-generator", "--out", "o"])
    assert stopped.value.code == 2
    assert "the following arguments are required: --generator" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--run", "r"])
    assert "one of the arguments --qrels --answers is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--run", "r", "--qrels", "q", "--answers", "a"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_print_config_imports_no_torch(tmp_path):
    code = (
        "import contextlib, io, sys\n"
        "from xretrieve.cli import build_parser, main\n"
        "for verb in build_parser()[1]:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert main([verb, '--print-config']) == 0, verb\n"
        "heavy = sorted(m for m in ('torch', 'faiss', 'transformers', 'fastapi') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
