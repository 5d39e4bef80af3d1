import json
import os

import pytest

from xretrieve.cli import main
from xretrieve.errors import UserError
from xretrieve.evaluation.fuse import fuse_runs
from xretrieve.evaluation.reproduce import reproduce
from xretrieve.formats import read_trec_run

DENSE = "q1 Q0 a 1 0.9 d\nq1 Q0 b 2 0.8 d\nq1 Q0 c 3 0.5 d\n"
SPARSE = "q1 Q0 c 1 12.0 s\nq1 Q0 d 2 10.0 s\nq1 Q0 a 3 4.0 s\n"


@pytest.fixture
def runs(tmp_path):
    (tmp_path / "dense.trec").write_text(DENSE)
    (tmp_path / "sparse.trec").write_text(SPARSE)
    return str(tmp_path / "dense.trec"), str(tmp_path / "sparse.trec")


def scores(path):
    return {e.docid: e.score for e in read_trec_run(path)["q1"]}


def test_reciprocal_rank_fusion_by_hand(runs, tmp_path):
    out = fuse_runs(list(runs), str(tmp_path / "rrf.trec"), method="rrf", rrf_k=60)
    expected = {"a": 1 / 61 + 1 / 63, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 62}
    assert scores(out) == pytest.approx(expected, abs=1e-6)
    assert [e.docid for e in read_trec_run(out)["q1"]] == ["a", "c", "b", "d"]  # ties by docid


def test_interpolation_as_pyserini_hybrid(runs, tmp_path):
    out = fuse_runs(list(runs), str(tmp_path / "h.trec"), method="interpolation", alpha=0.1)
    # a doc missing from a run takes that run's minimum: b gets sparse 4.0, d gets dense 0.5
    expected = {"a": 0.9 + 0.4, "b": 0.8 + 0.4, "c": 0.5 + 1.2, "d": 0.5 + 1.0}
    assert scores(out) == pytest.approx(expected, abs=1e-6)
    out = fuse_runs(list(runs), str(tmp_path / "hn.trec"), method="interpolation", alpha=0.5, normalize=True)

    def centred(x, low, high):
        return (x - (low + high) / 2) / (high - low)

    assert scores(out)["d"] == pytest.approx(centred(0.5, 0.5, 0.9) + 0.5 * centred(10.0, 4.0, 12.0), abs=1e-6)


def test_fuse_needs_two_runs(runs, tmp_path):
    with pytest.raises(UserError, match="needs exactly 2"):
        fuse_runs([runs[0], runs[1], runs[0]], str(tmp_path / "x.trec"), method="interpolation")


def write_spec(
    tmp_path, expected, command='echo \'{"all": {"nDCG@10": 0.5}}\' > ${WORK}/m.json', tolerance=0.01, **variables
):
    spec = {
        "name": "t",
        "variables": {"WORK": str(tmp_path), **variables},
        "conditions": [
            {
                "name": "c1",
                "commands": [command],
                "metrics": "${WORK}/m.json",
                "expected": expected,
                "tolerance": tolerance,
            }
        ],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def test_reproduce_ok_and_fail(tmp_path):
    assert [c.ok for c in reproduce(str(write_spec(tmp_path, {"all.nDCG@10": 0.505})), echo=lambda _: None)] == [True]
    checks = reproduce(str(write_spec(tmp_path, {"all.nDCG@10": 0.6, "all.R@100": 0.9})), echo=lambda _: None)
    assert [c.ok for c in checks] == [False, False]
    assert "not in the metrics file" in checks[1].problem


def test_reproduce_reports_a_failing_command_and_exit_code(tmp_path, capsys):
    path = write_spec(tmp_path, {"all.nDCG@10": 0.5}, command="exit 3")
    assert main(["reproduce", str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL c1  all.nDCG@10" in out and "command failed: exit 3" in out


def test_reproduce_environment_overrides_variables(tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("WORK", str(other))
    checks = reproduce(str(write_spec(tmp_path, {"all.nDCG@10": 0.5})), echo=lambda _: None)
    assert checks[0].ok and (other / "m.json").exists()


def test_reproduce_undefined_variable(tmp_path):
    path = write_spec(tmp_path, {"all.nDCG@10": 0.5}, command="echo ${NOPE}")
    with pytest.raises(UserError, match=r"\$\{NOPE\} is not defined"):
        reproduce(str(path), echo=lambda _: None)


def test_reproduce_quotes_substituted_values_in_commands(tmp_path, monkeypatch):
    """A value from the environment is data to bash, not code: `; touch` must not run, spaces stay one word."""
    work = tmp_path / "my work"
    work.mkdir()
    pwned = tmp_path / "pwned"
    monkeypatch.setenv("WORK", str(work))
    monkeypatch.setenv("NOTE", f"x; touch {pwned} $(touch {pwned}) `touch {pwned}`")
    command = 'echo ${NOTE} > ${WORK}/note.txt && echo \'{"all": {"nDCG@10": 0.5}}\' > ${WORK}/m.json'
    spec = write_spec(tmp_path, {"all.nDCG@10": 0.5}, command=command, NOTE="")
    checks = reproduce(str(spec), echo=lambda _: None)
    assert not pwned.exists()
    assert (work / "note.txt").read_text() == os.environ["NOTE"] + "\n"
    assert [c.ok for c in checks] == [True]
