"""Batch mode (`ggt synth --batch`): vendor Batch APIs (about half price, answered within 24 hours).

Shared by the Gemini and OpenAI batch helpers (`gemini.GeminiBatch`, `openai_images.OpenAIBatch`):

- the vendor-neutral types: `BatchRequest` in, `BatchStatus` and `BatchItemResult` out;
- `BatchLedger`: the run store's record of every submitted job (`batch_jobs` table). A job's row is
  written *before* the vendor is asked to create it (state `submitting`) and completed with the vendor's
  ids right after (state `submitted`), so a run killed while waiting resumes the same jobs instead of
  paying for them again. A job is `collected` only once every answer it holds is settled in the store.
- `poll_until_done`: polling with exponential backoff that reports each state it sees.

The synth stage (`generate/stage.py`) submits, waits, and then feeds every answer through the same engine
path as a direct call (cache first, output validation, geometry, atomic write, cost).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from ggt.generate.api import GeneratedImage
from ggt.store import RunStore, now
from ggt.vlm.errors import VLMConfigError, VLMError

__all__ = [
    "BatchBackend",
    "BatchItemResult",
    "BatchLedger",
    "BatchRequest",
    "BatchStatus",
    "LedgerEntry",
    "Submission",
    "poll_until_done",
]


@dataclass(frozen=True)
class BatchRequest:
    """One item of a batch: `key` (e.g. the request key) comes back with its answer.

    `data` is the image's bytes, or a file holding them: `run_batches` spools each image to disk as it
    fills a job, so a 2 GB file job is never held in memory, only read line by line as it is written.
    """

    key: str
    data: bytes | Path
    prompt: str

    @property
    def image(self) -> bytes:
        return self.data.read_bytes() if isinstance(self.data, Path) else self.data

    def head(self, n: int = 16) -> bytes:
        """The image's first `n` bytes (its magic number), without reading a spooled one whole."""
        if isinstance(self.data, Path):
            with self.data.open("rb") as fh:
                return fh.read(n)
        return self.data[:n]

    @property
    def size(self) -> int:
        """The image's size in bytes, without reading a spooled one."""
        return self.data.stat().st_size if isinstance(self.data, Path) else len(self.data)


class BatchStatus(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description='the job\'s id (Gemini "batches/...", OpenAI "batch_..."): store it')
    state: str = Field(description='the vendor\'s job state, e.g. "JOB_STATE_RUNNING", "in_progress"')
    done: bool
    succeeded: bool
    display_name: str | None = None
    error: str | None = None
    completed: int | None = Field(default=None, description="items answered so far, where the vendor says")
    total: int | None = None


@dataclass
class BatchItemResult:
    """One item's outcome: exactly one of `image` and `error` is set."""

    key: str
    image: GeneratedImage | None = None
    error: VLMError | None = None

    @property
    def ok(self) -> bool:
        return self.image is not None


@dataclass(frozen=True)
class Submission:
    """A created job: its `name` (id) and vendor details worth keeping (e.g. the uploaded file's id)."""

    name: str
    detail: dict[str, Any] = field(default_factory=dict)


async def downloaded_lines(
    download: Callable[[Path], Awaitable[None]], prefix: str
) -> AsyncIterator[tuple[int, bytes]]:
    """(line number, line) of each non-blank line of a file that `download(path)` fetches into a temporary
    file, read one at a time and removed after: a 2 GB results file stays on disk, never in memory."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".jsonl")
    os.close(fd)
    path = Path(tmp)
    try:
        await download(path)
        with path.open("rb") as lines:
            for n, raw in enumerate(lines, 1):
                if raw.strip():
                    yield n, raw
    finally:
        path.unlink(missing_ok=True)


def check_requests(requests: Sequence[BatchRequest], max_items: int, where: dict[str, Any]) -> None:
    """What every vendor's job needs of its requests, checked before anything is sent: at least one, at
    most `max_items`, unique keys (they match answers back to items)."""
    if not requests:
        raise VLMConfigError("a batch needs at least one request", **where)
    keys = [r.key for r in requests]
    if len(set(keys)) != len(keys):
        raise VLMConfigError("batch request keys must be unique", **where)
    if len(requests) > max_items:
        raise VLMConfigError(f"a batch holds at most {max_items} requests", **where)


# Pages of 100 jobs `find_job` searches: a job whose name a stopped run never stored is among the newest.
FIND_PAGES = 10


class BatchBackend(Protocol):
    """What the synth stage needs of a vendor's Batch API helper."""

    max_items: int
    max_request_bytes: int

    def request_bytes(self, request: BatchRequest) -> int:
        """About how many bytes the request adds to a job (its share of the size limit)."""

    async def submit_job(
        self, requests: Sequence[BatchRequest], *, display_name: str | None = None
    ) -> Submission:
        """Create the job. Not blindly retried: a lost answer may still have created a (paid) job."""

    async def status(self, name: str) -> BatchStatus: ...

    async def results(self, name: str) -> list[BatchItemResult]: ...

    # Optional: `stream_results(submission, keys)`, an async iterator used instead of `results` when a
    # backend has it (answers one at a time: a 10,000-image job is never all in memory). It gets the stored
    # `Submission` (e.g. an uploaded file to delete once read) and the job's request keys in submission
    # order (so an item whose answer is missing or unreadable can be told why).
    # Optional: `find_job(display_name) -> Submission | None`, the vendor's job of that display name among
    # its most recent ones: a run stopped between creating a job and storing its name adopts it.


# ----------------------------------------------------------------------------------------------------------
# The ledger


_TABLE = """
CREATE TABLE IF NOT EXISTS batch_jobs (
    id            INTEGER PRIMARY KEY,
    stage         TEXT NOT NULL,
    variant       TEXT NOT NULL,
    backend       TEXT NOT NULL,
    model         TEXT NOT NULL,
    name          TEXT,                      -- the vendor's job id; NULL while being submitted
    display_name  TEXT NOT NULL,
    detail        TEXT NOT NULL DEFAULT '{}',  -- vendor ids besides the name (e.g. input_file_id)
    params        TEXT NOT NULL,             -- the requests' parameters (part of every request key)
    items         TEXT NOT NULL,             -- JSON [[item_id, request_key, prompt, input_sha256], ...]
    estimated_usd REAL NOT NULL DEFAULT 0,
    state         TEXT NOT NULL CHECK (state IN ('submitting', 'submitted', 'collected')),
    vendor_state  TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
)
"""
_INDEX = "CREATE INDEX IF NOT EXISTS batch_jobs_open ON batch_jobs(stage, variant, state)"


@dataclass(frozen=True)
class LedgerItem:
    item_id: str
    key: str
    prompt: str
    input_sha256: str


@dataclass
class LedgerEntry:
    id: int
    name: str | None
    display_name: str
    state: str
    params: dict[str, Any]
    items: list[LedgerItem]
    estimated_usd: float
    detail: dict[str, Any]
    vendor_state: str | None = None


class BatchLedger:
    """The `batch_jobs` table of a run store: which jobs exist, what they hold, which are collected.

    The table is created on first use (a run made by an older ggt has none), so batch mode needs no
    schema migration. All methods are called from the thread that owns the store (the event loop's).
    """

    def __init__(self, store: RunStore, stage: str, variant: str, backend: str, model: str) -> None:
        self.store, self.stage, self.variant, self.backend, self.model = store, stage, variant, backend, model
        with store.transaction() as conn:
            conn.execute(_TABLE)
            conn.execute(_INDEX)

    def begin(
        self, display_name: str, params: dict[str, Any], items: Sequence[LedgerItem], estimated_usd: float
    ) -> int:
        """Record a job about to be created (before the vendor hears of it); returns its row id."""
        rows = [[i.item_id, i.key, i.prompt, i.input_sha256] for i in items]
        with self.store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO batch_jobs(stage, variant, backend, model, display_name, params, items,"
                " estimated_usd, state, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,'submitting',?,?)",
                (self.stage, self.variant, self.backend, self.model, display_name, _dumps(params),
                 _dumps(rows), estimated_usd, now(), now()),
            )  # fmt: skip
            return int(cur.lastrowid or 0)

    def submitted(self, row_id: int, submission: Submission) -> None:
        with self.store.transaction() as conn:
            conn.execute(
                "UPDATE batch_jobs SET name=?, detail=?, state='submitted', updated_at=? WHERE id=?",
                (submission.name, _dumps(submission.detail), now(), row_id),
            )

    def abandon(self, row_id: int) -> None:
        """The vendor refused the job (a classified error): nothing was created, forget the row."""
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM batch_jobs WHERE id=? AND state='submitting'", (row_id,))

    def seen(self, name: str, vendor_state: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(
                "UPDATE batch_jobs SET vendor_state=?, updated_at=? WHERE name=? AND stage=? AND variant=?",
                (vendor_state, now(), name, self.stage, self.variant),
            )

    def collected(self, row_ids: Sequence[int]) -> None:
        if not row_ids:
            return
        with self.store.transaction() as conn:
            conn.executemany(
                "UPDATE batch_jobs SET state='collected', updated_at=? WHERE id=?",
                [(now(), i) for i in row_ids],
            )

    def open_entries(self) -> list[LedgerEntry]:
        """Jobs of this stage and variant not yet collected (`submitting` ones included), oldest first."""
        rows = self.store.query(
            "SELECT * FROM batch_jobs WHERE stage=? AND variant=? AND state != 'collected' ORDER BY id",
            (self.stage, self.variant),
        )
        return [
            LedgerEntry(
                id=r["id"],
                name=r["name"],
                display_name=r["display_name"],
                state=r["state"],
                params=json.loads(r["params"]),
                items=[LedgerItem(*i) for i in json.loads(r["items"])],
                estimated_usd=float(r["estimated_usd"]),
                detail=json.loads(r["detail"]),
                vendor_state=r["vendor_state"],
            )
            for r in rows
        ]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


# ----------------------------------------------------------------------------------------------------------
# Polling


async def poll_until_done(
    backend: BatchBackend,
    name: str,
    *,
    poll_s: float,
    max_poll_s: float,
    on_status: Callable[[BatchStatus], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    max_errors: int = 8,
) -> BatchStatus:
    """Poll `name` until it reaches a terminal state. The wait grows 1.5x per poll up to `max_poll_s`.

    A retryable failure of a poll (429, 5xx, a dropped connection) backs off and polls again, up to
    `max_errors` in a row; a permanent one (bad key, unknown job) raises.
    """
    delay = poll_s
    errors = 0
    while True:
        try:
            status = await backend.status(name)
        except VLMError as exc:
            errors += 1
            if not exc.retryable or errors >= max_errors:
                raise
            wait = max(delay, exc.retry_after_s or 0.0)
        else:
            errors = 0
            if on_status is not None:
                on_status(status)
            if status.done:
                return status
            wait = delay
        await sleep(wait)
        delay = min(max_poll_s, delay * 1.5)


def display_name(run_id: str, variant: str) -> str:
    """A job's human-readable name at the vendor: findable in its console, unique per submission."""
    return f"ggt-{variant}-{run_id}-{int(time.time() * 1000) % 10**10}"[:120]


# ----------------------------------------------------------------------------------------------------------
# The synth flow: submit what is neither cached nor already submitted, wait, feed the answers to the engine


@dataclass
class BatchRunStats:
    submitted_jobs: int = 0
    submitted_items: int = 0
    resumed_jobs: int = 0
    budget_exhausted: bool = False
    notes: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)  # the vendor jobs collected by this run


async def run_batches(
    *,
    backend: BatchBackend,
    ledger: BatchLedger,
    engine: Any,
    jobs: Any,
    pending_ids: set[str],
    params: dict[str, Any],
    finish: Callable[[Any, GeneratedImage], Awaitable[Any]],
    total: int,
    batch_size: int,
    poll_s: float,
    max_poll_s: float,
    display_prefix: str,
    cap_usd: float | None = None,
    committed_usd: float = 0.0,
    estimate_usd: float = 0.0,
    on_status: Callable[[str], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tuple[Any, BatchRunStats]:
    """Batch mode for one stage run; returns the engine's `RunSummary` and what was submitted.

    `jobs` yields engine `Job`s with their input bytes (built lazily). `finish(job, image)` turns a batch
    answer into the engine's `Response` exactly as a direct call would (usage, output validation), raising
    for an unusable answer. The engine (uncapped: the money was committed at submission) then caches,
    records costs and post-processes each answer; `cap_usd` is enforced here, before submitting, from
    `committed_usd` (already spent) plus the estimates of the jobs still open.
    """
    from ggt.engine import Job, PermanentError, Request

    stats = BatchRunStats()
    say = on_status or (lambda _text: None)
    entries: list[LedgerEntry] = []
    unknown: set[str] = set()  # items of a job that may exist but could not be looked up: not resubmitted
    for entry in ledger.open_entries():
        if entry.name is None:
            # Killed between recording the job and hearing back from the vendor: it may or may not exist.
            # The vendor's list says which, by the display name recorded before the job was created.
            find = getattr(backend, "find_job", None)
            try:
                found = await find(entry.display_name) if find is not None else None
            except VLMError as exc:
                unknown.update(i.item_id for i in entry.items)
                stats.notes.append(
                    f"could not check whether batch {entry.display_name!r} of an earlier run exists ({exc}); its "
                    f"{len(entry.items)} items are left pending rather than paid for twice: rerun"
                )
                continue
            if found is None:
                ledger.abandon(entry.id)
                stats.notes.append(
                    f"{len(entry.items)} items were being submitted when an earlier run stopped, and the vendor "
                    f"has no job named {entry.display_name!r}; they are submitted again"
                    + (
                        ""
                        if find is not None
                        else " (check its console: if that job exists, it can be cancelled)"
                    )
                )
                continue
            ledger.submitted(entry.id, found)
            entry.name, entry.detail, entry.state = found.name, found.detail, "submitted"
            stats.notes.append(f"adopted batch {found.name} ({entry.display_name}), created before a stop")
        if entry.params != params:
            stats.notes.append(
                f"batch {entry.name} was submitted with other settings; it is left as is (not collected)"
            )
        else:
            entries.append(entry)
    stats.resumed_jobs = len(entries)
    committed = committed_usd + sum(e.estimated_usd for e in entries)
    in_flight = {item.item_id for e in entries for item in e.items} | unknown
    cached: list[Any] = []
    chunk: dict[str, BatchRequest] = {}
    chunk_items: list[LedgerItem] = []
    chunk_bytes = 0
    stop = False

    def light(job: Any, key_params: dict[str, Any]) -> Any:
        # What the engine needs to find the answer again: the request's key fields, not its image bytes.
        req = job.request
        return Job(job.item_id, job.variant, Request(
            backend=req.backend, model=req.model, prompt=req.prompt, input_sha256=req.input_digest(),
            params=key_params,
        ))  # fmt: skip

    async def flush() -> None:
        nonlocal chunk, chunk_items, chunk_bytes
        spooled = list(chunk.values())
        try:
            await submit(spooled, chunk_items)
        finally:  # the spool holds one job at a time, however many a run submits
            chunk, chunk_items, chunk_bytes = {}, [], 0
            for request in spooled:
                if isinstance(request.data, Path):
                    request.data.unlink(missing_ok=True)

    async def submit(requests: list[BatchRequest], items: list[LedgerItem]) -> None:
        nonlocal committed, stop
        if cap_usd is not None and estimate_usd > 0:
            fit = max(0, int((cap_usd - committed) / estimate_usd + 1e-9))
            if fit < len(requests):
                stats.budget_exhausted, stop = True, True
                requests = requests[:fit]
                keep = {r.key for r in requests}
                items = [i for i in items if i.key in keep]
        if not requests:
            return
        cost = estimate_usd * len(requests)
        name = f"{display_prefix}-{stats.submitted_jobs + stats.resumed_jobs + 1}"
        row = ledger.begin(name, params, items, cost)
        say(f"submitting batch {name} ({len(requests)} requests)")
        try:
            submission = await backend.submit_job(requests, display_name=name)
        except VLMError as exc:
            ledger.abandon(row)
            if not exc.retryable:
                raise
            stats.notes.append(f"submitting a batch failed ({exc}); {len(items)} items left pending: rerun")
            stop = True
            return
        ledger.submitted(row, submission)
        committed += cost
        stats.submitted_jobs += 1
        stats.submitted_items += len(requests)
        entries.append(
            LedgerEntry(row, submission.name, name, "submitted", params, items, cost, submission.detail)
        )

    # Each image of the job being filled waits on disk, not in memory (a file job holds up to ~2 GB).
    with tempfile.TemporaryDirectory(prefix="ggt-batch-spool-") as spool_dir:
        spool = Path(spool_dir)
        async for job in jobs:
            if stop:
                break
            if job.item_id in in_flight:
                continue
            key = job.request.request_key()
            if engine.cache.path(key).exists():  # the engine checks the entry itself before using it
                cached.append(light(job, params))
                continue
            item = LedgerItem(job.item_id, key, job.request.prompt, job.request.input_digest() or "")
            if key not in chunk:
                spooled = spool / key
                await asyncio.to_thread(spooled.write_bytes, job.request.input_bytes or b"")
                request = BatchRequest(key, spooled, job.request.prompt)
                size = backend.request_bytes(request)
                if chunk and (len(chunk) >= batch_size or chunk_bytes + size > backend.max_request_bytes):
                    await flush()
                    if stop:
                        break
                chunk[key] = request
                chunk_bytes += size
            chunk_items.append(item)
        if chunk and not stop:
            await flush()

    # Answers wait here only between being read and being settled by the engine, which pulls jobs a
    # window at a time: a job's answers are streamed, never all held (10,000 images of ~2 MB each).
    answers: dict[str, BatchItemResult | VLMError | None] = {}
    waiting: dict[str, int] = {}  # key -> items still to settle with that answer
    finished: list[int] = []

    def settle(
        by_key: dict[str, list[LedgerItem]],
        params: dict[str, Any],
        key: str,
        answer: BatchItemResult | VLMError | None,
    ) -> list[Any]:
        """The engine jobs of the items waiting for `key`, once its answer is kept for `call`."""
        items = by_key.pop(key, [])
        if items:
            answers[key], waiting[key] = answer, len(items)
        return [Job(item.item_id, ledger.variant, Request(
            backend=ledger.backend, model=ledger.model, prompt=item.prompt,
            input_sha256=item.input_sha256, params=params,
        )) for item in items]  # fmt: skip

    async def collect() -> Any:
        for job in cached:
            yield job
        seen: set[str] = set()
        for n, entry in enumerate(entries, 1):
            assert entry.name is not None

            def shown(s: BatchStatus, n: int = n) -> None:
                count = f", {s.completed}/{s.total} answered" if s.total else ""
                say(f"batch {n}/{len(entries)} {s.name}: {s.state}{count}")
                ledger.seen(s.name, s.state)

            by_key: dict[str, list[LedgerItem]] = {}
            for item in entry.items:
                if item.item_id in pending_ids and item.item_id not in seen:
                    seen.add(item.item_id)
                    by_key.setdefault(item.key, []).append(item)

            try:
                await poll_until_done(
                    backend, entry.name, poll_s=poll_s, max_poll_s=max_poll_s, on_status=shown, sleep=sleep
                )
                keys = list(dict.fromkeys(item.key for item in entry.items))  # submission order
                stream = getattr(backend, "stream_results", None)  # optional: one answer at a time
                if stream is not None:
                    results: Any = stream(Submission(entry.name, entry.detail), keys)
                else:
                    results = _aiter_list(await backend.results(entry.name))
                async for res in results:
                    for job in settle(by_key, entry.params, res.key, res):
                        yield job
            except VLMError as exc:
                for key in list(by_key):
                    for job in settle(by_key, entry.params, key, exc):
                        yield job
            finished.append(entry.id)
            stats.jobs.append(entry.name)
            for key in list(by_key):  # not in the answers at all: `call` says so
                for job in settle(by_key, entry.params, key, None):
                    yield job

    async def call(job: Any) -> Any:
        key = job.request.request_key()
        answer = answers.get(key)
        waiting[key] = waiting.get(key, 1) - 1
        if waiting[key] <= 0:
            answers.pop(key, None)
            waiting.pop(key, None)
        if isinstance(answer, BatchItemResult) and answer.image is not None:
            return await finish(job, answer.image)
        error = answer.error if isinstance(answer, BatchItemResult) else answer
        if error is None:
            raise PermanentError("the batch returned no answer for this item", reason="batch_failed")
        # Failed inside the batch: recorded as failed with its reason (a rerun submits it again), never
        # retried here, where a retry would only read the same answer.
        failure = PermanentError(str(error), reason=error.reason)
        failure.usage = getattr(error, "usage", None)  # type: ignore[attr-defined]
        raise failure

    summary = await engine.run(collect(), call, total=total)
    ledger.collected(finished)
    return summary, stats


async def _aiter_list(items: Sequence[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item
