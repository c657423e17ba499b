"""The export's manifest (`MANIFEST.sha256`, the format `sha256sum -c` reads) and `verify`."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

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
    # False when `root` is no finished ggt export at all (no such folder, no manifest): nothing to verify,
    # which the CLI tells apart from a damaged export (exit 2, not 1).
    found: bool = True
    checked: int = 0
    missing: list[str] = Field(default_factory=list)
    extra: list[str] = Field(default_factory=list)
    corrupt: list[str] = Field(default_factory=list)
    outside: list[str] = Field(default_factory=list)  # entries naming a path outside the export: never read
    malformed: list[int] = Field(default_factory=list)  # manifest line numbers that are not `SHA256  PATH`
    notes: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.found and not (
            self.missing or self.extra or self.corrupt or self.outside or self.malformed or self.notes
        )


_DIGEST = re.compile(r"[0-9a-f]{64}")


def _parse_line(line: str) -> tuple[str, str] | None:
    """(digest, path) of a `sha256sum` line (`DIGEST  PATH`, or `DIGEST *PATH` in binary mode), else None."""
    digest, rel = line[:64].lower(), line[66:]
    if len(line) < 67 or not _DIGEST.fullmatch(digest) or line[64] != " " or line[65] not in " *":
        return None
    return digest, rel


def _inside(root: Path, rel: str) -> bool:
    """Whether a manifest path names a file inside the export: no absolute path, no `..`, no symlink out."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or PureWindowsPath(rel).drive:
        return False
    return (root / rel).resolve().is_relative_to(root.resolve())


def verify(root: Path) -> VerifyReport:
    """Check every file of an export against its manifest: missing, extra and corrupt (hash differs).

    A manifest entry that points outside the export (an absolute path, `..`, a symlink out) is a failure
    and is never read: a tampered manifest must not make a foreign file count as part of the dataset."""
    root = Path(root)
    report = VerifyReport(root=str(root))
    manifest = root / MANIFEST
    if not root.is_dir():
        report.found = False
        what = "no such folder" if not root.exists() else "not a folder"
        report.notes.append(f"{root}: {what}, not a ggt export")
        return report
    if not manifest.is_file():
        report.found = False
        unfinished = (root / WORK_DIR / "plan.json").is_file()
        report.notes.append(
            f"no {MANIFEST} in {root}: an unfinished ggt export (rerun the export with --resume)"
            if unfinished
            else f"no {MANIFEST} in {root}: not a ggt export"
        )
        return report
    listed: set[str] = set()
    with open(manifest, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            parsed = _parse_line(line)
            if parsed is None:
                report.malformed.append(number)
                continue
            digest, rel = parsed
            if not _inside(root, rel):
                report.outside.append(rel)
                continue
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
