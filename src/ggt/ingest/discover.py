"""Finding the photos under the paths a user gave, with their categories, without ever looping."""

from __future__ import annotations

import os
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


def discover(paths: list[Path], extensions: list[str], category: str | None = None) -> Discovery:
    """Walk files and folders. The category is `category` when given, else the first subfolder's name.

    Symlinks are followed (photo libraries are often assembled from links), but a folder that links back
    to one of its ancestors is a loop: it is reported once as a failure and not entered.
    """
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    out = Discovery(sources=[], failures=[], ignored=0, notes=[])
    seen_dirs: set[tuple[int, int]] = set()
    unknown_folders: set[str] = set()

    for root in paths:
        root = Path(root)
        if not os.path.lexists(root):
            out.failures.append(DiscoveryFailure(root, "not_found", "no such file or folder"))
            continue
        if root.is_file():
            out.sources.append(Source(root, category or "unknown"))
            continue
        if not root.is_dir():
            out.failures.append(
                DiscoveryFailure(root, "broken_link", "a symlink whose target does not exist")
            )
            continue
        for path, rel_parts in _walk(root, seen_dirs, out.failures):
            if path.suffix.lower() not in exts:
                out.ignored += 1
                continue
            cat = category
            if cat is None:
                if len(rel_parts) > 1:
                    cat = normalize_category(rel_parts[0])
                    if cat is None:
                        unknown_folders.add(rel_parts[0])
                        cat = "unknown"
                else:
                    cat = "unknown"
            out.sources.append(Source(path, cat))
    for name in sorted(unknown_folders):
        out.notes.append(f"folder '{name}' is not a category name; its photos are 'unknown'")
    return out


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
                reason = "symlink_loop" if exc.errno == 40 else "unreadable"  # ELOOP: a link to itself
                failures.append(DiscoveryFailure(path, reason, f"cannot follow ({exc.strerror})"))
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
