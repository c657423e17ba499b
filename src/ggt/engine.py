"""The async request engine: drives paid, backend-agnostic API calls over many items.

One `Engine.run` takes jobs `(item_id, variant, Request)` and an async `call(job) -> Response`, and for each
job either finds the answer in the content-addressed cache (no call, no cost) or calls the backend under a
per-backend concurrency limit, a requests-per-minute token bucket and a money budget, retrying transient
failures with jittered exponential backoff. Every attempt, every paid call and every final outcome lands in
the run store, so a rerun, a resume after a crash or a second run sharing the cache never pays twice.

Ordering that the guarantees rest on:
- the response is written to the cache (atomically) before any row mentions it, so a crash after the API
  was paid loses at most the bookkeeping, never the answer;
- the budget reserves an attempt's estimated price before it starts, so concurrent calls cannot together
  overshoot the cap (unless a call costs more than its estimate);
- all store writes happen on the event-loop thread (one SQLite connection); only file I/O and the caller's
  post-processing run in threads or the caller's executor.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import time
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ggt.fsutil import write_bytes_atomic
from ggt.store import RunStore, now

__all__ = [
    "Budget",
    "BudgetError",
    "Engine",
    "EngineError",
    "Failure",
    "Job",
    "Limits",
    "PermanentError",
    "Pricing",
    "Request",
    "RequestCache",
    "Response",
    "RetryPolicy",
    "RetryableError",
    "RunSummary",
    "TokenBucket",
    "classify_error",
]

# Bumped when the canonical form of a request changes, so old cache entries are never mistaken for new ones.
KEY_VERSION = 1
_MAX_MESSAGE = 300

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
ProgressCallback = Callable[[int, int, int, float], None]


def _one_line(text: str, limit: int = _MAX_MESSAGE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dumps(value: Any) -> str:
    # Stored, not hashed: a backend's odd value (a datetime in usage, an enum in meta) is written as text
    # rather than aborting a paid run at the bookkeeping step.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)


def _canonical_json(value: Any) -> str:
    # allow_nan=False: NaN has no canonical JSON form, and a key must be reproducible byte for byte.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# ----------------------------------------------------------------------------------------------------------
# Requests and responses
# ----------------------------------------------------------------------------------------------------------


class Request(BaseModel):
    """One paid request. Give `input_bytes` (hashed here) or only `input_sha256` (when the caller hashed it).

    The key covers what changes the answer: backend, model, prompt, the input's SHA-256 and the parameters.
    The input bytes themselves are never part of the key or the repr, only their hash.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: str = Field(min_length=1)
    model: str = Field(min_length=1)
    prompt: str
    input_bytes: bytes | None = Field(default=None, repr=False, strict=True)
    input_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _params_are_canonical_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            _canonical_json(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"params must be plain JSON (no NaN, no objects): {exc}") from None
        return value

    @model_validator(mode="after")
    def _hash_input(self) -> Request:
        if self.input_bytes is not None:
            digest = hashlib.sha256(self.input_bytes).hexdigest()
            if self.input_sha256 is not None and self.input_sha256 != digest:
                raise ValueError("input_sha256 does not match input_bytes")
            # The model is frozen; the hash is derived data, so setting it once here keeps it consistent.
            object.__setattr__(self, "input_sha256", digest)
        return self

    def canonical(self) -> str:
        """The canonical JSON the key hashes: stable across processes, Python versions and dict order."""
        return _canonical_json(
            {
                "v": KEY_VERSION,
                "backend": self.backend,
                "model": self.model,
                "prompt": self.prompt,
                "input_sha256": self.input_digest(),
                "params": self.params,
            }
        )

    def input_digest(self) -> str | None:
        """SHA-256 of the input. Validation set it from the bytes, and `model_copy` validates, so it always
        describes the bytes that get sent (hashing a 1.5 MB PNG again per use cost ~1 ms on the loop)."""
        return self.input_sha256

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Request:
        """A copy; with `update`, a validated one (pydantic's own skips validation, which would leave
        `input_sha256` describing the old bytes)."""
        if not update:
            return super().model_copy(deep=deep)
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        if "input_bytes" in update and "input_sha256" not in update:
            fields["input_sha256"] = None
        return type(self).model_validate({**fields, **update})

    def request_key(self) -> str:
        return hashlib.sha256(self.canonical().encode("utf-8")).hexdigest()


class Job(NamedTuple):
    """One unit of work: the request to make for `item_id` under `variant` (a generator, a judge...)."""

    item_id: str
    variant: str
    request: Request


@dataclass(frozen=True)
class Response:
    """What a backend call returns. `cost_usd`, when the vendor reports it, wins over the price table."""

    data: bytes
    usage: Mapping[str, Any] = field(default_factory=dict)
    cost_usd: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------

RETRYABLE_REASONS = ("rate_limited", "server_error", "timeout", "connection")
PERMANENT_REASONS = ("auth", "invalid_request", "safety_block", "bad_output", "unexpected")


class EngineError(Exception):
    """A failed call. `reason` is a short stable code for the store; the message is one line."""

    reason: str = "unexpected"
    retryable: bool = False

    def __init__(
        self, message: str, *, reason: str | None = None, retry_after_s: float | None = None
    ) -> None:
        if reason is not None:
            self.reason = reason
        self.retry_after_s = retry_after_s
        super().__init__(_one_line(message))


class RetryableError(EngineError):
    """The same request may well succeed later (rate limit, 5xx, timeout, dropped connection)."""

    reason = "server_error"
    retryable = True


class PermanentError(EngineError):
    """Asking again fails the same way or pays for nothing (bad key, bad request, safety block, bad output)."""

    reason = "invalid_request"
    retryable = False


class BudgetError(ValueError):
    """The budget cannot price a request; a capped run refuses to guess rather than overspend."""


@dataclass(frozen=True)
class Failure:
    retryable: bool
    reason: str
    message: str
    retry_after_s: float | None = None


def classify_error(exc: BaseException) -> Failure:
    """Our errors, or any error with a boolean `retryable` (the VLM errors), keep their verdict and reason.

    Anything else is a bug or a case no backend classified, so it is permanent: retrying an unknown failure
    against a paid API is how budgets evaporate.
    """
    name = type(exc).__name__
    text = str(exc)
    message = _one_line(f"{name}: {text}" if text else name)
    retryable = getattr(exc, "retryable", None)
    if not isinstance(retryable, bool):
        return Failure(retryable=False, reason="unexpected", message=message)
    reason = getattr(exc, "reason", None)
    if not isinstance(reason, str) or not reason:
        reason = "server_error" if retryable else "unexpected"
    retry_after = getattr(exc, "retry_after_s", None)
    if (
        isinstance(retry_after, bool)
        or not isinstance(retry_after, int | float)
        or not math.isfinite(retry_after)
    ):
        retry_after = None
    elif retry_after < 0:
        retry_after = 0.0
    return Failure(retryable=retryable, reason=reason, message=message, retry_after_s=retry_after)


def _usage_of(obj: Any) -> dict[str, Any]:
    """Usage as a dict, from a mapping or an object with token attributes (the VLM `Usage` model)."""
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return dict(obj)
    return {
        k: getattr(obj, k)
        for k in ("input_tokens", "output_tokens", "images")
        if getattr(obj, k, None) is not None
    }


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ----------------------------------------------------------------------------------------------------------
# Retry policy, rate limit, budget
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: the n-th retry waits uniform(0, min(max_delay_s, base * 2**(n-1))).

    Full jitter spreads a thundering herd of rate-limited calls instead of retrying them in lockstep. A
    server's `retry_after_s` is a floor (waiting less just earns another 429), clamped to
    `max_retry_after_s` so a bogus header cannot park a run for hours.
    """

    max_attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    max_retry_after_s: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay_s < 0 or self.max_delay_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("delays must be non-negative")

    def delay(self, failed_attempts: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait after `failed_attempts` (>= 1) failures before the next attempt."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** max(0, failed_attempts - 1))
        wait = rng.uniform(0.0, ceiling)
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.max_retry_after_s))
        return wait


class TokenBucket:
    """Requests-per-minute limiter: `burst` tokens, refilled continuously; `acquire()` takes one.

    Waiters are served in arrival order (one lock), so a steady stream never starves a request.
    """

    def __init__(
        self,
        requests_per_minute: float,
        burst: float = 1.0,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate_per_s = requests_per_minute / 60.0
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        t = self._clock()
        self._tokens = min(self.burst, self._tokens + (t - self._last) * self.rate_per_s)
        self._last = t

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                self._refill()
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await self._sleep((1.0 - self._tokens) / self.rate_per_s)


@dataclass(frozen=True)
class Limits:
    """Per-backend limits: at most `concurrency` calls in flight and `requests_per_minute` started."""

    concurrency: int = 8
    requests_per_minute: float | None = None
    burst: float = 1.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")


@dataclass(frozen=True)
class Pricing:
    """A backend's prices. Token prices are per token (the config layer converts from per-million).

    The estimate assumes one output image and the `est_*_tokens` counts; make them generous, since the cap
    holds exactly only while no call costs more than its estimate.
    """

    per_image_usd: float = 0.0
    per_input_token_usd: float = 0.0
    per_output_token_usd: float = 0.0
    est_input_tokens: int = 0
    est_output_tokens: int = 0

    def estimate(self) -> float:
        return (
            self.per_image_usd
            + self.per_input_token_usd * self.est_input_tokens
            + self.per_output_token_usd * self.est_output_tokens
        )

    def cost(self, usage: Mapping[str, Any], images: int) -> float:
        n_images = _int_or_none(usage.get("images"))
        return (
            self.per_image_usd * (images if n_images is None else n_images)
            + self.per_input_token_usd * (_int_or_none(usage.get("input_tokens")) or 0)
            + self.per_output_token_usd * (_int_or_none(usage.get("output_tokens")) or 0)
        )


class Reservation:
    __slots__ = ("amount", "settled")

    def __init__(self, amount: float) -> None:
        self.amount = amount
        self.settled = False


class Budget:
    """Money guard. `reserve(estimate)` before an attempt, `settle(reservation, actual)` after it.

    A reservation that does not fit waits while other reservations are live (they may settle below their
    estimate and make room); once nothing is in flight and it still does not fit, the budget is exhausted and
    every later `reserve` refuses at once, so the run winds down instead of trickling.

    `pricing` is one `Pricing` for everything, or a mapping keyed by "backend/model" or "backend" ("*" as a
    fallback). With a cap set, a request with no price is an error, never a free call.
    """

    _EPS = 1e-9

    def __init__(
        self,
        cap_usd: float | None = None,
        pricing: Pricing | Mapping[str, Pricing] | None = None,
        *,
        spent_usd: float = 0.0,
    ) -> None:
        if cap_usd is not None and cap_usd < 0:
            raise ValueError("cap_usd must be non-negative")
        self.cap_usd = cap_usd
        self._pricing = pricing
        self.spent_usd = float(spent_usd)
        self.reserved_usd = 0.0
        self._live = 0
        self._exhausted = False
        self._changed: asyncio.Event | None = None

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    def pricing_for(self, request: Request) -> Pricing:
        if isinstance(self._pricing, Pricing):
            return self._pricing
        table = self._pricing or {}
        for name in (f"{request.backend}/{request.model}", request.backend, "*"):
            if name in table:
                return table[name]
        if self.cap_usd is not None:
            raise BudgetError(f"no price for {request.backend}/{request.model}; a capped budget needs one")
        return Pricing()

    def estimate(self, request: Request) -> float:
        return self.pricing_for(request).estimate()

    def actual(
        self, request: Request, usage: Mapping[str, Any], reported_usd: float | None, *, images: int
    ) -> float:
        if reported_usd is not None and math.isfinite(reported_usd) and reported_usd >= 0:
            return float(reported_usd)
        return self.pricing_for(request).cost(usage, images)

    def _fits(self, amount: float) -> bool:
        return self.cap_usd is None or self.spent_usd + self.reserved_usd + amount <= self.cap_usd + self._EPS

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def reserve(self, amount: float) -> Reservation | None:
        while True:
            if self._exhausted:
                return None
            if self._fits(amount):
                self.reserved_usd += amount
                self._live += 1
                return Reservation(amount)
            if self._live == 0:
                self._exhausted = True
                self._notify()
                return None
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()

    def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Replace the reservation by what the attempt cost (0 for an unbilled failure). Idempotent."""
        if reservation.settled:
            return
        reservation.settled = True
        self._live -= 1
        # Recomputed from zero when nothing is live, so float drift cannot leave phantom reservations.
        self.reserved_usd = 0.0 if self._live == 0 else max(0.0, self.reserved_usd - reservation.amount)
        self.spent_usd += actual_usd
        self._notify()


# ----------------------------------------------------------------------------------------------------------
# The response cache
# ----------------------------------------------------------------------------------------------------------


class RequestCache:
    """Content-addressed responses: `root/ab/abcdef...` (the bytes) and `root/ab/abcdef....json` (meta).

    The files are the truth, the `cache_index` table a catalogue of them: a second run (or a second store)
    pointing at the same folder finds every response even if its own index has never heard of it. The meta
    file is written before the data file, so a data file present means a complete entry; its SHA-256 is
    checked on read, and a mismatch is a miss (the next put overwrites it).
    """

    def __init__(self, root: Path, store: RunStore | None = None, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.store = store
        self.fsync = fsync

    def relpath(self, key: str) -> str:
        if len(key) < 3 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a request key: {key!r}")
        return f"{key[:2]}/{key}"

    def path(self, key: str) -> Path:
        return self.root / self.relpath(key)

    # -- file side: thread-safe, no store access ---------------------------------------------------------

    # The file I/O of an entry, relative to `root`; a cache on other storage (fsspec) overrides these two.
    def _read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def _write(self, rel: str, data: bytes) -> None:
        write_bytes_atomic(self.root / rel, data, fsync=self.fsync)

    def load(self, key: str) -> tuple[bytes, dict[str, Any]] | None:
        """The cached bytes and meta, or None when absent or damaged. Touches files only."""
        rel = self.relpath(key)
        try:
            data = self._read(rel)
            meta = json.loads(self._read(rel + ".json").decode("utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("sha256") != hashlib.sha256(data).hexdigest():
            return None
        return data, meta

    def write_files(self, key: str, data: bytes, meta: Mapping[str, Any]) -> dict[str, Any]:
        """Write the entry atomically (meta, then data); returns the meta as stored. Touches files only."""
        full = {
            **meta,
            "key": key,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "created_at": now(),
        }
        rel = self.relpath(key)
        self._write(rel + ".json", _dumps(full).encode("utf-8"))
        self._write(rel, data)
        return full

    # -- store side: call from the thread that owns the store ----------------------------------------------

    def index(self, key: str, meta: Mapping[str, Any], conn: Any = None) -> None:
        """Record an entry in `cache_index` (inside `conn`'s transaction when given)."""
        if self.store is None:
            return
        row = (
            key,
            str(meta.get("backend") or "unknown"),
            meta.get("model"),
            self.relpath(key),
            int(meta.get("size") or 0),
            _dumps({k: v for k, v in meta.items() if k not in ("key", "backend", "model", "size")}),
            float(meta.get("created_at") or now()),
        )
        sql = (
            "INSERT OR REPLACE INTO cache_index(key, backend, model, path, size, meta, created_at)"
            " VALUES (?,?,?,?,?,?,?)"
        )
        if conn is not None:
            conn.execute(sql, row)
        else:
            with self.store.transaction() as c:
                c.execute(sql, row)

    def is_indexed(self, key: str) -> bool:
        return (
            self.store is not None and self.store.scalar("SELECT 1 FROM cache_index WHERE key=?", (key,)) == 1
        )

    # -- the simple synchronous API ------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        entry = self.load(key)
        if entry is None:
            return None
        if self.store is not None and not self.is_indexed(key):
            # Found through a shared folder: catalogue it so this run's store knows what it holds.
            self.index(key, entry[1])
        return entry[0]

    def put(self, key: str, data: bytes, meta: Mapping[str, Any]) -> Path:
        """Files first, then the index row: a row never points at a missing or partial file."""
        full = self.write_files(key, data, meta)
        self.index(key, full)
        return self.path(key)


# ----------------------------------------------------------------------------------------------------------
# The engine
# ----------------------------------------------------------------------------------------------------------


@dataclass
class RunSummary:
    """What one `Engine.run` did. `pending` jobs were never settled (budget exhausted) and may run later."""

    total: int = 0
    done: int = 0
    failed: int = 0
    pending: int = 0
    skipped: int = 0  # already settled in the store before this run (counted in done/failed too)
    cache_hits: int = 0
    calls: int = 0  # attempts that reached the backend
    retries: int = 0
    spent_usd: float = 0.0  # by this run (a budget may start with earlier spending)
    budget_exhausted: bool = False
    failures: Counter[str] = field(default_factory=Counter)


class _Outcome(NamedTuple):
    status: str  # "done", "failed" or "pending"
    data: bytes | None = None
    failure: Failure | None = None
    attempts: int = 0


class _KeyLocks:
    """One lock per request key, dropped when unused: two jobs with the same request make one call."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class _BackendGate:
    def __init__(self, limits: Limits, clock: Clock, sleep: Sleep) -> None:
        self.semaphore = asyncio.Semaphore(limits.concurrency)
        self.bucket = (
            TokenBucket(limits.requests_per_minute, limits.burst, clock=clock, sleep=sleep)
            if limits.requests_per_minute
            else None
        )


Call = Callable[[Job], Awaitable[Response]]
OnResult = Callable[[Job, bytes], Mapping[str, Any]]


class Engine:
    """Runs one stage's jobs. See the module docstring for the guarantees; `run` for the flow.

    `on_result(job, data) -> dict` (optional) turns a response into the stage's result (decode, check,
    write the HQ file...); it runs in `executor` (None: the loop's default thread pool), off the event loop.
    With a process pool it and the job must be picklable. Its dict is stored in `stage_results.result`.
    """

    def __init__(
        self,
        store: RunStore,
        cache: RequestCache,
        stage: str,
        *,
        limits: Mapping[str, Limits] | None = None,
        default_limits: Limits | None = None,
        retry: RetryPolicy | None = None,
        budget: Budget | None = None,
        on_result: OnResult | None = None,
        executor: Executor | None = None,
        progress: ProgressCallback | None = None,
        call_timeout_s: float | None = None,
        retry_failed: bool = True,
        redo: bool = False,
        max_queued: int = 256,
        rng: random.Random | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        limiter: Callable[[str, Limits], Any] | None = None,
    ) -> None:
        if not stage:
            raise ValueError("stage must be named")
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        self.store = store
        self.cache = cache
        self.stage = stage
        self.limits = dict(limits or {})
        self.default_limits = default_limits or Limits()
        self.retry = retry or RetryPolicy()
        self.budget = budget or Budget()
        self.on_result = on_result
        self.executor = executor
        self.progress = progress
        self.call_timeout_s = call_timeout_s
        self.redo = redo
        self.retry_failed = retry_failed
        self.max_queued = max_queued
        self.rng = rng or random.Random()
        self.clock = clock
        self.sleep = sleep
        # `limiter(backend, limits)` -> a gate (`.semaphore`, `.bucket`) shared beyond this process, e.g. the
        # Ray executor's cluster-wide limiter; None: this engine's own in-process gate.
        self.limiter = limiter
        self._gates: dict[str, _BackendGate] = {}
        self._summary = RunSummary()
        self._key_locks = _KeyLocks()
        self._total_known: int | None = None
        self._spent_before = 0.0

    # -- public --------------------------------------------------------------------------------------------

    async def run(
        self, jobs: Iterable[Job] | AsyncIterable[Job], call: Call, *, total: int | None = None
    ) -> RunSummary:
        """Settle every job (done or failed) unless the budget runs out; then the rest stay pending.

        Jobs are consumed lazily (at most `max_queued` in memory), so a generator can load inputs on demand.
        Store errors and cancellation abort the run; every other failure is recorded against its item.
        """
        in_memory = hasattr(jobs, "__len__")
        if total is None and in_memory:
            total = len(jobs)  # type: ignore[arg-type]
        self._total_known = total
        self._summary = summary = RunSummary(total=total or 0)
        self._spent_before = self.budget.spent_usd
        self._gates = {}
        # `redo` re-settles every job; cached responses still spare the calls.
        settled = {} if self.redo else self._settled_items()
        window = asyncio.Semaphore(self.max_queued)
        seen = 0
        try:
            async with asyncio.TaskGroup() as group:
                async for raw in _aiter(jobs):
                    job = raw if isinstance(raw, Job) else Job(*raw)
                    seen += 1
                    if self._total_known is None:
                        summary.total = seen
                    previous = settled.get((job.item_id, job.variant))
                    if previous is not None:
                        summary.skipped += 1
                        if previous[0] == "done":
                            summary.done += 1
                        else:
                            summary.failed += 1
                            summary.failures[previous[1] or "unknown"] += 1
                        self._report()
                        continue
                    if not self.budget.exhausted:
                        await window.acquire()
                        if not self.budget.exhausted:
                            task = group.create_task(self._process(job, call))
                            task.add_done_callback(lambda _t: window.release())
                            continue
                        window.release()
                    # Out of money. An in-memory list is walked to the end so the counts stay exact; a lazy
                    # source is left alone, since each job it yields may load an image for nothing.
                    if not in_memory:
                        break
        except BaseExceptionGroup as errors:
            # One failing task cancels the rest; callers want the store error or BudgetError itself.
            raise _first_cause(errors) from errors
        summary.total = total if total is not None else seen
        summary.pending = max(0, summary.total - summary.done - summary.failed)
        summary.spent_usd = self.budget.spent_usd - self._spent_before
        summary.budget_exhausted = self.budget.exhausted
        self._report()
        return summary

    # -- per job -------------------------------------------------------------------------------------------

    def _settled_items(self) -> dict[tuple[str, str], tuple[str, str | None]]:
        """(item, variant) -> (status, reason) of what this run must not redo; one query, not one per job."""
        statuses = ("done", "failed") if not self.retry_failed else ("done",)
        rows = self.store.query(
            f"SELECT item_id, variant, status, reason FROM stage_results WHERE stage=? AND status IN"
            f" ({','.join('?' * len(statuses))})",
            (self.stage, *statuses),
        )
        return {(r["item_id"], r["variant"]): (r["status"], r["reason"]) for r in rows}

    async def _process(self, job: Job, call: Call) -> None:
        key = job.request.request_key()
        loop = asyncio.get_running_loop()
        async with self._key_locks.hold(key):
            entry = await loop.run_in_executor(None, self.cache.load, key)
            if entry is not None:
                self._summary.cache_hits += 1
                if not self.cache.is_indexed(key):
                    self._adopt(job, key, entry[1])
                outcome = _Outcome("done", data=entry[0])
            else:
                outcome = await self._attempt_until_settled(job, key, call)
        if outcome.status == "pending":
            return
        if outcome.status == "failed":
            assert outcome.failure is not None
            self._record_failed(job, key, outcome.failure, outcome.attempts)
            return
        assert outcome.data is not None
        try:
            result = dict(await self._post_process(job, outcome.data))
        except Exception as exc:
            # The response stays cached, so a rerun redoes only this step, at no cost.
            failure = classify_error(exc)
            self._record_failed(job, key, Failure(False, "post_process", failure.message), outcome.attempts)
            return
        result.setdefault("request_key", key)
        self._record_done(job, result)

    def _adopt(self, job: Job, key: str, meta: Mapping[str, Any]) -> None:
        """Catalogue a cached answer this store has no index row for.

        Either another run paid for it (a shared cache: it costs this run nothing), or this run did and was
        killed between writing the cache files and recording them. In the second case its attempt is still
        open: close it and record the cost the cache's meta kept, or the ledger and the budget would miss
        a call the vendor billed.
        """
        with self.store.transaction() as conn:
            self.cache.index(key, meta, conn=conn)
            row = conn.execute(  # by item first: attempts_item is the index a 100K-item store has
                "SELECT id FROM attempts WHERE item_id=? AND stage=? AND request_key=? AND ended_at IS NULL"
                " ORDER BY started_at DESC LIMIT 1",
                (job.item_id, self.stage, key),
            ).fetchone()
            if (
                row is None
                or conn.execute(
                    "SELECT 1 FROM costs WHERE item_id=? AND request_key=?", (job.item_id, key)
                ).fetchone()
            ):
                return
            self._end_attempt(
                row[0], ok=True, message="answered; recorded after an interrupted run", conn=conn
            )
            cost = float(meta.get("cost_usd") or 0.0)
            self._insert_cost(conn, job, key, cost, meta.get("usage") or {})
        self.budget.spent_usd += cost

    async def _post_process(self, job: Job, data: bytes) -> Mapping[str, Any]:
        if self.on_result is None:
            return {"size": len(data)}
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.on_result, job, data)

    def _gate(self, backend: str) -> _BackendGate:
        gate = self._gates.get(backend)
        if gate is None:
            limits = self.limits.get(backend, self.default_limits)
            if self.limiter is not None:
                gate = self.limiter(backend, limits)
            else:
                gate = _BackendGate(limits, self.clock, self.sleep)
            self._gates[backend] = gate
        return gate

    async def _attempt_until_settled(self, job: Job, key: str, call: Call) -> _Outcome:
        request = job.request
        gate = self._gate(request.backend)
        estimate = self.budget.estimate(request)
        attempt = 0
        while True:
            attempt += 1
            # The slot is held for one attempt only: a job sleeping off a 429 must not block others' calls.
            async with gate.semaphore:
                reservation = await self.budget.reserve(estimate)
                if reservation is None:
                    return _Outcome("pending", attempts=attempt - 1)
                try:
                    if gate.bucket is not None:
                        await gate.bucket.acquire()
                    result = await self._one_attempt(job, key, call, reservation)
                finally:
                    # Only reached unsettled on cancellation or a store error: nothing was billed we know of.
                    self.budget.settle(reservation, 0.0)
            if isinstance(result, bytes):
                return _Outcome("done", data=result, attempts=attempt)
            failure = result
            if not failure.retryable:
                return _Outcome("failed", failure=failure, attempts=attempt)
            if attempt >= self.retry.max_attempts:
                message = _one_line(f"gave up after {attempt} attempts: {failure.message}")
                return _Outcome("failed", failure=Failure(True, failure.reason, message), attempts=attempt)
            if self.budget.exhausted:
                return _Outcome("pending", attempts=attempt)
            self._summary.retries += 1
            await self.sleep(self.retry.delay(attempt, failure.retry_after_s, self.rng))

    async def _one_attempt(self, job: Job, key: str, call: Call, reservation: Reservation) -> bytes | Failure:
        """One call, recorded. Returns the response bytes (cached and indexed) or the failure."""
        request = job.request
        started = now()
        with self.store.transaction() as conn:
            attempt_id = conn.execute(
                "INSERT INTO attempts(item_id, stage, variant, started_at, ok, request_key) VALUES (?,?,?,?,0,?)",
                (job.item_id, self.stage, job.variant, started, key),
            ).lastrowid
        self._summary.calls += 1
        try:
            if self.call_timeout_s is not None:
                try:
                    response = await asyncio.wait_for(call(job), self.call_timeout_s)
                except TimeoutError:
                    raise RetryableError(
                        f"no answer within {self.call_timeout_s:g} s", reason="timeout"
                    ) from None
            else:
                response = await call(job)
            if (
                not isinstance(response, Response)
                or not isinstance(response.data, bytes)
                or not response.data
            ):
                raise PermanentError("the backend returned no data", reason="bad_output")
        except asyncio.CancelledError:
            self._end_attempt(attempt_id, ok=False, reason="cancelled", message="the run was cancelled")
            raise
        except Exception as exc:
            failure = classify_error(exc)
            # Some failures are billed (a blocked prompt's tokens); record what the error says it cost.
            usage = _usage_of(getattr(exc, "usage", None))
            reported = getattr(exc, "cost_usd", None)
            cost = self.budget.actual(
                request, usage, reported if isinstance(reported, int | float) else None, images=0
            )
            self.budget.settle(reservation, cost)
            with self.store.transaction() as conn:
                self._end_attempt(
                    attempt_id, ok=False, reason=failure.reason, message=failure.message, conn=conn
                )
                if cost > 0 or usage:
                    self._insert_cost(conn, job, key, cost, usage)
            return failure

        usage = _usage_of(response.usage)
        cost = self.budget.actual(request, usage, response.cost_usd, images=1)
        self.budget.settle(reservation, cost)
        meta = {
            "backend": request.backend,
            "model": request.model,
            "prompt": request.prompt,
            "input_sha256": request.input_digest(),
            "params": request.params,
            "usage": usage,
            "cost_usd": cost,
            "response": dict(response.meta),
        }
        loop = asyncio.get_running_loop()
        try:
            stored = await loop.run_in_executor(None, self.cache.write_files, key, response.data, meta)
        except BaseException as exc:
            # A full disk fails every later job too: record the money, then stop the run.
            with self.store.transaction() as conn:
                self._end_attempt(
                    attempt_id, ok=False, reason="cache_write", message=_one_line(repr(exc)), conn=conn
                )
                self._insert_cost(conn, job, key, cost, usage)
            raise
        with self.store.transaction() as conn:
            self.cache.index(key, stored, conn=conn)
            self._end_attempt(attempt_id, ok=True, conn=conn)
            self._insert_cost(conn, job, key, cost, usage)
        return response.data

    # -- bookkeeping ---------------------------------------------------------------------------------------

    def _end_attempt(
        self,
        attempt_id: int | None,
        *,
        ok: bool,
        reason: str | None = None,
        message: str | None = None,
        conn: Any = None,
    ) -> None:
        sql = "UPDATE attempts SET ended_at=?, ok=?, error_class=?, message=? WHERE id=?"
        params = (now(), int(ok), reason, message, attempt_id)
        if conn is not None:
            conn.execute(sql, params)
        else:
            with self.store.transaction() as c:
                c.execute(sql, params)

    def _insert_cost(self, conn: Any, job: Job, key: str, usd: float, usage: Mapping[str, Any]) -> None:
        conn.execute(
            "INSERT INTO costs(item_id, stage, backend, model, usd, input_tokens, output_tokens, request_key,"
            " created_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                job.item_id,
                self.stage,
                job.request.backend,
                job.request.model,
                usd,
                _int_or_none(usage.get("input_tokens")),
                _int_or_none(usage.get("output_tokens")),
                key,
                now(),
            ),
        )

    def _write_stage(
        self, job: Job, status: str, result: Mapping[str, Any], reason: str | None, message: str | None
    ) -> None:
        with self.store.transaction() as conn:
            conn.execute(
                "INSERT INTO stage_results(item_id, stage, variant, status, result, reason, message, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(item_id, stage, variant) DO UPDATE SET"
                " status=excluded.status, result=excluded.result, reason=excluded.reason,"
                " message=excluded.message, updated_at=excluded.updated_at",
                (job.item_id, self.stage, job.variant, status, _dumps(dict(result)), reason, message, now()),
            )

    def _record_done(self, job: Job, result: Mapping[str, Any]) -> None:
        self._write_stage(job, "done", result, None, None)
        self._summary.done += 1
        self._report()

    def _record_failed(self, job: Job, key: str, failure: Failure, attempts: int) -> None:
        result = {"request_key": key, "attempts": attempts}
        self._write_stage(job, "failed", result, failure.reason, failure.message)
        self._summary.failed += 1
        self._summary.failures[failure.reason] += 1
        self._report()

    def _report(self) -> None:
        if self.progress is not None:
            s = self._summary
            self.progress(s.done, s.failed, s.total, self.budget.spent_usd - self._spent_before)


def _first_cause(errors: BaseExceptionGroup[Any]) -> BaseException:
    for exc in errors.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_cause(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return errors.exceptions[0]


async def _aiter(jobs: Iterable[Job] | AsyncIterable[Job]) -> AsyncIterator[Job]:
    if isinstance(jobs, AsyncIterable):
        async for job in jobs:
            yield job
    else:
        for job in jobs:
            yield job
