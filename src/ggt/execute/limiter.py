"""Cluster-wide API limits, budget and progress: one Ray actor per run and stage, asked by every worker.

Each worker's engine gets a gate whose semaphore is a concurrency slot and whose bucket is a
requests-per-minute token, both granted by the actor; its budget reserves and settles money through the
same actor. Slots and reservations are short leases that the holding worker renews every few seconds: a
worker that dies holding one gives it back when the lease runs out (a reservation is then counted as spent
at its estimate: assume the call was paid).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from ggt.engine import Budget, Limits, TokenBucket

ACTOR_NAMESPACE = "ggt"


class Coordinator:
    """The actor's body (plain class; `coordinator_actor()` wraps it with `ray.remote`). Async methods only
    await each other, never block, so one actor serves thousands of waiting calls."""

    def __init__(
        self,
        limits: Limits,
        cap_usd: float | None = None,
        spent_usd: float = 0.0,
        lease_s: float = 10.0,
        total: int = 0,
    ) -> None:
        self.limits = limits
        self.lease_s = lease_s
        self.budget = Budget(cap_usd, spent_usd=spent_usd)
        self.spent_before = spent_usd
        self._slots: dict[int, float] = {}  # lease id -> expiry
        self._slot_freed: asyncio.Event | None = None
        self._buckets: dict[str, TokenBucket] = {}
        self._reservations: dict[int, tuple[Any, float]] = {}
        self._next = 0
        self.total = total
        self.done = 0
        self.failed = 0
        self.calls = 0

    def _id(self) -> int:
        self._next += 1
        return self._next

    def _reap(self) -> None:
        t = time.monotonic()
        for lid in [k for k, exp in self._slots.items() if exp < t]:
            del self._slots[lid]
        for rid in [k for k, (_, exp) in self._reservations.items() if exp < t]:
            res, _ = self._reservations.pop(rid)
            self.budget.settle(res, res.amount)

    async def acquire_slot(self) -> int:
        while True:
            self._reap()
            if len(self._slots) < self.limits.concurrency:
                lid = self._id()
                self._slots[lid] = time.monotonic() + self.lease_s
                return lid
            if self._slot_freed is None:
                self._slot_freed = asyncio.Event()
            event = self._slot_freed
            # Woken by a release, or once a second to reap leases of workers that died.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), 1.0)

    def renew(self, ids: list[int]) -> None:
        """Holders call this every `lease_s / 4`: what is held by a live worker never expires."""
        until = time.monotonic() + self.lease_s
        for i in ids:
            if i in self._slots:
                self._slots[i] = until
            elif i in self._reservations:
                self._reservations[i] = (self._reservations[i][0], until)

    def lease_seconds(self) -> float:
        return self.lease_s

    def release_slot(self, lid: int) -> None:
        self._slots.pop(lid, None)
        if self._slot_freed is not None:
            self._slot_freed.set()
            self._slot_freed = None

    async def take_token(self, backend: str) -> None:
        if not self.limits.requests_per_minute:
            return
        bucket = self._buckets.get(backend)
        if bucket is None:
            bucket = TokenBucket(self.limits.requests_per_minute, self.limits.burst)
            self._buckets[backend] = bucket
        self.calls += 1
        await bucket.acquire()

    async def reserve(self, amount: float) -> int | None:
        self._reap()
        res = await self.budget.reserve(amount)
        if res is None:
            return None
        rid = self._id()
        self._reservations[rid] = (res, time.monotonic() + self.lease_s)
        return rid

    def settle(self, rid: int, actual_usd: float) -> None:
        entry = self._reservations.pop(rid, None)
        if entry is not None:
            self.budget.settle(entry[0], actual_usd)

    def exhausted(self) -> bool:
        return self.budget.exhausted

    def report(self, done: int, failed: int) -> None:
        self.done += done
        self.failed += failed

    def snapshot(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "failed": self.failed,
            "total": self.total,
            "spent_usd": self.budget.spent_usd - self.spent_before,
            "in_flight": len(self._slots),
            "exhausted": self.budget.exhausted,
        }


def coordinator_actor(name: str, **kwargs: Any) -> Any:
    """Start the run's coordinator actor, replacing a leftover one of the same name (a killed driver's)."""
    import ray

    try:
        old = ray.get_actor(name, namespace=ACTOR_NAMESPACE)
        ray.kill(old)
    except ValueError:
        pass
    actor_cls = ray.remote(num_cpus=0, max_concurrency=10_000)(Coordinator)
    # Owned by the driver (not detached): if the driver dies, so does the actor, and a rerun starts afresh
    # with the spending the store has recorded by then.
    return actor_cls.options(name=name, namespace=ACTOR_NAMESPACE, max_restarts=0).remote(**kwargs)


# -- the worker side -------------------------------------------------------------------------------------


class _Renewer:
    """Keeps this worker's leases alive while it lives (a background task on the worker's event loop)."""

    def __init__(self, actor: Any, interval_s: float = 2.5) -> None:
        self._actor, self.interval_s = actor, interval_s
        self.held: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, lease: int) -> None:
        self.held.add(lease)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while self.held:
            await asyncio.sleep(self.interval_s)
            if self.held:
                await self._actor.renew.remote(sorted(self.held))


class _GlobalSlot:
    """An async context manager like `asyncio.Semaphore`, each entry holding one cluster-wide slot."""

    def __init__(self, actor: Any, renewer: _Renewer) -> None:
        self._actor, self._renewer = actor, renewer
        self._held: dict[int, list[int]] = {}

    async def __aenter__(self) -> None:
        lid = await self._actor.acquire_slot.remote()
        self._renewer.add(lid)
        task = id(asyncio.current_task())
        self._held.setdefault(task, []).append(lid)

    async def __aexit__(self, *exc: object) -> None:
        task = id(asyncio.current_task())
        lids = self._held.get(task) or []
        if lids:
            lid = lids.pop()
            if not lids:
                del self._held[task]
            self._renewer.held.discard(lid)
            # Awaited, not fire-and-forget: a worker that exits right after must not take its slot along.
            await self._actor.release_slot.remote(lid)


class _GlobalTokens:
    def __init__(self, actor: Any, backend: str) -> None:
        self._actor, self._backend = actor, backend

    async def acquire(self) -> None:
        await self._actor.take_token.remote(self._backend)


class GlobalGate:
    """What `Engine(limiter=...)` gets per backend: the actor's slots and tokens."""

    def __init__(self, actor: Any, backend: str, renewer: _Renewer) -> None:
        self.semaphore = _GlobalSlot(actor, renewer)
        self.bucket = _GlobalTokens(actor, backend)


def global_limiter(actor: Any, renew_s: float = 2.5) -> Any:
    renewer = _Renewer(actor, renew_s)

    def make(backend: str, _limits: Limits) -> GlobalGate:
        return GlobalGate(actor, backend, renewer)

    return make


class _GlobalReservation:
    __slots__ = ("amount", "rid", "settled")

    def __init__(self, amount: float, rid: int) -> None:
        self.amount, self.rid, self.settled = amount, rid, False


class GlobalBudget(Budget):
    """A `Budget` whose cap holds across the cluster: the actor reserves and settles every attempt.

    Prices (estimate, actual cost) stay local; `spent_usd` counts this worker's spending only.
    """

    def __init__(self, local: Budget, actor: Any, renew_s: float = 2.5) -> None:
        super().__init__(local.cap_usd, local._pricing, spent_usd=local.spent_usd)
        self._actor = actor
        self._renewer = _Renewer(actor, renew_s)

    async def reserve(self, amount: float) -> Any:
        if self._exhausted:
            return None
        rid = await self._actor.reserve.remote(amount)
        if rid is None:
            self._exhausted = True
            return None
        self._renewer.add(rid)
        return _GlobalReservation(amount, rid)

    def settle(self, reservation: Any, actual_usd: float) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        self.spent_usd += actual_usd
        self._renewer.held.discard(reservation.rid)
        # Fire and forget: calls from one worker reach the actor in order, and none waits on the answer.
        self._actor.settle.remote(reservation.rid, actual_usd)
