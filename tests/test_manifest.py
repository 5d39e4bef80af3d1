import pytest

from xretrieve.errors import UserError
from xretrieve.manifest import (
    atomic_open,
    checksums,
    finished_records,
    load_shard_record,
    read_manifest,
    sha256_file,
    shard_entries,
    verify_checksum,
    write_manifest,
    write_shard_record,
)


def test_atomic_open_keeps_old_file_and_leaves_no_temp_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write("half of the new content")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_manifest_round_trip_and_kind_check(tmp_path):
    write_manifest(tmp_path, "index", {"dim": 4})
    assert read_manifest(tmp_path, "index")["dim"] == 4
    with pytest.raises(UserError, match="expected 'embeddings'"):
        read_manifest(tmp_path, "embeddings")


def test_future_format_version_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text('{"format": "index", "format_version": 99}')
    with pytest.raises(UserError, match="format_version 99 is not supported"):
        read_manifest(tmp_path, "index")


def test_checksum_mismatch_names_the_file(tmp_path):
    path = tmp_path / "shard-00000.npy"
    path.write_bytes(b"abc")
    digest = sha256_file(path)
    verify_checksum(path, digest)
    path.write_bytes(b"abd")
    with pytest.raises(UserError, match=r"shard-00000\.npy: checksum mismatch"):
        verify_checksum(path, digest)


def test_shard_record_is_void_when_a_file_changed_and_an_error_for_another_plan(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"1234")
    write_shard_record(tmp_path, 0, {"plan": {"p": 1}, "files": {"a.bin": sha256_file(tmp_path / "a.bin")}})
    assert load_shard_record(tmp_path, 0, {"p": 1}) is not None
    assert load_shard_record(tmp_path, 1, {"p": 1}) is None
    with pytest.raises(UserError, match="different run"):
        load_shard_record(tmp_path, 0, {"p": 2})
    (tmp_path / "a.bin").write_bytes(b"9999")
    assert load_shard_record(tmp_path, 0, {"p": 1}) is None


def test_atomic_writes_get_normal_file_permissions(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        write_manifest(tmp_path, "index", {})
    finally:
        os.umask(old)
    assert (tmp_path / "manifest.json").stat().st_mode & 0o777 == 0o644


def test_finished_records_wait_for_every_shard_and_trust_the_records_held(tmp_path):
    plan = {"run": 1}
    (tmp_path / "a.txt").write_text("a")
    on_disk = write_shard_record(tmp_path, 0, {"plan": plan, "rows": 1, "files": checksums(tmp_path, ["a.txt"])})
    held = {"plan": plan, "rows": 2, "files": {"gone.txt": "0" * 64}}  # just written by this process
    assert finished_records(tmp_path, 3, plan, {1: held}) is None  # shard 2 is someone else's, unfinished
    write_shard_record(tmp_path, 2, {"plan": plan, "rows": 3, "files": {}})
    records = finished_records(tmp_path, 3, plan, {1: held})
    assert records == [on_disk, held, {"plan": plan, "rows": 3, "files": {}}]
    assert [(e["name"], e["rows"]) for e in shard_entries(records)] == [
        ("shard-00000", 1),
        ("shard-00001", 2),
        ("shard-00002", 3),
    ]
