"""Shard storage through fsspec: shard specs, result files, done/committed markers and the request cache.

A URL picks the file system (`/shared/run/shards`, `file://...`, `memory://...`, `s3://...`, `gs://...`:
the object-store plugins are the user's to install). Writes are atomic: a temp name then a rename on
file systems that have one, a single PUT on object stores (which never show a partial object).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from ggt.engine import RequestCache


class Storage:
    """One fsspec file system and a root inside it; every path argument is relative to the root."""

    def __init__(self, url: str | os.PathLike[str]) -> None:
        import fsspec

        self.url = str(url)
        self.fs, root = fsspec.core.url_to_fs(self.url)
        self.root = root.rstrip("/") or "/"
        self.protocols = _protocols(self.fs)
        self.is_local = "file" in self.protocols

    def path(self, rel: str) -> str:
        rel = rel.strip("/")
        return f"{self.root}/{rel}" if rel else self.root

    def local_path(self, rel: str = "") -> Path | None:
        """The POSIX path of `rel` when the storage is a local/shared file system, else None."""
        return Path(self.path(rel)) if self.is_local else None

    def sub(self, rel: str) -> Storage:
        child = Storage.__new__(Storage)
        child.url, child.fs, child.is_local = f"{self.url.rstrip('/')}/{rel}", self.fs, self.is_local
        child.protocols = self.protocols
        child.root = self.path(rel)
        return child

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self.path(rel)))

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self.path(rel))

    def write_bytes(self, rel: str, data: bytes) -> None:
        full = self.path(rel)
        parent = full.rsplit("/", 1)[0]
        if self.is_local:
            from ggt.fsutil import write_bytes_atomic

            write_bytes_atomic(Path(full), data)
            return
        self.fs.makedirs(parent, exist_ok=True)
        self.fs.pipe_file(full, data)

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode("utf-8"))

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8")

    def rm(self, rel: str) -> None:
        full = self.path(rel)
        if self.fs.exists(full):
            self.fs.rm(full, recursive=True)

    def listdir(self, rel: str = "") -> list[str]:
        """Names (not paths) directly under `rel`; empty when it does not exist."""
        full = self.path(rel)
        if not self.fs.exists(full):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(full, detail=False))


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return tuple(proto) if isinstance(proto, tuple | list) else (proto,)


class FsspecRequestCache(RequestCache):
    """The engine's content-addressed response cache on any fsspec storage (same layout and checks).

    Workers on several machines share it, so a worker that died after paying leaves the answer where the
    retry finds it. Meta is written before data, and data present means a complete entry.
    """

    def __init__(self, storage: Storage, store: Any = None) -> None:
        super().__init__(Path(storage.root), store, fsync=True)
        self.storage = storage

    def _read(self, rel: str) -> bytes:
        return self.storage.read_bytes(rel)

    def _write(self, rel: str, data: bytes) -> None:
        self.storage.write_bytes(rel, data)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
