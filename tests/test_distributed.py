"""encode, index and serve on a real Ray cluster against the single-machine path on the same corpus.

The cluster is started here (loopback only, 2 CPUs, a small object store, its own temp folder) and only
its own processes are stopped. Needs the `dist` extra; skipped without Ray, unless XRETRIEVE_REQUIRE_RAY=1
(set in CI) turns the skip into a failure.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import write_corpus

from xretrieve import cli
from xretrieve.encode import Embeddings
from xretrieve.formats import read_corpus
from xretrieve.manifest import sha256_file
from xretrieve.model import BiEncoder
from xretrieve.search import Searcher

QUERIES = ["the quick brown fox", "el zorro salta", "der hund", "la nuit tombe", "water river sea", "king of peace"]


def _has_ray() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


HAS_RAY = _has_ray()
if not HAS_RAY and os.environ.get("XRETRIEVE_REQUIRE_RAY") == "1":
    raise RuntimeError("XRETRIEVE_REQUIRE_RAY=1 but Ray is not installed (pip install -e '.[dist]')")
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray is not installed (pip install -e '.[dist]')")


def test_ray_flag_without_ray_says_how_to_install(monkeypatch, tmp_path, tiny_model, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as on a core install
    corpus = write_corpus(tmp_path / "corpus.jsonl", 10)
    argv = ["encode", "--corpus", str(corpus), "--out", str(tmp_path / "emb"), "--model", str(tiny_model), "--quiet"]
    assert cli.main([*argv, "--ray"]) == 2
    assert "pip install 'xretrieve[dist]'" in capsys.readouterr().err
    assert not (tmp_path / "emb" / "manifest.json").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Every living process under `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.fixture(scope="module")
def cluster():
    """A Ray head node of our own: (address, pid of `ray start --block`, environment for drivers)."""
    if not HAS_RAY:
        pytest.skip("Ray is not installed")
    temp = tempfile.mkdtemp(prefix="xr-ray-")  # short: Ray's socket paths live under it
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    ray_cli = str(Path(sys.executable).with_name("ray"))
    log = open(Path(temp) / "head.log", "w")  # noqa: SIM115 (closed at teardown)
    head = subprocess.Popen(
        [
            ray_cli, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
            "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", f"--temp-dir={temp}",
            f"--object-store-memory={150 * 2**20}", "--disable-usage-stats",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    old = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update({"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"})
    address = f"127.0.0.1:{port}"
    try:
        _wait_for_head(address, head, Path(temp) / "head.log")
        yield address, head.pid, env
    finally:
        ours = _descendants(head.pid)
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            head.kill()
        for pid in _descendants(head.pid) + ours:  # and whatever of ours outlived it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
        shutil.rmtree(temp, ignore_errors=True)
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _wait_for_head(address: str, head: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    host, port = address.split(":")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise AssertionError(f"ray start exited with {head.returncode}:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the Ray head never listened on {address}")


def _top10(searcher: Searcher, langs=None) -> list[list[tuple[str, float]]]:
    return [[(h.docid, round(h.score, 5)) for h in hits] for hits in searcher.search(QUERIES, k=10, langs=langs)]


def _run_cli(argv: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xretrieve", *argv], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def single_machine(tmp_path_factory, tiny_model):
    """The reference: corpus, embeddings and index built without Ray."""
    folder = tmp_path_factory.mktemp("single")
    corpus = write_corpus(folder / "corpus.jsonl", 300)
    common = ["--model", str(tiny_model), "--quiet"]
    assert cli.main(["encode", "--corpus", str(corpus), "--out", str(folder / "emb"), "--shards", "4", *common]) == 0
    index_args = ["--embeddings", str(folder / "emb"), "--out", str(folder / "idx"), "--factory", "IVF4,PQ8x4"]
    assert cli.main(["index", *index_args, "--quiet"]) == 0
    return corpus, folder / "emb", folder / "idx"


@needs_ray
def test_encode_and_index_on_ray_equal_the_single_machine_path(cluster, single_machine, tiny_model, tmp_path):
    address, _, _ = cluster
    corpus, local_emb, local_idx = single_machine
    emb, idx = tmp_path / "emb", tmp_path / "idx"
    args = ["--corpus", str(corpus), "--out", str(emb), "--shards", "4", "--model", str(tiny_model), "--quiet"]
    assert cli.main(["encode", *args, "--ray", address]) == 0
    ours, theirs = Embeddings(emb), Embeddings(local_emb)
    ours.verify()
    assert ours.manifest["model"] == theirs.manifest["model"]
    assert [s["rows"] for s in ours.shards] == [s["rows"] for s in theirs.shards]
    for shard in range(4):
        assert ours.ids(shard) == theirs.ids(shard) and ours.langs(shard) == theirs.langs(shard)
        np.testing.assert_array_equal(ours.vectors(shard), theirs.vectors(shard))

    index_args = ["--embeddings", str(emb), "--out", str(idx), "--factory", "IVF4,PQ8x4", "--quiet"]
    assert cli.main(["index", *index_args, "--ray", address]) == 0
    encoder = BiEncoder(str(tiny_model))
    distributed, single = Searcher(idx, encoder=encoder), Searcher(local_idx, encoder=encoder)
    assert distributed.manifest["rows"] == 300 and len(distributed.manifest["shards"]) == 4
    for langs in (None, ["es", "fi"]):
        assert _top10(distributed, langs) == _top10(single, langs)
    # the same trained quantizer in every shard, as one machine builds it
    ours_files = [sha256_file(p) for p in sorted(idx.glob("shard-*.faiss"))]
    assert ours_files == [sha256_file(p) for p in sorted(local_idx.glob("shard-*.faiss"))]


@needs_ray
def test_index_from_corpus_on_ray_in_one_session(cluster, single_machine, tiny_model, tmp_path):
    address, _, _ = cluster
    corpus, _, local_idx = single_machine
    argv = ["index", "--corpus", str(corpus), "--out", str(tmp_path / "idx"), "--shards", "4", "--quiet"]
    argv += ["--factory", "IVF4,PQ8x4", "--model", str(tiny_model), "--ray", address]
    assert cli.main(argv) == 0
    encoder = BiEncoder(str(tiny_model))
    assert _top10(Searcher(tmp_path / "idx", encoder=encoder)) == _top10(Searcher(local_idx, encoder=encoder))


@needs_ray
def test_an_encoder_killed_mid_encode_still_gives_a_complete_folder(cluster, tiny_model, tmp_path):
    """SIGKILL one encoder actor once the first shard is written: Ray restarts it and redoes its shard."""
    address, head_pid, env = cluster
    words = "the quick brown fox jumps over the lazy dog el zorro marron salta sobre el perro perezoso".split()
    rng = np.random.default_rng(3)
    corpus = tmp_path / "corpus.jsonl"
    with open(corpus, "w", encoding="utf-8") as f:  # long passages, one at a time: slow enough to interrupt
        for i in range(1600):
            f.write(json.dumps({"id": f"p{i}", "text": " ".join(rng.choice(words, 60)), "lang": "en"}) + "\n")
    out = tmp_path / "emb"
    argv = ["encode", "--corpus", str(corpus), "--out", str(out), "--shards", "16", "--batch-size", "1"]
    argv += ["--model", str(tiny_model), "--quiet", "--ray", address]
    driver = subprocess.Popen(
        [sys.executable, "-m", "xretrieve", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("shard-*.json")):
            assert driver.poll() is None and time.monotonic() < deadline, "encoding ended before any shard"
            time.sleep(0.05)
        workers = [pid for pid in _descendants(head_pid) if "_PassageEncoder" in _cmdline(pid)]
        written = len(list(out.glob("shard-*.json")))
        assert workers, [_cmdline(pid) for pid in _descendants(head_pid)]
        os.kill(workers[0], signal.SIGKILL)
        output, _ = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, output
    assert written < 16, "the kill came after the last shard: nothing was interrupted"
    emb = Embeddings(out)
    emb.verify()  # every shard's checksum
    ids = [docid for shard in range(16) for docid in emb.ids(shard)]
    assert ids == [d.id for d in read_corpus(corpus)]  # each row once, in corpus order
    assert emb.manifest["rows"] == sum(len(emb.vectors(s)) for s in range(16)) == 1600
    reference = BiEncoder(str(tiny_model)).encode_passages([d.text for d in read_corpus(corpus)[:100]])
    np.testing.assert_allclose(emb.vectors(0), reference[: len(emb.vectors(0))], atol=1e-5)


@needs_ray
def test_serve_on_ray_answers_as_the_single_machine_server(cluster, single_machine, tiny_model, capsys):
    address, _, env = cluster
    _, _, local_idx = single_machine
    port = _free_port()
    argv = [
        "serve",
        "--index",
        str(local_idx),
        "--model",
        str(tiny_model),
        "--port",
        str(port),
        "--api-key",
        "k-0123456789abcdef",
    ]
    # 4 shards + a router at 1 CPU each do not fit 2 CPUs: said at once, not left pending
    assert cli.main([*argv, "--ray", address]) == 2
    assert "need 5 CPUs; the cluster has 2" in capsys.readouterr().err
    server = subprocess.Popen(
        [sys.executable, "-m", "xretrieve", *argv, "--ray", address, "--replica-cpus", "0.4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url, headers = f"http://127.0.0.1:{port}", {"X-API-Key": "k-0123456789abcdef"}
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, "Ray Serve never became ready"
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        single = Searcher(local_idx, encoder=BiEncoder(str(tiny_model)))
        for langs in (None, ["es", "fi"]):
            body = {"queries": QUERIES, "k": 10, "lang": langs, "fields": ["lang"]}
            answer = httpx.post(f"{url}/v1/search", json=body, headers=headers, timeout=60)
            assert answer.status_code == 200, answer.text
            got = [[(h["id"], round(h["score"], 5)) for h in r["hits"]] for r in answer.json()["results"]]
            assert got == _top10(single, langs)
        info = httpx.get(f"{url}/v1/info", headers=headers, timeout=30).json()
        assert info["shards"] == 4 and info["index"]["rows"] == 300
        doc = httpx.get(f"{url}/v1/documents/d7", headers=headers, timeout=30).json()
        assert doc["id"] == "d7" and doc["text"]
        reload = httpx.post(f"{url}/v1/admin/reload", json={}, headers=headers, timeout=30)
        assert reload.status_code == 422 and "xretrieve serve --ray" in reload.json()["error"]
    finally:
        server.send_signal(signal.SIGINT)  # the CLI removes its application, then exits
        try:
            server.wait(120)
        except subprocess.TimeoutExpired:
            server.kill()
    assert server.returncode == 130
