"""Shard storage through fsspec (memory:// and local), result files, idempotent commits, the limiter actor's
logic (as a plain class, no Ray), and the missing-extra message."""

import asyncio
import hashlib
import json
import sys
import time
import uuid

import pytest

from ggt.config import ConfigError, ExecuteConfig
from ggt.engine import Limits
from ggt.execute import shards as sh
from ggt.execute.limiter import Coordinator
from ggt.execute.local import Outcome, record_outcomes
from ggt.execute.storage import FsspecRequestCache, Storage
from ggt.store import RunStore


@pytest.fixture(params=["memory", "file"])
def storage(request, tmp_path):
    if request.param == "memory":
        return Storage(f"memory://ggt-test-{uuid.uuid4().hex[:8]}/shards")
    return Storage(f"file://{tmp_path}/shards")


def test_storage_round_trip_listing_and_removal(storage):
    assert not storage.exists("a/b/spec.pkl") and storage.listdir("a") == []
    storage.write_bytes("a/b/spec.pkl", b"\x00spec")
    storage.write_text("a/c/done", "")
    assert storage.read_bytes("a/b/spec.pkl") == b"\x00spec"
    assert storage.listdir("a") == ["b", "c"]
    storage.write_bytes("a/b/spec.pkl", b"v2")  # replaced whole, never appended
    assert storage.read_bytes("a/b/spec.pkl") == b"v2"
    storage.rm("a/b")
    assert storage.listdir("a") == ["c"]
    assert (storage.local_path("x") is None) == (not storage.is_local)


def test_fsspec_cache_round_trip_and_damaged_entry_is_a_miss(storage):
    cache = FsspecRequestCache(storage.sub("cache"))
    key = hashlib.sha256(b"request").hexdigest()
    assert cache.load(key) is None
    meta = cache.write_files(key, b"answer bytes", {"backend": "gemini", "cost_usd": 0.039})
    data, loaded = cache.load(key)
    assert data == b"answer bytes" and loaded["sha256"] == meta["sha256"] and loaded["cost_usd"] == 0.039
    storage.write_bytes(f"cache/{key[:2]}/{key}", b"torn")
    assert cache.load(key) is None


def test_result_file_round_trip_and_done_marker_written_last(storage):
    rows = [sh.outcome_row(Outcome(item_id="a", result={"x": 1}, ended_at=2.0)),
            sh.outcome_row(Outcome(item_id="b", status="failed", reason="unreadable", message="gone"))]  # fmt: skip
    sh.write_result(storage, "synth/classical/s1", rows, {"counts": {"done": 1, "failed": 1}})
    assert storage.exists(f"synth/classical/s1/{sh.DONE}")
    back, meta = sh.read_result(storage, "synth/classical/s1")
    assert meta == {"counts": {"done": 1, "failed": 1}}
    outs = [sh.row_outcome(r) for r in back]
    assert [(o.item_id, o.status, o.result, o.reason) for o in outs] == [
        ("a", "done", {"x": 1}, None),
        ("b", "failed", {}, "unreadable"),
    ]


def test_shard_id_is_stable_and_depends_on_the_work():
    cfg = ExecuteConfig(shard_size=4)
    a = sh.shard_id("synth", "classical", cfg, [("id1", "/p")])
    assert a == sh.shard_id("synth", "classical", ExecuteConfig(shard_size=4), [("id1", "/p")])
    assert a != sh.shard_id("synth", "classical", cfg, [("id2", "/p")])
    assert a != sh.shard_id("synth", "classical", ExecuteConfig(shard_size=5), [("id1", "/p")])


def _store_with_item(tmp_path, item="i1"):
    store = RunStore(tmp_path / "ggt.sqlite")
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO items(id, sha256, category, source_path, source_name, source_bytes, format, mode, width,"
            " height, lq_path, phash, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (item, item * 4, "haze", "/s", "s", 1, "PNG", "RGB", 8, 8, f"lq/{item}.png", "0", 0.0),
        )
    return store


def test_commits_are_idempotent(tmp_path):
    store = _store_with_item(tmp_path)
    o = Outcome(item_id="i1", result={"k": 1}, ended_at=time.time())
    record_outcomes(store, "analyze", "", [o])
    record_outcomes(store, "analyze", "", [o])  # the stage loop recording what the executor committed
    assert store.scalar("SELECT COUNT(*) FROM attempts WHERE stage='analyze'") == 1
    row = {
        "item_id": "i1", "status": "done", "result": json.dumps({"hq_path": "hq/x/i1.png"}), "reason": None,
        "message": None, "started_at": 1.0, "ended_at": 2.0,
        "attempts": json.dumps([{"item_id": "i1", "stage": "synth", "variant": "x", "started_at": 1.5,
                                 "ended_at": 1.9, "ok": 1, "error_class": None, "message": None,
                                 "request_key": "ab" * 32}]),
        "costs": json.dumps([{"item_id": "i1", "stage": "synth", "backend": "gemini", "model": "m", "usd": 0.039,
                              "input_tokens": 1, "output_tokens": 2, "request_key": "ab" * 32,
                              "created_at": 1.8}]),
    }  # fmt: skip
    cache = [{"key": "ab" * 32, "backend": "gemini", "model": "m", "path": "ab/x", "size": 3, "meta": "{}",
              "created_at": 1.8}]  # fmt: skip
    for _ in range(2):  # a driver killed between the store commit and the marker commits again
        sh.commit_engine_rows(store, "synth", "x", [row], cache)
    assert store.scalar("SELECT COUNT(*) FROM attempts WHERE stage='synth'") == 1
    assert store.scalar("SELECT SUM(usd) FROM costs") == pytest.approx(0.039)
    assert store.scalar("SELECT COUNT(*) FROM cache_index") == 1
    assert store.scalar("SELECT status FROM stage_results WHERE stage='synth'") == "done"


def test_coordinator_slots_tokens_budget_and_leases():
    async def main():
        c = Coordinator(
            Limits(concurrency=2, requests_per_minute=600), cap_usd=0.1, spent_usd=0.02, lease_s=0.3
        )
        a, b = await c.acquire_slot(), await c.acquire_slot()
        third = asyncio.ensure_future(c.acquire_slot())
        await asyncio.sleep(0.05)
        assert not third.done()  # two in flight cluster-wide
        c.release_slot(a)
        await asyncio.wait_for(third, 1)
        # A slot whose holder died comes back when its lease ends.
        fourth = asyncio.ensure_future(c.acquire_slot())
        await asyncio.wait_for(fourth, 2.5)
        del b
        t0 = time.monotonic()
        for _ in range(4):
            await c.take_token("gemini")
        assert time.monotonic() - t0 >= 0.25  # 10/s: 3 waits of 0.1 s after the first token
        r1 = await c.reserve(0.05)
        second = asyncio.ensure_future(c.reserve(0.05))  # 0.02 + 0.05 + 0.05 > 0.1: waits for r1
        await asyncio.sleep(0.05)
        assert r1 is not None and not second.done()
        c.settle(r1, 0.04)
        assert await asyncio.wait_for(second, 1) is None  # 0.06 spent: 0.05 more does not fit
        assert c.snapshot()["spent_usd"] == pytest.approx(0.04)
        return c

    c = asyncio.run(main())
    assert c.exhausted()


def test_ray_missing_says_which_extra(monkeypatch):
    from ggt.execute import ray_exec

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'ggt\[ray\]'"):
        ray_exec.connect(ExecuteConfig(executor="ray"))
