"""The request engine against fake async backends: no HTTP, seeded faults, fake clocks where time matters."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ggt.engine import (
    Budget,
    BudgetError,
    Engine,
    Job,
    Limits,
    PermanentError,
    Pricing,
    Request,
    RequestCache,
    Response,
    RetryableError,
    RetryPolicy,
    RunSummary,
    TokenBucket,
    classify_error,
)
from ggt.store import RunStore, now
from ggt.vlm.errors import PermanentVLMError, RetryableVLMError

STAGE = "synth"
RETRYABLE = ("rate_limited", "server_error", "timeout", "connection")


# ----------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------


def _add_items(store: RunStore, ids: Sequence[str]) -> None:
    with store.transaction() as conn:
        conn.executemany(
            "INSERT OR IGNORE INTO items(id, sha256, category, source_path, source_name, source_bytes, format,"
            " mode, width, height, lq_path, phash, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (i, i * 4, "rain", f"/x/{i}", i, 1, "PNG", "RGB", 8, 8, f"lq/{i}.png", "0" * 16, now())
                for i in ids
            ],
        )


def _jobs(n: int, variant: str = "gen", backend: str = "fake") -> list[Job]:
    return [
        Job(
            f"{i:016x}",
            variant,
            Request(
                backend=backend, model="m1", prompt="restore", input_bytes=f"img{i}".encode(), params={"s": 1}
            ),
        )
        for i in range(n)
    ]


def _store(path: Path, jobs: Sequence[Job]) -> RunStore:
    store = RunStore(path)
    _add_items(store, sorted({j.item_id for j in jobs}))
    return store


async def _no_wait(_seconds: float) -> None:
    await asyncio.sleep(0)


FAST = RetryPolicy(max_attempts=4, base_delay_s=0.0, max_delay_s=0.0)


class FakeBackend:
    """An async call that counts calls per key, tracks concurrency and fails on a seeded schedule."""

    def __init__(
        self,
        fault_rate: float = 0.0,
        seed: int = 0,
        delay_s: float = 0.0,
        error: BaseException | None = None,
        cost_usd: float | None = None,
    ) -> None:
        self.fault_rate = fault_rate
        self.seed = seed
        self.delay_s = delay_s
        self.error = error
        self.cost_usd = cost_usd
        self.calls: Counter[str] = Counter()
        self.successes: Counter[str] = Counter()
        self.calls_after_success = 0
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()

    async def __call__(self, job: Job) -> Response:
        key = job.request.request_key()
        backend = job.request.backend
        if self.successes[key]:
            self.calls_after_success += 1
        self.calls[key] += 1
        self.in_flight[backend] += 1
        self.max_in_flight[backend] = max(self.max_in_flight[backend], self.in_flight[backend])
        try:
            await asyncio.sleep(self.delay_s)
            if self.error is not None:
                raise self.error
            # Seeded per (key, call number), not one shared stream: thread timing must not move the faults.
            rng = random.Random(f"{self.seed}:{key}:{self.calls[key]}")
            if rng.random() < self.fault_rate:
                raise RetryableError("injected fault", reason=rng.choice(RETRYABLE))
            self.successes[key] += 1
            return Response(
                data=b"HQ:" + key.encode(),
                usage={"input_tokens": 10, "output_tokens": 4},
                cost_usd=self.cost_usd,
            )
        finally:
            self.in_flight[backend] -= 1


def _run(engine: Engine, jobs: Sequence[Job], call: Any) -> RunSummary:
    return asyncio.run(engine.run(jobs, call))


def _statuses(store: RunStore) -> Counter[str]:
    return Counter(
        r["status"] for r in store.query("SELECT status FROM stage_results WHERE stage=?", (STAGE,))
    )


# ----------------------------------------------------------------------------------------------------------
# Requests, errors, policy
# ----------------------------------------------------------------------------------------------------------


def test_request_key_is_canonical_and_covers_what_changes_the_answer():
    base = Request(backend="b", model="m", prompt="p", input_bytes=b"abc", params={"x": 1, "y": [1, 2]})
    same = Request(
        backend="b", model="m", prompt="p", input_sha256=base.input_sha256, params={"y": [1, 2], "x": 1}
    )
    assert base.request_key() == same.request_key()
    assert len(base.request_key()) == 64
    assert "abc" not in repr(base)  # the bytes stay out of logs
    for change in ({"prompt": "q"}, {"model": "m2"}, {"backend": "c"}, {"params": {"x": 2, "y": [1, 2]}}):
        assert Request(**{**base.model_dump(), **change}).request_key() != base.request_key()
    other_input = {**base.model_dump(), "input_bytes": b"abd", "input_sha256": None}
    assert Request(**other_input).request_key() != base.request_key()
    # model_copy skips validation; the key must still follow the bytes actually sent.
    assert base.model_copy(update={"input_bytes": b"zzz"}).request_key() != base.request_key()
    with pytest.raises(ValueError, match="does not match"):
        Request(backend="b", model="m", prompt="p", input_bytes=b"abc", input_sha256="0" * 64)
    with pytest.raises(ValueError, match="plain JSON"):
        Request(backend="b", model="m", prompt="p", params={"x": float("nan")})


def test_classify_error_accepts_engine_vlm_and_duck_typed_errors():
    f = classify_error(RetryableError("slow down", reason="rate_limited", retry_after_s=3))
    assert (f.retryable, f.reason, f.retry_after_s) == (True, "rate_limited", 3)
    f = classify_error(PermanentError("blocked", reason="safety_block"))
    assert (f.retryable, f.reason) == (False, "safety_block")
    f = classify_error(RetryableVLMError("busy", reason="server_error", retry_after_s=2.0))
    assert (f.retryable, f.reason, f.retry_after_s) == (True, "server_error", 2.0)
    assert classify_error(PermanentVLMError("bad key", reason="auth")).reason == "auth"

    class Duck(Exception):
        retryable = True
        retry_after_s = float("inf")  # nonsense from a header is ignored, not slept on

    f = classify_error(Duck("quack"))
    assert (f.retryable, f.reason, f.retry_after_s) == (True, "server_error", None)
    f = classify_error(ValueError("boom\nsecond line"))
    assert (f.retryable, f.reason) == (False, "unexpected")
    assert f.message == "ValueError: boom second line"


def test_retry_delay_is_full_jitter_capped_and_respects_retry_after():
    policy = RetryPolicy(max_attempts=5, base_delay_s=1.0, max_delay_s=4.0, max_retry_after_s=30.0)
    rng = random.Random(1)
    for failed in range(1, 8):
        delays = [policy.delay(failed, None, rng) for _ in range(200)]
        ceiling = min(4.0, 2.0 ** (failed - 1))
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spans the range, not a fixed step
    assert all(policy.delay(1, 10.0, rng) >= 10.0 for _ in range(50))
    assert policy.delay(1, 3600.0, rng) == 30.0
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_token_bucket_spaces_requests_on_a_fake_clock():
    clock = [100.0]
    stamps: list[float] = []

    async def sleep(seconds: float) -> None:
        clock[0] += seconds
        await asyncio.sleep(0)

    async def main() -> None:
        bucket = TokenBucket(60, burst=2, clock=lambda: clock[0], sleep=sleep)

        async def one() -> None:
            await bucket.acquire()
            stamps.append(clock[0])

        await asyncio.gather(*(one() for _ in range(6)))

    asyncio.run(main())
    # Two from the burst at once, then one a second (60 per minute).
    assert stamps == pytest.approx([100.0, 100.0, 101.0, 102.0, 103.0, 104.0])


# ----------------------------------------------------------------------------------------------------------
# The cache
# ----------------------------------------------------------------------------------------------------------


def test_cache_round_trip_layout_index_and_damage(tmp_path):
    store = RunStore(tmp_path / "s.sqlite")
    cache = RequestCache(tmp_path / "cache", store)
    key = Request(backend="b", model="m", prompt="p").request_key()
    assert cache.get(key) is None
    path = cache.put(key, b"payload", {"backend": "b", "model": "m"})
    assert path == tmp_path / "cache" / key[:2] / key
    assert cache.get(key) == b"payload"
    row = store.query("SELECT backend, model, path, size FROM cache_index WHERE key=?", (key,))[0]
    assert tuple(row) == ("b", "m", f"{key[:2]}/{key}", 7)
    assert json.loads(path.with_name(key + ".json").read_text())["size"] == 7
    path.write_bytes(b"payloaX")  # bit rot or a foreign writer: a miss, never wrong bytes
    assert cache.get(key) is None
    with pytest.raises(ValueError):
        cache.path("../etc")

    other = RunStore(tmp_path / "other.sqlite")
    cache.put(key, b"payload", {"backend": "b"})
    assert RequestCache(tmp_path / "cache", other).get(key) == b"payload"
    assert other.scalar("SELECT count(*) FROM cache_index") == 1  # adopted from the shared folder


# ----------------------------------------------------------------------------------------------------------
# The engine
# ----------------------------------------------------------------------------------------------------------


def test_faults_settle_every_job_with_bounded_attempts_and_no_repeat_after_success(tmp_path):
    jobs = _jobs(150)
    store = _store(tmp_path / "s.sqlite", jobs)
    backend = FakeBackend(fault_rate=0.3, seed=7)
    policy = RetryPolicy(max_attempts=3, base_delay_s=0.0, max_delay_s=0.0)
    engine = Engine(
        store,
        RequestCache(tmp_path / "cache", store),
        STAGE,
        retry=policy,
        default_limits=Limits(concurrency=8),
        rng=random.Random(0),
        sleep=_no_wait,
    )
    summary = _run(engine, jobs, backend)

    assert summary.done + summary.failed == len(jobs) and summary.pending == 0
    assert summary.failed > 0 and summary.retries > 0  # the seed exercises both paths
    assert backend.calls_after_success == 0
    assert max(backend.successes.values()) == 1
    assert max(backend.calls.values()) <= policy.max_attempts
    assert summary.calls == sum(backend.calls.values())

    rows = {r["item_id"]: r for r in store.query("SELECT * FROM stage_results WHERE stage=?", (STAGE,))}
    assert len(rows) == len(jobs)
    per_item = Counter(r[0] for r in store.query("SELECT item_id FROM attempts WHERE stage=?", (STAGE,)))
    for job in jobs:
        row = rows[job.item_id]
        key = job.request.request_key()
        assert per_item[job.item_id] == backend.calls[key]
        if row["status"] == "done":
            assert backend.successes[key] == 1
            assert json.loads(row["result"])["request_key"] == key
        else:
            assert row["status"] == "failed" and row["reason"] in RETRYABLE
            assert backend.calls[key] == policy.max_attempts and "gave up after 3 attempts" in row["message"]
    assert store.scalar("SELECT count(*) FROM attempts WHERE ended_at IS NULL") == 0
    assert store.scalar("SELECT count(*) FROM attempts WHERE ok=1") == summary.done
    assert set(r[0] for r in store.query("SELECT error_class FROM attempts WHERE ok=0")) <= set(RETRYABLE)
    assert store.scalar("SELECT count(*) FROM costs") == summary.done
    assert store.scalar("SELECT count(*) FROM cache_index") == summary.done


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (PermanentError("blocked by policy", reason="safety_block"), "safety_block"),
        (PermanentVLMError("bad key", reason="auth"), "auth"),
        (KeyError("surprise"), "unexpected"),
    ],
)
def test_permanent_errors_are_not_retried_and_keep_their_reason(tmp_path, error, reason):
    jobs = _jobs(3)
    store = _store(tmp_path / "s.sqlite", jobs)
    backend = FakeBackend(error=error)
    engine = Engine(store, RequestCache(tmp_path / "cache", store), STAGE, retry=FAST, sleep=_no_wait)
    summary = _run(engine, jobs, backend)
    assert (summary.done, summary.failed, summary.calls, summary.retries) == (0, 3, 3, 0)
    assert summary.failures == Counter({reason: 3})
    rows = store.query("SELECT status, reason, message FROM stage_results")
    assert {(r["status"], r["reason"]) for r in rows} == {("failed", reason)}
    assert all(r["message"] for r in rows)
    assert store.scalar("SELECT count(*) FROM costs") == 0


def test_bad_output_and_timeouts_are_classified(tmp_path):
    jobs = _jobs(2)
    store = _store(tmp_path / "s.sqlite", jobs)
    cache = RequestCache(tmp_path / "cache", store)

    async def empty(job: Job) -> Response:
        return Response(data=b"")

    summary = _run(Engine(store, cache, STAGE, retry=FAST, sleep=_no_wait), jobs, empty)
    assert summary.failures == Counter({"bad_output": 2}) and summary.calls == 2

    slow = FakeBackend(delay_s=5.0)
    policy = RetryPolicy(max_attempts=2, base_delay_s=0.0, max_delay_s=0.0)
    engine = Engine(store, cache, STAGE, retry=policy, call_timeout_s=0.02, sleep=_no_wait)
    summary = _run(engine, jobs, slow)
    assert summary.failures == Counter({"timeout": 2}) and summary.calls == 4


def test_second_run_makes_no_calls(tmp_path):
    jobs = _jobs(20)
    store = _store(tmp_path / "s.sqlite", jobs)
    cache = RequestCache(tmp_path / "cache", store)
    first = FakeBackend(fault_rate=0.3, seed=3)
    s1 = _run(Engine(store, cache, STAGE, retry=FAST, sleep=_no_wait), jobs, first)
    assert s1.done == 20

    again = FakeBackend()
    s2 = _run(Engine(store, cache, STAGE, retry=FAST, sleep=_no_wait), jobs, again)
    assert sum(again.calls.values()) == 0
    assert (s2.done, s2.skipped, s2.cache_hits, s2.calls, s2.spent_usd) == (20, 20, 0, 0, 0.0)

    # A crash after the response was cached but before the stage row: the cache answers, nobody pays.
    with store.transaction() as conn:
        conn.execute("DELETE FROM stage_results")
    s3 = _run(Engine(store, cache, STAGE, retry=FAST, sleep=_no_wait), jobs, again)
    assert sum(again.calls.values()) == 0
    assert (s3.done, s3.cache_hits, s3.spent_usd) == (20, 20, 0.0)
    assert _statuses(store) == Counter({"done": 20})


def test_fresh_store_sharing_the_cache_dir_makes_no_calls(tmp_path):
    jobs = _jobs(12)
    first = _store(tmp_path / "a.sqlite", jobs)
    _run(Engine(first, RequestCache(tmp_path / "cache", first), STAGE, sleep=_no_wait), jobs, FakeBackend())

    second = _store(tmp_path / "b.sqlite", jobs)
    backend = FakeBackend()
    summary = _run(Engine(second, RequestCache(tmp_path / "cache", second), STAGE), jobs, backend)
    assert sum(backend.calls.values()) == 0
    assert (summary.done, summary.cache_hits, summary.calls) == (12, 12, 0)
    assert second.scalar("SELECT count(*) FROM costs") == 0  # a hit is free
    assert second.scalar("SELECT count(*) FROM cache_index") == 12
    assert second.scalar("SELECT count(*) FROM attempts") == 0


def test_identical_requests_in_one_run_share_one_call(tmp_path):
    request = _jobs(1)[0].request
    jobs = [Job(f"{i:016x}", "gen", request) for i in range(5)]
    store = _store(tmp_path / "s.sqlite", jobs)
    backend = FakeBackend(delay_s=0.01)
    summary = _run(Engine(store, RequestCache(tmp_path / "cache", store), STAGE), jobs, backend)
    assert backend.calls[request.request_key()] == 1
    assert (summary.done, summary.cache_hits) == (5, 4)


def test_budget_cap_stops_launching_and_leaves_the_rest_pending(tmp_path):
    jobs = _jobs(25)
    store = _store(tmp_path / "s.sqlite", jobs)
    budget = Budget(cap_usd=1.0, pricing={"fake": Pricing(per_image_usd=0.1)})
    backend = FakeBackend(delay_s=0.002)
    seen: list[tuple[int, int, int, float]] = []
    engine = Engine(
        store,
        RequestCache(tmp_path / "cache", store),
        STAGE,
        budget=budget,
        default_limits=Limits(concurrency=4),
        progress=lambda *a: seen.append(a),
    )
    summary = _run(engine, jobs, backend)
    assert summary.budget_exhausted
    assert summary.spent_usd <= 1.0 + 1e-9
    assert (summary.done, summary.failed, summary.pending) == (10, 0, 15)
    assert sum(backend.calls.values()) == 10
    assert _statuses(store) == Counter({"done": 10})  # pending items have no row: not failed
    assert store.scalar("SELECT sum(usd) FROM costs") == pytest.approx(summary.spent_usd)
    assert seen[-1] == (10, 0, 25, pytest.approx(1.0))

    # A later run with a fresh budget picks up exactly the pending ones.
    backend2 = FakeBackend()
    more = Engine(store, RequestCache(tmp_path / "cache", store), STAGE, budget=Budget(None, Pricing(0.1)))
    summary2 = _run(more, jobs, backend2)
    assert (
        sum(backend2.calls.values()) == 15
        and summary2.done == 25
        and summary2.spent_usd == pytest.approx(1.5)
    )


def test_pending_counts_stay_exact_and_a_lazy_source_is_not_drained_once_money_runs_out(tmp_path):
    jobs = _jobs(25)
    store = _store(tmp_path / "s.sqlite", jobs)
    cache = RequestCache(tmp_path / "cache", store)
    _run(Engine(store, cache, STAGE), jobs[20:], FakeBackend())  # the last five are already done

    capped = Engine(
        store, cache, STAGE, budget=Budget(1.0, Pricing(0.1)), default_limits=Limits(concurrency=2)
    )
    summary = _run(capped, jobs, FakeBackend())
    assert (summary.done, summary.skipped, summary.pending, summary.failed) == (15, 5, 10, 0)

    pulled: list[str] = []

    def lazy():
        for job in jobs:
            pulled.append(job.item_id)
            yield job

    # Which ten of the first twenty got the money depends on the order their cache lookups (threads) ended.
    done = {r[0] for r in store.query("SELECT item_id FROM stage_results WHERE status = 'done'")}
    pending_at = [i for i, job in enumerate(jobs) if job.item_id not in done]
    spent = Budget(1.0, Pricing(0.1), spent_usd=0.95)
    summary = _run(Engine(store, cache, STAGE, budget=spent, max_queued=1), lazy(), FakeBackend())
    assert summary.budget_exhausted and summary.spent_usd == 0.0
    # The done ones skipped, the first pending one refused, the next pending one already pulled while the
    # refusal was in flight; the rest never loaded.
    assert len(pulled) == pending_at[1] + 1 < len(jobs)


def test_budget_waits_for_in_flight_calls_that_cost_less_than_estimated(tmp_path):
    jobs = _jobs(30)
    store = _store(tmp_path / "s.sqlite", jobs)
    # Estimated at 0.10, billed at 0.05 (the vendor reports it): waiting for in-flight calls to settle buys
    # 19 calls, not 10; the 20th is refused because only 0.05 is left and its estimate says 0.10.
    budget = Budget(cap_usd=1.0, pricing=Pricing(per_image_usd=0.1))
    backend = FakeBackend(delay_s=0.002, cost_usd=0.05)
    engine = Engine(store, RequestCache(tmp_path / "cache", store), STAGE, budget=budget, max_queued=8)
    summary = _run(engine, jobs, backend)
    assert (summary.done, summary.pending, summary.failed) == (19, 11, 0)
    assert summary.spent_usd == pytest.approx(0.95)


def test_capped_budget_refuses_an_unpriced_backend():
    budget = Budget(cap_usd=5.0, pricing={"gemini": Pricing(per_image_usd=0.04)})
    with pytest.raises(BudgetError, match="no price"):
        budget.estimate(Request(backend="openai", model="gpt-image-1", prompt="p"))
    assert Budget(None, {}).estimate(Request(backend="openai", model="x", prompt="p")) == 0.0


def test_a_run_that_cannot_price_its_calls_stops_before_paying(tmp_path):
    jobs = _jobs(4)
    store = _store(tmp_path / "s.sqlite", jobs)
    engine = Engine(
        store, RequestCache(tmp_path / "cache", store), STAGE, budget=Budget(1.0, {"other": Pricing(0.1)})
    )
    backend = FakeBackend()
    with pytest.raises(BudgetError, match="no price for fake/m1"):
        _run(engine, jobs, backend)
    assert sum(backend.calls.values()) == 0
    assert store.scalar("SELECT count(*) FROM stage_results") == 0


def test_costs_follow_usage_when_no_cost_is_reported_and_billed_failures_count(tmp_path):
    jobs = _jobs(2)
    store = _store(tmp_path / "s.sqlite", jobs)
    pricing = Pricing(per_image_usd=0.04, per_input_token_usd=0.001, per_output_token_usd=0.002)
    engine = Engine(store, RequestCache(tmp_path / "cache", store), STAGE, budget=Budget(None, pricing))
    summary = _run(engine, jobs[:1], FakeBackend())
    assert summary.spent_usd == pytest.approx(0.04 + 10 * 0.001 + 4 * 0.002)
    row = store.query("SELECT usd, input_tokens, output_tokens FROM costs")[0]
    assert tuple(row) == (pytest.approx(0.058), 10, 4)

    blocked = PermanentVLMError("blocked", reason="safety_block")
    blocked.usage = {"input_tokens": 100}  # the prompt was read, and billed, before the block
    summary = _run(engine, jobs[1:], FakeBackend(error=blocked))
    assert summary.spent_usd == pytest.approx(0.1)  # this run's spending; the budget keeps the total
    assert engine.budget.spent_usd == pytest.approx(0.058 + 0.1)
    assert store.scalar("SELECT count(*) FROM costs") == 2


def test_concurrency_limit_per_backend_is_never_exceeded(tmp_path):
    jobs = _jobs(30, backend="a") + [j._replace(variant="b") for j in _jobs(30, backend="b")]
    store = _store(tmp_path / "s.sqlite", jobs)
    backend = FakeBackend(delay_s=0.003, fault_rate=0.2, seed=1)
    engine = Engine(
        store,
        RequestCache(tmp_path / "cache", store),
        STAGE,
        limits={"a": Limits(concurrency=3), "b": Limits(concurrency=5)},
        retry=FAST,
        sleep=_no_wait,
    )
    summary = _run(engine, jobs, backend)
    assert summary.done == 60
    assert backend.max_in_flight == Counter({"a": 3, "b": 5})


def test_rate_limit_spaces_calls_on_a_fake_clock(tmp_path):
    jobs = _jobs(8)
    store = _store(tmp_path / "s.sqlite", jobs)
    clock = [0.0]
    stamps: list[float] = []

    async def sleep(seconds: float) -> None:
        clock[0] += seconds
        await asyncio.sleep(0)

    async def call(job: Job) -> Response:
        stamps.append(clock[0])
        return Response(data=b"x")

    engine = Engine(
        store,
        RequestCache(tmp_path / "cache", store),
        STAGE,
        default_limits=Limits(concurrency=8, requests_per_minute=120),
        clock=lambda: clock[0],
        sleep=sleep,
    )
    _run(engine, jobs, call)
    assert stamps == pytest.approx([0.5 * i for i in range(8)])


def test_retry_after_is_honoured(tmp_path):
    jobs = _jobs(4)
    store = _store(tmp_path / "s.sqlite", jobs)
    delays: list[float] = []
    failed_once: set[str] = set()

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    async def call(job: Job) -> Response:
        if job.item_id not in failed_once:
            failed_once.add(job.item_id)
            raise RetryableVLMError("429", reason="rate_limited", retry_after_s=7.5)
        return Response(data=b"ok")

    policy = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.01)
    engine = Engine(store, RequestCache(tmp_path / "cache", store), STAGE, retry=policy, sleep=sleep)
    summary = _run(engine, jobs, call)
    assert (summary.done, summary.retries) == (4, 4)
    assert delays == [7.5] * 4
    assert store.scalar("SELECT count(*) FROM attempts WHERE error_class='rate_limited'") == 4


def test_on_result_runs_off_the_loop_and_a_failure_there_costs_nothing_to_redo(tmp_path):
    jobs = _jobs(6)
    store = _store(tmp_path / "s.sqlite", jobs)
    cache = RequestCache(tmp_path / "cache", store)
    loop_thread = threading.get_ident()
    threads: set[int] = set()
    broken = {"on": True}

    def on_result(job: Job, data: bytes) -> dict[str, Any]:
        threads.add(threading.get_ident())
        if broken["on"] and job.item_id.endswith("3"):
            raise OSError("disk hiccup while writing the HQ file")
        return {"hq_path": f"hq/gen/{job.item_id}.png", "bytes": len(data)}

    backend = FakeBackend()
    with ThreadPoolExecutor(2) as pool:
        engine = Engine(store, cache, STAGE, on_result=on_result, executor=pool)
        summary = _run(engine, jobs, backend)
        assert (summary.done, summary.failed) == (5, 1) and summary.failures == Counter({"post_process": 1})
        assert loop_thread not in threads
        row = store.query("SELECT reason, message FROM stage_results WHERE status='failed'")[0]
        assert row["reason"] == "post_process" and "disk hiccup" in row["message"]
        result = json.loads(
            store.scalar("SELECT result FROM stage_results WHERE item_id=?", (jobs[0].item_id,))
        )
        assert result["hq_path"].endswith(".png") and result["request_key"] == jobs[0].request.request_key()

        broken["on"] = False
        summary = _run(Engine(store, cache, STAGE, on_result=on_result, executor=pool), jobs, backend)
    assert summary.done == 6 and summary.calls == 0 and sum(backend.calls.values()) == 6


def test_async_job_source_and_keeping_previous_failures(tmp_path):
    jobs = _jobs(5)
    store = _store(tmp_path / "s.sqlite", jobs)
    cache = RequestCache(tmp_path / "cache", store)
    _run(
        Engine(store, cache, STAGE),
        jobs[:2],
        FakeBackend(error=PermanentError("no", reason="invalid_request")),
    )

    async def source():
        for job in jobs:
            yield job

    backend = FakeBackend()
    summary = asyncio.run(Engine(store, cache, STAGE, retry_failed=False).run(source(), backend))
    assert (summary.total, summary.done, summary.failed, summary.skipped) == (5, 3, 2, 2)
    assert summary.failures == Counter({"invalid_request": 2})
    assert sum(backend.calls.values()) == 3


def test_an_interrupted_run_closes_its_open_attempts(tmp_path):
    jobs = _jobs(3)
    store = _store(tmp_path / "s.sqlite", jobs)

    async def main() -> None:
        engine = Engine(store, RequestCache(tmp_path / "cache", store), STAGE)
        backend = FakeBackend(delay_s=10)
        task = asyncio.create_task(engine.run(jobs, backend))
        for _ in range(500):
            if backend.in_flight["fake"] == 3:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert store.scalar("SELECT count(*) FROM attempts WHERE ended_at IS NULL") == 0
    assert store.scalar("SELECT count(*) FROM attempts WHERE error_class='cancelled'") == 3
    assert store.scalar("SELECT count(*) FROM stage_results") == 0


def test_a_kill_between_the_cache_write_and_its_records_loses_no_cost(tmp_path):
    """The answer's files are written, then the process dies before the index, attempt and cost rows are
    committed. The rerun serves it from the cache (no second call) and records the cost the meta kept; an
    answer another run paid for (shared cache, no open attempt here) is catalogued at no cost."""

    class Died(Exception):
        pass

    class DiesBeforeRecording(RequestCache):
        def index(self, key, meta, conn=None):
            if conn is not None:  # the engine's own transaction after a paid call: the process "dies"
                raise Died
            super().index(key, meta, conn)

    jobs = _jobs(3)
    store = _store(tmp_path / "s.sqlite", jobs)
    priced = Budget(None, Pricing(0.04))
    with pytest.raises(Died):
        _run(Engine(store, DiesBeforeRecording(tmp_path / "cache", store), STAGE, budget=priced,
                    default_limits=Limits(concurrency=1)), jobs[:1], FakeBackend())  # fmt: skip
    assert store.scalar("SELECT COUNT(*) FROM costs") == 0
    assert store.scalar("SELECT COUNT(*) FROM attempts WHERE ended_at IS NULL") == 1

    backend = FakeBackend()
    budget = Budget(None, Pricing(0.04))
    summary = _run(
        Engine(store, RequestCache(tmp_path / "cache", store), STAGE, budget=budget), jobs, backend
    )
    assert summary.done == 3 and summary.cache_hits == 1
    assert sum(backend.calls.values()) == 2  # the answer paid before the kill is not bought again
    assert store.scalar("SELECT COUNT(*) FROM costs") == 3
    assert store.scalar("SELECT SUM(usd) FROM costs") == pytest.approx(0.12)
    assert store.scalar("SELECT COUNT(*) FROM attempts WHERE ended_at IS NULL") == 0
    assert budget.spent_usd == pytest.approx(0.12)

    # Another run sharing the cache: three cache hits, no calls, no cost of its own.
    other = _store(tmp_path / "other.sqlite", jobs)
    again = _run(Engine(other, RequestCache(tmp_path / "cache", other), STAGE), jobs, FakeBackend())
    assert again.cache_hits == 3 and other.scalar("SELECT COUNT(*) FROM costs") == 0
