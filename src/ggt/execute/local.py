"""The local executor: a process pool over both cores with a bounded window of work in flight."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from ggt.store import RunStore, dumps, now

T = TypeVar("T")
R = TypeVar("R")


def bounded_map(
    fn: Callable[..., R], args: Iterable[tuple[Any, ...]], workers: int = 0, window_per_worker: int = 4
) -> Iterator[R]:
    """Run `fn(*a)` for each `a` in worker processes, yielding results as they finish (any order).

    At most `workers * window_per_worker` calls are queued at once, so memory stays flat however many
    items there are (Pool.imap and Executor.map queue every task up front).
    """
    workers = workers or os.cpu_count() or 1
    todo = iter(args)
    # forkserver: workers start from a clean single-threaded parent, safe beside Rich's refresh thread.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("forkserver")) as pool:
        in_flight: set[Future[R]] = set()
        while True:
            while len(in_flight) < workers * window_per_worker:
                nxt = next(todo, None)
                if nxt is None:
                    break
                in_flight.add(pool.submit(fn, *nxt))
            if not in_flight:
                return
            finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield fut.result()


class Outcome(BaseModel):
    """What a stage's per-item function returns; the executor records it."""

    item_id: str
    status: str = "done"  # done | failed | skipped
    result: dict[str, Any] = Field(default_factory=dict)
    reason: str | None = None
    message: str | None = None
    started_at: float = Field(default_factory=time.time)
    ended_at: float | None = None


def item_outcome(item_id: str, work: Callable[[], dict[str, Any]], paths: tuple[str, ...] = ()) -> Outcome:
    """Run one item's work in a worker; every failure becomes a failed Outcome with a stable reason.

    One bad item must never end a 100K-item run: decode errors keep their own reason, a file removed
    behind the store's back is `missing_file`, other I/O is `unreadable`, anything else `unexpected`.
    """
    from ggt.imaging import ImageDecodeError

    started = time.time()

    def failed(reason: str, message: str) -> Outcome:
        return Outcome(item_id=item_id, status="failed", reason=reason, message=message, started_at=started)

    for path in paths:
        if not Path(path).exists():
            return failed("missing_file", f"{path} is missing (removed behind the store's back?)")
    try:
        result = work()
    except ImageDecodeError as exc:
        return failed(exc.reason, exc.args[0])
    except OSError as exc:
        return failed(
            "unreadable", f"{exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".rstrip(": ")
        )
    except Exception as exc:
        return failed("unexpected", f"{type(exc).__name__}: {exc}")
    return Outcome(item_id=item_id, result=result, started_at=started, ended_at=time.time())


def record_outcomes(store: RunStore, stage: str, variant: str, outcomes: list[Outcome]) -> None:
    """Commit a batch: the latest result per item in stage_results, and every attempt in attempts."""
    ts = now()
    with store.transaction() as conn:
        for o in outcomes:
            conn.execute(
                "INSERT INTO stage_results(item_id, stage, variant, status, result, reason, message, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(item_id, stage, variant) DO UPDATE SET"
                " status=excluded.status, result=excluded.result, reason=excluded.reason,"
                " message=excluded.message, updated_at=excluded.updated_at",
                (o.item_id, stage, variant, o.status, dumps(o.result), o.reason, o.message, ts),
            )
            # Idempotent: the Ray executor commits a shard's outcomes before the stage's own loop records
            # them again, and a driver that died mid-commit commits the shard again on the rerun.
            if conn.execute(
                "SELECT 1 FROM attempts WHERE item_id=? AND stage=? AND variant=? AND started_at=?",
                (o.item_id, stage, variant, o.started_at),
            ).fetchone():
                continue
            conn.execute(
                "INSERT INTO attempts(item_id, stage, variant, started_at, ended_at, ok, error_class, message)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (o.item_id, stage, variant, o.started_at, o.ended_at or ts, int(o.status == "done"), o.reason,
                 o.message),
            )  # fmt: skip


def pending_items(store: RunStore, stage: str, variant: str = "", redo: bool = False) -> list[Any]:
    """Items without a `done` result for (stage, variant), in ingest order; all items when `redo`."""
    if redo:
        return store.query("SELECT * FROM items ORDER BY rowid")
    return store.query(
        "SELECT i.* FROM items i LEFT JOIN stage_results s ON s.item_id = i.id AND s.stage = ? AND s.variant = ?"
        " WHERE s.status IS NULL OR s.status != 'done' ORDER BY i.rowid",
        (stage, variant),
    )
