"""The export's manifest (`MANIFEST.sha256`, the format `sha256sum -c` reads) and `verify`."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel, Field

MANIFEST = "MANIFEST.sha256"
WORK_DIR = ".ggt_export"  # resume state: the plan and done markers; not part of the dataset
_BUF = 1 << 20


def hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    buf = bytearray(_BUF)
    view = memoryview(buf)
    size = 0
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
            size += n
    return h.hexdigest(), size


def write_manifest_lines(entries: Iterable[tuple[str, str]]) -> Iterator[str]:
    for rel, digest in entries:
        yield f"{digest}  {rel}\n"


def dataset_files(root: Path) -> Iterator[str]:
    """Every file of the dataset, relative and with '/' separators; the manifest and work folder excluded."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d != WORK_DIR]
        for name in filenames:
            rel = (rel_dir / name).as_posix()
            if rel != MANIFEST:
                yield rel


class VerifyReport(BaseModel):
    root: str
    checked: int = 0
    missing: list[str] = Field(default_factory=list)
    extra: list[str] = Field(default_factory=list)
    corrupt: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.corrupt or self.notes)


def verify(root: Path) -> VerifyReport:
    """Check every file of an export against its manifest: missing, extra and corrupt (hash differs)."""
    root = Path(root)
    report = VerifyReport(root=str(root))
    manifest = root / MANIFEST
    if not manifest.exists():
        report.notes.append(f"no {MANIFEST} in {root}: not a finished ggt export")
        return report
    listed: set[str] = set()
    with open(manifest, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            digest, _, rel = line.partition("  ")
            listed.add(rel)
            path = root / rel
            if not path.is_file():
                report.missing.append(rel)
                continue
            report.checked += 1
            if hash_file(path)[0] != digest:
                report.corrupt.append(rel)
    report.extra = sorted(rel for rel in dataset_files(root) if rel not in listed)
    return report
