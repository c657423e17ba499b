"""Atomic writes and linking a file that already holds the bytes."""

import os

from ggt.fsutil import link_or_write_atomic, write_bytes_atomic


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
