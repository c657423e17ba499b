"""Finding the photos under the paths a user gave, with their categories, without ever looping."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ggt.config import normalize_category


@dataclass(frozen=True)
class Source:
    path: Path
    category: str


@dataclass(frozen=True)
class DiscoveryFailure:
    path: Path
    reason: str
    message: str


@dataclass
class Discovery:
    sources: list[Source]
    failures: list[DiscoveryFailure]
    ignored: int
    notes: list[str]
    repeated: int = 0
    """files reached more than once (a folder given twice, a link to a file already seen): kept once"""


def discover(paths: list[Path], extensions: list[str], category: str | None = None) -> Discovery:
    """Walk files and folders. The category is `category` when given, else the first subfolder's name.

    Symlinks are followed (photo libraries are often assembled from links), but a folder that links back
    to one of its ancestors is a loop: it is reported once as a failure and not entered.
    """
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    out = Discovery(sources=[], failures=[], ignored=0, notes=[])
    seen_dirs: set[tuple[int, int]] = set()
    unknown_folders: set[str] = set()
    # Keyed by the resolved path, so `in/photos in/photos`, `./in/photos` next to `in/photos`, or a link to
    # a file also reached directly yield the file once: a second sighting would be recorded as a duplicate
    # of the item the first one produced, that is of itself.
    seen_files: set[str] = set()
    seen_failures: set[str] = set()

    def add_source(path: Path, cat: str) -> None:
        key = os.path.realpath(path)
        if key in seen_files:
            out.repeated += 1
            return
        seen_files.add(key)
        out.sources.append(Source(path, cat))

    def add_failure(f: DiscoveryFailure) -> None:
        key = os.path.abspath(f.path)  # not realpath: a loop has no real path
        if key not in seen_failures:
            seen_failures.add(key)
            out.failures.append(f)

    for root in paths:
        root = Path(root)
        if not os.path.lexists(root):
            add_failure(DiscoveryFailure(root, "not_found", "no such file or folder"))
            continue
        try:
            st = os.stat(root)
        except OSError as exc:
            add_failure(_unfollowable(root, exc))
            continue
        if stat.S_ISREG(st.st_mode):
            add_source(root, category or "unknown")
            continue
        if not stat.S_ISDIR(st.st_mode):
            # A FIFO would block the worker that opens it, a socket cannot be read: neither is a photo.
            add_failure(DiscoveryFailure(root, "unreadable", "not a regular file or folder"))
            continue
        photos_under_root, ignored_before = 0, out.ignored
        walk_failures: list[DiscoveryFailure] = []
        for path, rel_parts in _walk(root, seen_dirs, walk_failures):
            if path.suffix.lower() not in exts:
                out.ignored += 1
                continue
            photos_under_root += 1
            cat = category
            if cat is None:
                if len(rel_parts) > 1:
                    cat = normalize_category(rel_parts[0])
                    if cat is None:
                        unknown_folders.add(rel_parts[0])
                        cat = "unknown"
                else:
                    cat = "unknown"
            add_source(path, cat)
        for f in walk_failures:
            add_failure(f)
        if photos_under_root == 0:
            skipped = out.ignored - ignored_before
            why = f" ({skipped} other files skipped for their extension)" if skipped else ""
            out.notes.append(f"no photos found under {root}{why}")
    for name in sorted(unknown_folders):
        out.notes.append(f"folder '{name}' is not a category name; its photos are 'unknown'")
    if out.repeated:
        out.notes.append(
            f"{out.repeated} files were reached more than once (a folder given twice, or through links);"
            " each is ingested once"
        )
    return out


def _unfollowable(path: Path, exc: OSError) -> DiscoveryFailure:
    """Why a path that exists (as a name) cannot be followed to a file or folder."""
    if exc.errno == errno.ELOOP:
        return DiscoveryFailure(path, "symlink_loop", "symlink loop: the link leads back to itself")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return DiscoveryFailure(path, "broken_link", "a symlink whose target does not exist")
    return DiscoveryFailure(path, "unreadable", f"cannot follow ({exc.strerror})")


def _walk(
    root: Path, seen: set[tuple[int, int]], failures: list[DiscoveryFailure]
) -> Iterator[tuple[Path, tuple[str, ...]]]:
    """Depth-first, sorted (so runs are reproducible), yielding files with their parts below `root`."""
    root_stat = root.stat()
    stack: list[tuple[Path, tuple[str, ...], frozenset[tuple[int, int]]]] = []
    key = (root_stat.st_dev, root_stat.st_ino)
    seen.add(key)
    stack.append((root, (), frozenset({key})))
    while stack:
        folder, rel, ancestors = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except PermissionError:
            failures.append(
                DiscoveryFailure(folder, "unreadable", "permission denied: cannot list this folder")
            )
            continue
        except OSError as exc:
            failures.append(
                DiscoveryFailure(folder, "unreadable", f"cannot list this folder ({exc.strerror})")
            )
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue  # .DS_Store, ._AppleDouble, editor droppings
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = not is_dir and entry.is_file(follow_symlinks=True)
            except OSError as exc:
                failures.append(_unfollowable(path, exc))
                continue
            if is_dir:
                try:
                    st = entry.stat(follow_symlinks=True)
                except OSError as exc:
                    failures.append(DiscoveryFailure(path, "unreadable", f"cannot stat ({exc.strerror})"))
                    continue
                dkey = (st.st_dev, st.st_ino)
                if dkey in ancestors:
                    target = os.path.realpath(path)
                    failures.append(
                        DiscoveryFailure(
                            path, "symlink_loop", f"symlink loop: points back to its ancestor {target}"
                        )
                    )
                    continue
                if dkey in seen:
                    continue  # the same folder reached twice through links: walk it once
                seen.add(dkey)
                subdirs.append((path, (*rel, entry.name), ancestors | {dkey}))
            elif is_file:
                yield path, (*rel, entry.name)
            elif entry.is_symlink():
                failures.append(
                    DiscoveryFailure(path, "broken_link", "a symlink whose target does not exist")
                )
        stack.extend(reversed(subdirs))
