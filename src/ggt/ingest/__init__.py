"""`ggt ingest`: real LQ photos -> items of a run, every unusable file recorded with its reason."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

from ggt.config import ConfigError, normalize_category
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
    """Ingest files and folders into `run` (created if needed). Idempotent and resumable."""
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
            run=str(run), found=len(found.sources), ignored=found.ignored, notes=found.notes
        )
        _record_discovery_failures(r, found, summary)
        pending = _pending_sources(r, found, summary)
        _run_pool(r, pending, cfg, summary, progress)
    return summary


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


def _pending_sources(r: Run, found: Discovery, summary: IngestSummary) -> list[tuple[str, str]]:
    """Sources not yet settled: new, changed since (size/mtime), or failed before (retried)."""
    settled = {
        row["path"]: (row["size"], row["mtime_ns"])
        for row in r.store.query("SELECT path, size, mtime_ns FROM sources WHERE status != 'failed'")
    }
    pending = []
    for src in found.sources:
        key = str(src.path)
        if key in settled:
            try:
                st = os.stat(key)
                if settled[key] == (st.st_size, st.st_mtime_ns):
                    summary.already_done += 1
                    continue
            except OSError:
                pass  # let the worker record why it cannot be read
        pending.append((key, src.category))
    return pending


def _run_pool(
    r: Run,
    pending: list[tuple[str, str]],
    cfg,
    summary: IngestSummary,
    progress: ProgressFn | None,
) -> None:
    index = PhashIndex()
    for row in r.store.query("SELECT id, phash FROM items ORDER BY rowid"):
        index.add(row["id"], row["phash"])
    known_ids = {row["id"] for row in r.store.query("SELECT id FROM items")}
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
            _commit(r, batch, index, known_ids, cfg.near_dup_distance, summary)
            done += len(batch)
            batch = []
            if progress:
                progress(done, total)
    if batch:
        _commit(r, batch, index, known_ids, cfg.near_dup_distance, summary)
        if progress:
            progress(total, total)


def _commit(
    r: Run,
    batch: list[SourceOutcome],
    index: PhashIndex,
    known_ids: set[str],
    near_dup_distance: int,
    summary: IngestSummary,
) -> None:
    ts = now()
    sync_filesystem(r.lq_dir)
    # Sort so that which of two identical files becomes the item does not depend on worker timing.
    batch.sort(key=lambda o: o.path)
    with r.store.transaction() as conn:
        for o in batch:
            if not o.ok:
                status, item_id = "failed", None
                summary.failed += 1
                summary.failures.append(
                    IngestFailure(path=o.path, reason=o.reason or "", message=o.message or "")
                )
            elif o.item_id in known_ids:
                status, item_id = "duplicate", o.item_id
                summary.duplicates += 1
            else:
                status, item_id = "ok", o.item_id
                f = o.fields
                near = index.nearest(f["phash"])
                near_id, near_dist = near if near and near[1] <= near_dup_distance else (None, None)
                conn.execute(
                    "INSERT INTO items(id, sha256, category, source_path, source_name, source_bytes, format,"
                    " mode, width, height, lq_path, phash, near_dup_of, near_dup_distance, exif, notes,"
                    " created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (o.item_id, o.sha256, o.category, o.path, Path(o.path).name, o.size, f["format"],
                     f["mode"], f["width"], f["height"], f["lq_path"], f["phash"], near_id, near_dist,
                     dumps(f["exif"]), dumps(f["notes"]), ts),
                )  # fmt: skip
                index.add(o.item_id, f["phash"])
                known_ids.add(o.item_id)
                summary.new += 1
                summary.near_duplicates += near_id is not None
            conn.execute(
                "INSERT INTO sources(path, size, mtime_ns, status, item_id, category, reason, message, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(path) DO UPDATE SET size=excluded.size,"
                " mtime_ns=excluded.mtime_ns, status=excluded.status, item_id=excluded.item_id,"
                " category=excluded.category, reason=excluded.reason, message=excluded.message,"
                " updated_at=excluded.updated_at",
                (o.path, o.size, o.mtime_ns, status, item_id, o.category, o.reason, o.message, ts),
            )
