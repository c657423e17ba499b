"""Crash-safe file writes: a file under its final name is always complete."""

from __future__ import annotations

import ctypes
import os
import tempfile
from pathlib import Path


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, fsync: bool = True) -> None:
    """Write bytes so that `path` is either absent or complete, even across a crash or kill -9.

    With `fsync=False` the file is complete for every process at once (kill -9 safe) but an OS crash may
    lose it; callers that batch writes then call `sync_filesystem` once before recording them.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(target.parent)


def link_or_write_atomic(path: str | os.PathLike[str], data: bytes, source: str | os.PathLike[str]) -> bool:
    """Put `data` at `path` as a hard link to `source` when that file holds exactly these bytes, else write
    them (`write_bytes_atomic`). Either way `path` is absent or complete, and durable once this returns
    (a linked `source` must be durable already). True when linked.

    A generated HQ is often the very file the request cache keeps: a link spares writing and fsyncing
    the same megabytes twice per item. The bytes are compared after linking, so a cache entry another run
    replaced in the meantime is never passed off as this answer.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{id(data):x}.link"
    try:
        os.link(source, tmp)
    except OSError:  # another file system, no such file, links not supported
        write_bytes_atomic(target, data)
        return False
    try:
        linked = tmp.read_bytes() == data
        if linked:
            os.replace(tmp, target)
    except OSError:
        linked = False
    if not linked:
        tmp.unlink(missing_ok=True)
        write_bytes_atomic(target, data)
        return False
    _fsync_dir(target.parent)
    return True


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_filesystem(path: str | os.PathLike[str]) -> None:
    """Make every write on the filesystem holding `path` durable: one journal commit for a whole batch."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
    except (OSError, AttributeError):
        os.sync()
        return
    try:
        if not hasattr(libc, "syncfs") or libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)
