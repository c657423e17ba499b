"""Crash-safe file writes: a file under its final name is always complete."""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import socket
import tempfile
from pathlib import Path

# Temporary names carry their writer (host and pid), so a rerun can tell a killed writer's leftovers from a
# live writer's file in progress; the host part keeps writers on another machine of a shared disk safe.
_HOST = hashlib.sha1(socket.gethostname().encode("utf-8")).hexdigest()[:8]
_TEMP_NAME = re.compile(r"^\..+\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.[0-9A-Za-z_]+\.(?:tmp|link)$")


def _writer_tag() -> str:
    return f"{_HOST}-{os.getpid()}"  # read per call: a forked worker has its own pid


def _process_umask() -> int:
    # Read once, at import: os.umask can only be read by setting it, which is not safe once threads run.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _process_umask()


def mkstemp_for(target: Path) -> tuple[int, str]:
    """An open temporary file beside `target`, named for `target` and its writer (`sweep_orphaned_temps`),
    with the mode a plainly created file would get: mkstemp's 0600 survives the rename, and left run
    files, exports and restored images unreadable to the rest of a team (under umask 022: 0644)."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{_writer_tag()}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)
    return fd, name


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, fsync: bool = True) -> None:
    """Write bytes so that `path` is either absent or complete, even across a crash or kill -9.

    With `fsync=False` the file is complete for every process at once (kill -9 safe) but an OS crash may
    lose it; callers that batch writes then call `sync_filesystem` once before recording them.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = mkstemp_for(target)
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
    tmp = target.parent / f".{target.name}.{_writer_tag()}.{id(data):x}.link"
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


def sweep_orphaned_temps(directory: str | os.PathLike[str]) -> int:
    """Delete the temporary files that writers on this host left in `directory` when they were killed
    (kill -9, power loss) before renaming them; a live writer's file is left alone. Returns how many went.
    """
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        m = _TEMP_NAME.match(entry.name) if entry.name.startswith(".") else None
        if m is None or m["host"] != _HOST or _alive(int(m["pid"])):
            continue
        try:
            os.unlink(entry.path)
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    # A zombie answers the signal but writes nothing more: a killed worker whose parent died too waits
    # for init to reap it, and some containers' init never does, which left its temp file for good.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (not Linux), or reaped meanwhile: the signal's answer stands
        return True
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")


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
