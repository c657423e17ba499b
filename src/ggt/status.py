"""`ggt status`: what a run holds, per category and per stage, and every failure with its reason."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from ggt.store import Run


class ErrorEntry(BaseModel):
    stage: str
    path: str
    item_id: str | None = None
    reason: str
    message: str


class RunStatus(BaseModel):
    run: str
    items: int
    categories: dict[str, int]
    sources: dict[str, int] = Field(description="files ingest looked at, by outcome: ok, duplicate, failed")
    near_duplicates: int
    stages: dict[str, dict[str, int]] = Field(description="stage[:variant] -> status -> count")
    errors: list[ErrorEntry] | None = None


def run_status(run: Path, errors: bool = False) -> RunStatus:
    """Counts per category and per stage/status; with `errors`, every failed item with path and reason."""
    with Run.open(run) as r:
        q = r.store.query
        categories = {
            row[0]: row[1] for row in q("SELECT category, COUNT(*) FROM items GROUP BY category ORDER BY 1")
        }
        sources = {
            row[0]: row[1] for row in q("SELECT status, COUNT(*) FROM sources GROUP BY status ORDER BY 1")
        }
        stages: dict[str, dict[str, int]] = {}
        for row in q(
            "SELECT stage, variant, status, COUNT(*) FROM stage_results GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ):
            key = f"{row[0]}:{row[1]}" if row[1] else row[0]
            stages.setdefault(key, {})[row[2]] = row[3]
        status = RunStatus(
            run=str(run),
            items=r.store.scalar("SELECT COUNT(*) FROM items"),
            categories=categories,
            sources=sources,
            near_duplicates=r.store.scalar("SELECT COUNT(*) FROM items WHERE near_dup_of IS NOT NULL"),
            stages=stages,
        )
        if errors:
            status.errors = [
                ErrorEntry(
                    stage="ingest", path=row["path"], reason=row["reason"] or "", message=row["message"] or ""
                )
                for row in q(
                    "SELECT path, reason, message FROM sources WHERE status = 'failed' ORDER BY path"
                )
            ]
            status.errors += [
                ErrorEntry(
                    stage=f"{row['stage']}:{row['variant']}" if row["variant"] else row["stage"],
                    path=row["source_path"],
                    item_id=row["item_id"],
                    reason=row["reason"] or "",
                    message=row["message"] or "",
                )
                for row in q(
                    "SELECT s.stage, s.variant, s.item_id, s.reason, s.message, i.source_path FROM stage_results s"
                    " JOIN items i ON i.id = s.item_id WHERE s.status = 'failed' ORDER BY s.stage, i.source_path"
                )
            ]
    return status
