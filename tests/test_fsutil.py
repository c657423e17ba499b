"""Atomic writes and linking a file that already holds the bytes."""

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from fixtures.procs import stuck_writer
from ggt import fsutil
from ggt.fsutil import link_or_write_atomic, sweep_orphaned_temps, write_bytes_atomic


def test_link_when_the_source_holds_the_bytes_else_write(tmp_path):
    data = os.urandom(100_000)
    source = tmp_path / "cache" / "ab" / "entry"
    write_bytes_atomic(source, data)

    assert link_or_write_atomic(tmp_path / "hq" / "a.png", data, source)
    linked = tmp_path / "hq" / "a.png"
    assert linked.read_bytes() == data and linked.stat().st_ino == source.stat().st_ino

    # Another answer under the same key (a shared cache replaced the entry): written, never linked.
    other = os.urandom(100_000)
    assert not link_or_write_atomic(tmp_path / "hq" / "b.png", other, source)
    assert (tmp_path / "hq" / "b.png").read_bytes() == other
    assert (tmp_path / "hq" / "b.png").stat().st_ino != source.stat().st_ino

    # No source at all: written. No temporary link is left behind in either case.
    assert not link_or_write_atomic(tmp_path / "hq" / "c.png", data, tmp_path / "missing")
    assert (tmp_path / "hq" / "c.png").read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "hq").iterdir()) == ["a.png", "b.png", "c.png"]
    # Replacing an existing file keeps the name complete (atomic) and the source untouched.
    assert link_or_write_atomic(tmp_path / "hq" / "b.png", data, source)
    assert (tmp_path / "hq" / "b.png").read_bytes() == data and source.read_bytes() == data


def test_sweep_removes_a_killed_writers_temp_file_and_spares_a_live_one(tmp_path):
    out = tmp_path / "lq"
    write_bytes_atomic(out / "done.png", b"complete")
    (out / ".hidden").write_bytes(b"not ours")
    foreign = out / ".a.png.0123abcd-1.k3j2h1g0.tmp"  # a writer on another host of a shared disk
    foreign.write_bytes(b"in progress elsewhere")
    proc = stuck_writer(out / "a.png")
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not list(out.glob(".a.png.*.tmp"))[1:]:
            time.sleep(0.05)
        temps = [p for p in out.glob(".a.png.*.tmp") if p != foreign]
        assert len(temps) == 1
        assert sweep_orphaned_temps(out) == 0 and temps[0].exists()  # its writer is still at work
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert sweep_orphaned_temps(out) == 1
    assert sorted(p.name for p in out.iterdir()) == sorted([".hidden", foreign.name, "done.png"])
    assert sweep_orphaned_temps(tmp_path / "missing") == 0


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="zombies are told apart through /proc")
def test_sweep_removes_the_temp_file_of_a_writer_left_a_zombie(tmp_path):
    # A killed worker nobody reaps (its parent died too, and the container's init does not reap)
    # still answers kill(pid, 0); its temp file must go all the same.
    proc = subprocess.Popen(["true"])
    try:
        deadline = time.time() + 30
        while time.time() < deadline and " Z " not in Path(f"/proc/{proc.pid}/stat").read_text():
            time.sleep(0.02)
        os.kill(proc.pid, 0)  # not reaped: the pid still answers
        temp = tmp_path / f".a.png.{fsutil._HOST}-{proc.pid}.k3j2h1g0.tmp"
        temp.write_bytes(b"half written")
        assert sweep_orphaned_temps(tmp_path) == 1 and not temp.exists()
    finally:
        proc.wait()


def test_atomic_writes_get_the_mode_a_plain_file_would(tmp_path):
    # mkstemp makes 0600 files and the rename keeps it: run files, exports and restored images came out
    # unreadable to everyone but their writer.
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    atomic = tmp_path / "sub" / "atomic.bin"
    write_bytes_atomic(atomic, b"x")
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~fsutil._UMASK
