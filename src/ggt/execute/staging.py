"""Staged shards: workers that cannot see the run folder get their inputs and return their outputs through
shard storage.

Used when the shard storage is not a local file system (an object store) or when `execute.stage_files` is
true. The driver uploads the files a shard reads under `STORAGE/files/AB/SHA256` (content-addressed: an
LQ file is uploaded once however many stages and shards read it, and an HQ rewritten by `--redo` gets a new
key, so a worker never reads a stale copy) and replaces every argument that names a path under the run
folder with a `RunPath` (run-relative), so the driver's absolute paths never reach a worker. The worker
makes a temporary run root, downloads the inputs to their relative paths, runs the unchanged stage
function, uploads what it created to `SHARD/out/RELPATH` and lists it (with its SHA-256) in the result
file's metadata, then writes the result and the done marker. The driver downloads each listed output into
the run folder (atomically, hash checked) before it commits the shard's rows; an output that is missing or
damaged fails that item (`output_lost`), not the run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ggt.config import ExecuteConfig
from ggt.execute.storage import Storage
from ggt.fsutil import write_bytes_atomic

FILES = "files"
OUT = "out"
# Worker-side text (messages, results) names its temporary root as this token; the driver puts its run
# root back, so failure messages read as they do with the local executor.
ROOT_TOKEN = "@@GGT_RUN@@"
LOST = "output_lost"


@dataclass(frozen=True)
class RunPath:
    """A path under the run folder, relative to it: what a staged spec carries instead of an absolute path."""

    rel: str

    def resolve(self, root: Path) -> str:
        return str(root / self.rel) if self.rel else str(root)


def is_staged(ex: ExecuteConfig, storage: Storage) -> bool:
    """Staged iff `execute.stage_files` says so; unset: iff the storage is not a local/shared file system."""
    return ex.stage_files if ex.stage_files is not None else not storage.is_local


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_key(digest: str) -> str:
    return f"{FILES}/{digest[:2]}/{digest}"


def safe_rel(rel: str) -> str:
    """A run-relative path that cannot climb out of the run root (a damaged or hostile listing)."""
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"not a run-relative path: {rel!r}")
    return p.as_posix()


# -- driver: inputs ------------------------------------------------------------------------------------------


def run_roots(root: Path) -> tuple[str, ...]:
    """The spellings of the run root that stage arguments may use (as given, and resolved)."""
    return tuple(dict.fromkeys(os.path.normpath(str(p)) for p in (root, root.resolve())))


def _under(value: str, roots: Sequence[str]) -> str | None:
    """`value` relative to the run root when it is an absolute path under it ("" for the root itself)."""
    if not os.path.isabs(value):
        return None
    p = os.path.normpath(value)
    for root in roots:
        if p == root:
            return ""
        if p.startswith(root.rstrip(os.sep) + os.sep):
            return Path(os.path.relpath(p, root)).as_posix()
    return None


class Uploader:
    """Uploads run files to `files/` once per content (remembering what it uploaded or found this run)."""

    def __init__(self, storage: Storage, run_root: Path) -> None:
        self.storage = storage
        self.run_root = run_root
        self.seen: set[str] = set()
        self.uploaded = 0
        self.uploaded_bytes = 0

    def upload(self, rel: str) -> str | None:
        """The content hash of RUN/rel after making sure storage holds it; None when the file is missing."""
        try:
            data = (self.run_root / rel).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None  # the worker's item then fails as missing_file, as it would locally
        digest = sha256(data)
        if digest not in self.seen:
            key = file_key(digest)
            # Content-addressed and written whole (atomic rename / single PUT): present means correct.
            if not self.storage.exists(key):
                self.storage.write_bytes(key, data)
                self.uploaded += 1
                self.uploaded_bytes += len(data)
            self.seen.add(digest)
        return digest

    def stage_args(self, args: Sequence[Any], roots: Sequence[str]) -> tuple[tuple[Any, ...], dict[str, str]]:
        """(args with run paths as RunPath, {relpath: sha256} of the files among them, uploaded)."""
        out: list[Any] = []
        inputs: dict[str, str] = {}
        for a in args:
            rel = _under(os.fspath(a), roots) if isinstance(a, str | os.PathLike) else None
            if rel is None:
                out.append(a)
                continue
            out.append(RunPath(rel))
            if rel and (self.run_root / rel).is_file():
                digest = self.upload(rel)
                if digest is not None:
                    inputs[rel] = digest
        return tuple(out), inputs


def item_spec(
    uploader: Uploader, roots: Sequence[str], fn: Any, chunk: Iterable[Sequence[Any]]
) -> dict[str, Any]:
    """A per-item shard's staged spec: the function, run-relative arguments and the inputs to download."""
    args, inputs = [], {}
    for a in chunk:
        staged_args, ins = uploader.stage_args(a, roots)
        args.append(staged_args)
        inputs.update(ins)
    return {"fn": fn, "args": args, "inputs": inputs, "staged": True}


# -- worker ---------------------------------------------------------------------------------------------------


def fetch_inputs(storage: Storage, root: Path, inputs: Mapping[str, str]) -> None:
    """Download a shard's inputs to their run-relative paths under the worker's temporary root."""
    for rel, digest in inputs.items():
        data = storage.read_bytes(file_key(digest))
        if sha256(data) != digest:  # storage damage: a task error, so Ray retries the shard
            raise OSError(f"staged input {rel} does not match its hash {digest[:12]}")
        write_bytes_atomic(root / safe_rel(rel), data, fsync=False)


def resolve_args(args: Iterable[Any], root: Path) -> tuple[Any, ...]:
    return tuple(a.resolve(root) if isinstance(a, RunPath) else a for a in args)


def list_files(root: Path) -> set[str]:
    """Run-relative paths of the files under `root`, less temp files of writes in progress (dot names)."""
    found = set()
    cut = len(str(root).rstrip(os.sep)) + 1
    for dirpath, _, names in os.walk(root):
        base = dirpath[cut:]  # walked once per item: plain string work, no Path objects
        for name in names:
            if not name.startswith("."):
                found.add(f"{base}/{name}".replace(os.sep, "/") if base else name)
    return found


def upload_outputs(storage: Storage, rel: str, root: Path, paths: Iterable[str]) -> list[dict[str, Any]]:
    """Upload files the worker created to `SHARD/out/RELPATH`; their listing for the result metadata.

    A path that is not there is listed with no hash, so the driver fails its item instead of committing
    a result whose file does not exist."""
    listing = []
    for p in sorted(paths):
        try:
            data = (root / safe_rel(p)).read_bytes()
        except FileNotFoundError:
            listing.append({"path": p, "sha256": None, "size": 0})
            continue
        storage.write_bytes(f"{rel}/{OUT}/{p}", data)
        listing.append({"path": p, "sha256": sha256(data), "size": len(data)})
    return listing


def tokenize(text: str | None, root: Path) -> str | None:
    return text.replace(str(root), ROOT_TOKEN) if text else text


# -- driver: outputs and commit ------------------------------------------------------------------------------


def fetch_outputs(
    storage: Storage, rel: str, run_root: Path, outputs: Mapping[str, list[Mapping[str, Any]]] | None
) -> dict[str, str]:
    """Download every listed output into the run folder (atomically, hash checked); {item: why} of failures.

    Idempotent: a file already in place with the right hash is left alone, so a driver killed between this
    and the store commit simply does it again."""
    lost: dict[str, str] = {}
    for item_id, files in (outputs or {}).items():
        for f in files:
            path, digest = str(f.get("path") or ""), f.get("sha256")
            try:
                target = run_root / safe_rel(path)
            except ValueError as exc:
                lost[item_id] = f"shard {rel} listed a bad output path: {exc}"
                break
            if not digest:
                lost[item_id] = f"shard {rel}: the worker did not produce {path}"
                break
            if (
                target.is_file()
                and target.stat().st_size == f.get("size")
                and sha256(target.read_bytes()) == digest
            ):
                continue
            try:
                data = storage.read_bytes(f"{rel}/{OUT}/{path}")
            except FileNotFoundError:
                lost[item_id] = f"shard {rel}: output {path} is missing from shard storage"
                break
            if sha256(data) != digest:
                lost[item_id] = f"shard {rel}: output {path} in shard storage is damaged (SHA-256 mismatch)"
                break
            write_bytes_atomic(target, data)
    return lost


def restore_rows(rows: list[dict[str, Any]], lost: Mapping[str, str], run_root: Path) -> list[dict[str, Any]]:
    """Result rows with the worker's root token put back to the run root, and items whose outputs were
    lost turned into failures (`output_lost`; their attempts and costs are kept: money is never dropped)."""
    out = []
    for row in rows:
        row = dict(row)
        for k in ("result", "message"):
            if isinstance(row.get(k), str) and ROOT_TOKEN in row[k]:
                # Inside JSON the root must be escaped as JSON would; outside it is plain text.
                value = json.dumps(str(run_root))[1:-1] if k == "result" else str(run_root)
                row[k] = row[k].replace(ROOT_TOKEN, value)
        if row["item_id"] in lost and row["status"] == "done":
            row.update(status="failed", result="{}", reason=LOST, message=lost[row["item_id"]])
        out.append(row)
    return out
