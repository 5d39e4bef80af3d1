"""Versioned manifests, checksums and atomic writes: the only code that commits artifacts to disk."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from xretrieve.errors import UserError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    """Make a folder's new or renamed entries durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_target(path: str | Path) -> Iterator[str]:
    """Yield a temporary sibling path to write; on success fsync it and rename it over `path`.

    Readers never see half a file: a crash leaves the old file (or none) and a stray `.tmp`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the final file normal permissions
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename in (None, tmp):
            # a full disk surfaces as a bare "No space left on device" or numpy's "N requested and M written":
            # name the file the user asked for, not the temporary one or none
            reason = exc.strerror or f"{exc}; is the disk full?"
            raise OSError(exc.errno, f"cannot write ({reason})", str(path)) from exc
        raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    with atomic_target(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
        yield f


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_folder(folder: str | Path) -> None:
    """Fail before any work when `folder` cannot be created or written in (it is not created here)."""
    folder = Path(folder)
    existing = _nearest_existing(folder.absolute())
    if not existing.is_dir():
        raise UserError(f"{folder}: cannot be a folder: {existing} is a file")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise UserError(f"{folder}: cannot write in {existing} ({exc.strerror or exc})") from None


def check_writable_file(path: str | Path) -> None:
    """Fail before any work when the file `path` cannot be written (a folder there, or no folder to hold it)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give a file name")
    check_writable_folder(path.parent)


def check_free_space(folder: str | Path, needed: int, what: str) -> None:
    """Fail before writing `what` (about `needed` bytes) into `folder` when its disk has less room."""
    free = shutil.disk_usage(_nearest_existing(Path(folder).absolute())).free
    if free < needed:
        raise UserError(
            f"{folder}: {what} needs about {needed / 1e6:,.0f} MB but the disk has {free / 1e6:,.0f} MB free"
        )


def write_manifest(folder: str | Path, kind: str, body: dict[str, Any]) -> None:
    atomic_write_json(Path(folder) / MANIFEST_NAME, {"format": kind, "format_version": FORMAT_VERSION, **body})


def manifest_body(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest without its format fields: what `write_manifest` takes, to write it again or derive another."""
    return {key: value for key, value in manifest.items() if key not in ("format", "format_version")}


def update_manifest(folder: str | Path, kind: str, changes: dict[str, Any]) -> None:
    """Rewrite a folder's manifest with `changes` set (atomically); nothing is written when none changes."""
    manifest = read_manifest(folder, kind)
    if any(manifest.get(key) != value for key, value in changes.items()):
        write_manifest(folder, kind, manifest_body(manifest) | changes)


def read_manifest(folder: str | Path, kind: str) -> dict[str, Any]:
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise UserError(f"{folder}: no {MANIFEST_NAME}; not a complete xretrieve {kind} folder")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if manifest.get("format") != kind:
        raise UserError(f"{path}: is a {manifest.get('format')!r} manifest, expected {kind!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{path}: format_version {manifest.get('format_version')} is not supported "
            f"(this xretrieve reads version {FORMAT_VERSION})"
        )
    return manifest


def verify_checksum(path: str | Path, expected: str) -> None:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: listed in the manifest but missing")
    check_digest(path, sha256_file(path), expected)


def check_digest(path: str | Path, actual: str, expected: str) -> None:
    """Raise a UserError naming `path` when the sha256 of what was read differs from the manifest's."""
    if actual != expected:
        raise UserError(
            f"{path}: checksum mismatch (manifest sha256 {expected[:12]}..., file {actual[:12]}...); "
            "the file changed after it was written: rebuild it"
        )


def checksums(folder: str | Path, names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """{file name: sha256} for files in `folder`, as manifests and shard records list them."""
    return {name: sha256_file(Path(folder) / name) for name in names}


def verify_files(folder: str | Path, files: dict[str, str]) -> None:
    """Raise a UserError naming the first listed file that is missing or changed."""
    for name, digest in files.items():
        verify_checksum(Path(folder) / name, digest)


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def write_shard_record(folder: str | Path, index: int, record: dict[str, Any]) -> dict[str, Any]:
    """Written last, after the shard's files: its presence is what marks the shard complete."""
    atomic_write_json(Path(folder) / f"{shard_name(index)}.json", record)
    return record


def load_shard_record(folder: str | Path, index: int, plan: dict[str, Any]) -> dict[str, Any] | None:
    """The record of a finished shard of this same plan, its files verified; None if it must be (re)built.

    A record left by a different plan (another corpus, model or shard count) is an error, not a
    silent overwrite: the user picked an output folder that holds someone else's work.
    """
    return load_record(Path(folder) / f"{shard_name(index)}.json", plan)


def load_record(path: Path, plan: dict[str, Any], check=None) -> dict[str, Any] | None:
    """A record (a shard's, or a chunk's within one) of this same plan, passing `check` and with its files
    (beside it) verified; None if its work must be done again. A record of another plan is an error."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if record.get("plan") != plan:
        raise UserError(
            f"{path}: this folder holds work of a different run (other corpus, model, factory or shard count); "
            "choose a new --out or delete the folder"
        )
    if check is not None and not check(record):
        return None
    try:
        verify_files(path.parent, record["files"])
    except UserError:
        return None  # damaged or half-replaced: done again
    return record


def finished_records(
    folder: str | Path, count: int, plan: dict[str, Any], known: dict[int, dict[str, Any] | None]
) -> list[dict[str, Any]] | None:
    """Every shard's record once all `count` are finished, else None (others are still at work). Records
    this process already holds (`known`: loaded or just written) are not read and checksummed again."""
    records = [known.get(i) or load_shard_record(folder, i, plan) for i in range(count)]
    return None if any(r is None for r in records) else records


def shard_entries(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The manifest's list of shards: name, rows and file checksums of each, in order."""
    return [{"name": shard_name(i), "rows": r["rows"], "files": r["files"]} for i, r in enumerate(records)]
