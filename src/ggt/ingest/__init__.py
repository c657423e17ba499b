"""`ggt ingest`: real LQ photos -> items of a run, every unusable file recorded with its reason."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field

from ggt.config import ConfigError, IngestConfig, normalize_category
from ggt.execute.local import bounded_map
from ggt.fsutil import sweep_orphaned_temps, sync_filesystem
from ggt.ingest.discover import Discovery, discover
from ggt.ingest.neardup import PhashIndex
from ggt.ingest.worker import SourceOutcome, process_source
from ggt.progress import ProgressFn
from ggt.store import Run, dumps, now


class IngestFailure(BaseModel):
    path: str
    reason: str
    message: str


class IngestSummary(BaseModel):
    run: str
    found: int = 0
    new: int = 0
    duplicates: int = 0
    near_duplicates: int = 0
    failed: int = 0
    already_done: int = 0
    ignored: int = Field(0, description="files skipped for their extension (not images)")
    failures: list[IngestFailure] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


def ingest(
    sources: list[Path],
    run: Path,
    category: str | None = None,
    config: Path | None = None,
    overrides: list[str] | None = None,
    progress: ProgressFn | None = None,
) -> IngestSummary:
    """Ingest files and folders into `run` (created if needed). Idempotent and resumable.

    `found` counts every distinct file looked at, so found = new + already_done + duplicates + failed
    (near-duplicates are new items that carry a flag; ignored files are not photos and not in `found`).
    """
    if category is not None:
        normalized = normalize_category(category)
        if normalized is None:
            raise ConfigError(
                f"--category {category!r} is not one of social_media, old_photo, rain, haze, snow, "
                "low_light, unknown"
            )
        category = normalized
    with Run.create(run) as r:
        cfg = r.resolve_config(config, overrides).ingest
        sweep_orphaned_temps(r.lq_dir)  # half-written copies of a killed ingest
        found = discover(sources, cfg.extensions, category)
        summary = IngestSummary(
            run=str(run),
            found=len(found.sources) + len(found.failures),
            ignored=found.ignored,
            notes=list(found.notes),
        )
        tally = _Tally(explicit_category=category is not None)
        _record_discovery_failures(r, found, summary)
        pending, previous = _pending_sources(r, found, summary, tally)
        _run_pool(r, pending, previous, cfg, summary, tally, progress)
        summary.notes.extend(tally.notes())
    return summary


@dataclass
class _Previous:
    """What the store said about a path before this ingest looked at it again."""

    status: str
    item_id: str | None


@dataclass
class _Tally:
    """Facts gathered across the run that end as notes in the summary."""

    explicit_category: bool
    kept_category: Counter[str] = field(default_factory=Counter)
    asked_category: Counter[str] = field(default_factory=Counter)
    changed: int = 0

    def check_category(self, asked: str, item_category: str | None) -> None:
        # A subfolder that names no category yields 'unknown', which says nothing about what the user
        # wants; only a category actually asked for (option or folder name) is worth a word.
        if item_category is None or item_category == asked:
            return
        if self.explicit_category or asked != "unknown":
            self.kept_category[item_category] += 1
            self.asked_category[asked] += 1

    def notes(self) -> list[str]:
        out = []
        n = sum(self.kept_category.values())
        if n:
            kept = ", ".join(f"{c}: {k}" for c, k in sorted(self.kept_category.items()))
            asked = ", ".join(sorted(self.asked_category))
            out.append(
                f"{n} already-ingested photos keep their earlier category ({kept}), not {asked} as asked now: an"
                " item's category is set when it is first ingested; to categorise them anew, ingest them"
                " into a new run"
            )
        if self.changed:
            out.append(
                f"{self.changed} files changed content since they were ingested: each now points to the item"
                " of its new content (see `message` in the sources table); the earlier items stay"
            )
        return out


def _record_discovery_failures(r: Run, found: Discovery, summary: IngestSummary) -> None:
    with r.store.transaction() as conn:
        for f in found.failures:
            conn.execute(
                "INSERT INTO sources(path, status, reason, message, updated_at) VALUES (?, 'failed', ?, ?, ?)"
                " ON CONFLICT(path) DO UPDATE SET status='failed', reason=excluded.reason,"
                " message=excluded.message, updated_at=excluded.updated_at",
                (str(f.path), f.reason, f.message, now()),
            )
            summary.failures.append(IngestFailure(path=str(f.path), reason=f.reason, message=f.message))
    summary.failed += len(found.failures)


def _pending_sources(
    r: Run, found: Discovery, summary: IngestSummary, tally: _Tally
) -> tuple[list[tuple[str, str]], dict[str, _Previous]]:
    """Sources not yet settled: new, changed since (size/mtime), or failed before (retried).

    Also returns, per pending path seen before, what it produced then, so the commit can tell a touched
    file (same content: still its own item) from a changed one.
    """
    rows = {
        row["path"]: row
        for row in r.store.query(
            "SELECT s.path, s.size, s.mtime_ns, s.status, s.item_id, i.category AS item_category"
            " FROM sources s LEFT JOIN items i ON i.id = s.item_id"
        )
    }
    resolved: dict[str, str] | None = None
    pending: list[tuple[str, str]] = []
    previous: dict[str, _Previous] = {}
    for src in found.sources:
        key = str(src.path)
        if key not in rows and rows:
            # The same file spelled differently (./in, an absolute path, a link) must reuse its record,
            # or it would become a second record calling the first one's item a duplicate.
            if resolved is None:
                resolved = {os.path.realpath(p): p for p in rows}
            key = resolved.get(os.path.realpath(src.path), key)
        row = rows.get(key)
        if row is not None and row["status"] != "failed":
            try:
                st = os.stat(key)
                if (row["size"], row["mtime_ns"]) == (st.st_size, st.st_mtime_ns):
                    summary.already_done += 1
                    tally.check_category(src.category, row["item_category"])
                    continue
            except OSError:
                pass  # let the worker record why it cannot be read
            previous[key] = _Previous(row["status"], row["item_id"])
        pending.append((key, src.category))
    return pending, previous


def _run_pool(
    r: Run,
    pending: list[tuple[str, str]],
    previous: dict[str, _Previous],
    cfg: IngestConfig,
    summary: IngestSummary,
    tally: _Tally,
    progress: ProgressFn | None,
) -> None:
    index = PhashIndex()
    known: dict[str, _Known] = {}
    for row in r.store.query("SELECT id, phash, category, source_path FROM items ORDER BY rowid"):
        index.add(row["id"], row["phash"])
        known[row["id"]] = _Known(row["category"], row["source_path"])
    ctx = _CommitContext(index, known, previous, cfg.near_dup_distance, summary, tally)
    total = len(pending)
    done = 0
    batch: list[SourceOutcome] = []
    lq_dir = str(r.lq_dir)
    if progress:
        progress(0, total)
    args = ((path, category, lq_dir, cfg) for path, category in pending)
    for outcome in bounded_map(process_source, args, cfg.workers):
        batch.append(outcome)
        if len(batch) >= cfg.batch_size:
            _commit(r, batch, ctx)
            done += len(batch)
            batch = []
            if progress:
                progress(done, total)
    if batch:
        _commit(r, batch, ctx)
        if progress:
            progress(total, total)


@dataclass
class _Known:
    category: str
    source_path: str


@dataclass
class _CommitContext:
    index: PhashIndex
    known: dict[str, _Known]
    previous: dict[str, _Previous]
    near_dup_distance: int
    summary: IngestSummary
    tally: _Tally


def _produced_by(item: _Known, path: str) -> bool:
    return item.source_path == path or os.path.realpath(item.source_path) == os.path.realpath(path)


def _commit(r: Run, batch: list[SourceOutcome], ctx: _CommitContext) -> None:
    ts = now()
    summary = ctx.summary
    sync_filesystem(r.lq_dir)
    # Sort so that which of two identical files becomes the item does not depend on worker timing.
    batch.sort(key=lambda o: o.path)
    with r.store.transaction() as conn:
        for o in batch:
            prev = ctx.previous.get(o.path)
            message, category = o.message, o.category
            if prev is not None and prev.item_id is not None and o.ok and prev.item_id != o.item_id:
                message = f"content changed since it was ingested as item {prev.item_id}"
                ctx.tally.changed += 1
            if not o.ok:
                status, item_id = "failed", None
                summary.failed += 1
                summary.failures.append(
                    IngestFailure(path=o.path, reason=o.reason or "", message=o.message or "")
                )
            elif o.item_id in ctx.known and (
                (same := prev is not None and prev.item_id == o.item_id)
                or _produced_by(ctx.known[o.item_id], o.path)
            ):
                # Touched or copied over with the same bytes (what it produced before still stands), or
                # the item's own source reached again: already done, and the item keeps its category.
                status = prev.status if same and prev is not None else "ok"
                item_id, category = o.item_id, ctx.known[o.item_id].category
                summary.already_done += 1
                ctx.tally.check_category(o.category, category)
            elif o.item_id in ctx.known:
                status, item_id = "duplicate", o.item_id
                summary.duplicates += 1
                ctx.tally.check_category(o.category, ctx.known[o.item_id].category)
            else:
                status, item_id = "ok", o.item_id
                f = o.fields
                near = ctx.index.nearest(f["phash"])
                near_id, near_dist = near if near and near[1] <= ctx.near_dup_distance else (None, None)
                conn.execute(
                    "INSERT INTO items(id, sha256, category, source_path, source_name, source_bytes, format,"
                    " mode, width, height, lq_path, phash, near_dup_of, near_dup_distance, exif, notes,"
                    " created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (o.item_id, o.sha256, o.category, o.path, Path(o.path).name, o.size, f["format"],
                     f["mode"], f["width"], f["height"], f["lq_path"], f["phash"], near_id, near_dist,
                     dumps(f["exif"]), dumps(f["notes"]), ts),
                )  # fmt: skip
                ctx.index.add(o.item_id, f["phash"])
                ctx.known[o.item_id] = _Known(o.category, o.path)
                summary.new += 1
                summary.near_duplicates += near_id is not None
            conn.execute(
                "INSERT INTO sources(path, size, mtime_ns, status, item_id, category, reason, message, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(path) DO UPDATE SET size=excluded.size,"
                " mtime_ns=excluded.mtime_ns, status=excluded.status, item_id=excluded.item_id,"
                " category=excluded.category, reason=excluded.reason, message=excluded.message,"
                " updated_at=excluded.updated_at",
                (o.path, o.size, o.mtime_ns, status, item_id, category, o.reason, message, ts),
            )
