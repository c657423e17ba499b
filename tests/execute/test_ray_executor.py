"""The Ray executor on one machine (`ray.init` local, 2 CPUs): same results as local, a worker lost mid-shard,
global rate limit and budget across workers, resume after the driver is killed."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fixtures import badfiles as bf
from fixtures.procs import kill_group
from fixtures.stubs.server import Fault
from ggt.analyze.stage import analyze
from ggt.generate.stage import synth
from ggt.ingest import ingest
from ggt.qc.stage import qc
from ggt.store import Run

ray = pytest.importorskip("ray")

KEY = "AIza-ray-test-key-0000"
MODEL = "gemini-2.5-flash-image"
VARIANT = f"gemini-{MODEL}"


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    kill_file = tmp_path_factory.mktemp("ray") / "kill-after"
    # The workers' hard-exit hook; unarmed until a test writes the file.
    env = {"GGT_TEST_KILL_FILE": str(kill_file)}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": env})  # fmt: skip
    yield {"address": ray.get_runtime_context().gcs_address, "kill_file": kill_file}
    ray.shutdown()


def _photos(src: Path, n: int, size=(96, 72)) -> None:
    names = ["coffee", "chelsea", "astronaut", "rocket", "camera", "coins"]
    src.mkdir(parents=True)
    for i in range(n):
        img = bf.photo(names[i % len(names)], size=size).astype(np.float32)
        img = np.clip(img * 0.6 + 90 + 3 * i, 0, 255).astype(np.uint8)
        (src / f"p{i:02d}.png").write_bytes(bf.save(img, "PNG"))


def _run(tmp_path: Path, name: str, n: int) -> Path:
    src = tmp_path / f"src-{name}" / "haze"
    _photos(src, n)
    run = tmp_path / name
    ingest([src.parent], run)
    return run


def _rows(run: Path, stage: str) -> dict[tuple[str, str], tuple[str, dict]]:
    with Run.open(run) as r:
        return {
            (row["item_id"], row["variant"]): (row["status"], json.loads(row["result"]))
            for row in r.store.query("SELECT * FROM stage_results WHERE stage = ?", (stage,))
        }


def _gemini_sets(stub, monkeypatch, *extra: str) -> list[str]:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    for var in ("GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI"):
        monkeypatch.delenv(var, raising=False)
    return [f"synth.options.base_url={stub.url}", "synth.geometry.size=64", "synth.max_attempts=3", *extra]


RAY = ["execute.executor=ray", "execute.shard_size=2"]


def same_as_local(tmp_path: Path, name: str, sets: list[str]) -> Path:
    """Two 4-item runs through analyze, synth and QC, one local and one with `sets`: the same stage rows,
    HQ bytes and decisions, one synth attempt per item. Returns the run made with `sets`."""
    local, remote = _run(tmp_path, "local", 4), _run(tmp_path, name, 4)
    for run, extra in ((local, []), (remote, sets)):
        a = analyze(run, overrides=extra)
        s = synth(run, overrides=extra)
        q = qc(run, overrides=[*extra, "qc.report=false"])
        assert (a.analyzed, a.failed, s.done, s.failed) == (4, 0, 4, 0)
        assert q.variants["classical"].pairs == 4
    for stage in ("analyze", "synth", "qc_metrics", "qc"):
        assert _rows(local, stage) == _rows(remote, stage), stage
    hq = sorted((local / "hq" / "classical").iterdir())
    assert len(hq) == 4 and sorted((remote / "hq" / "classical").iterdir()) == [
        remote / "hq" / "classical" / f.name for f in hq
    ]
    for f in hq:
        assert f.read_bytes() == (remote / "hq" / "classical" / f.name).read_bytes()
    with Run.open(local) as a, Run.open(remote) as b:
        q = "SELECT item_id, variant, reviewer, decision, reasons FROM decisions ORDER BY item_id"
        assert [tuple(x) for x in a.store.query(q)] == [tuple(x) for x in b.store.query(q)]
        # One attempt per item and stage: the executor's commit and the stage's loop never both insert.
        assert b.store.scalar("SELECT COUNT(*) FROM attempts WHERE stage='synth'") == 4
    return remote


def test_local_and_ray_give_the_same_items_files_and_decisions(ray_cluster, tmp_path):
    remote = same_as_local(tmp_path, "ray", RAY)
    shards = remote / "shards" / "synth" / "classical"
    assert len(list(shards.iterdir())) == 2  # 4 items, 2 per shard
    assert all((d / "committed").exists() for d in shards.iterdir())
    # A rerun has nothing to do: every shard's items are done.
    assert synth(remote, overrides=RAY).planned == 0


def synth_killing_one_worker(kill: Path, run: Path, sets: list[str], stub) -> None:
    """Synth 6 items in shards of 3, one shard at a time (so the calls in flight at the kill are that
    worker's alone), the first worker to settle 2 items exiting hard after the stub was paid for them."""
    kill.write_text("2")
    try:
        s = synth(run, generator="gemini", model=MODEL, overrides=sets)
    finally:
        fired = Path(str(kill) + ".fired")
        assert fired.exists() and not kill.exists()
        fired.unlink()
    assert (s.done, s.failed, s.pending) == (6, 0, 0)
    # The retry found the dead worker's two answers in the shared cache: neither was asked for again. One
    # call at a time, so the worker may have sent its third request when it died (the gate opens once an
    # answer is cached, before that item's HQ is written); that call's answer was lost with it and is the
    # only one that may be paid twice. A cache the retry could not see would repeat three.
    bodies = [r.body_sha256 for r in stub.requests if r.route == "gemini.generate"]
    counts = stub.counts_by_body("gemini.generate")
    assert len(counts) == 6 and counts[bodies[0]] == counts[bodies[1]] == 1
    assert [b for b, n in counts.items() if n > 1] in ([], [bodies[2]])
    assert len(bodies) == 6 + (counts[bodies[2]] - 1)
    with Run.open(run) as r:
        assert r.store.scalar("SELECT COUNT(*) FROM costs WHERE stage='synth'") == 6  # the dead worker's too
        assert r.store.scalar("SELECT COUNT(*) FROM stage_results WHERE stage='synth' AND status='done'") == 6
    assert len(list((run / "hq" / VARIANT).glob("*.png"))) == 6
    assert not list((run / "hq" / VARIANT).glob(".*"))  # no temp files left behind


def test_worker_killed_mid_shard_is_retried_without_paying_twice(
    ray_cluster, tmp_path, stub_server, monkeypatch
):
    run = _run(tmp_path, "kill", 6)
    analyze(run)
    sets = _gemini_sets(stub_server, monkeypatch, "synth.concurrency=1", "execute.shard_size=3",
                        "execute.max_in_flight=1", "execute.executor=ray")  # fmt: skip
    synth_killing_one_worker(ray_cluster["kill_file"], run, sets, stub_server)
    with Run.open(run) as r:
        assert r.store.scalar("SELECT COUNT(*) FROM cache_index") == 6


def test_global_rate_limit_and_budget_hold_across_workers(ray_cluster, tmp_path, stub_server, monkeypatch):
    run = _run(tmp_path, "rate", 12)
    analyze(run)
    # 6 shards of 2, two running at once; 240/min cluster-wide = 4 requests/s, where each worker alone would
    # go 4/s (8/s for two). Tokens are granted at the actor, so RPC jitter to the stub shows as a little more.
    sets = _gemini_sets(stub_server, monkeypatch, "synth.requests_per_minute=240", *RAY)
    seen = []
    s = synth(run, generator="gemini", model=MODEL, overrides=sets,
              progress=lambda done, total, spent_usd=None: seen.append((done, total, spent_usd)))  # fmt: skip
    assert s.done == 12
    # The driver's one progress bar aggregates every worker's items and money.
    assert seen[-1] == (12, 12, pytest.approx(12 * 0.039)) and len(seen) > 2
    times = sorted(r.received_at for r in stub_server.requests if r.route == "gemini.generate")
    assert len(times) == 12
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert rate <= 4 * 1.25, rate
    # The budget is one for the cluster: $0.10 buys two $0.039 images, however many workers ask.
    run2 = _run(tmp_path, "budget", 6)
    analyze(run2)
    before = stub_server.count("gemini.generate")
    capped = synth(run2, generator="gemini", model=MODEL, budget=0.10, overrides=sets)
    assert (capped.done, capped.pending, capped.failed) == (2, 4, 0) and capped.budget_exhausted
    assert stub_server.count("gemini.generate") - before == 2
    with Run.open(run2) as r:
        assert r.store.scalar("SELECT SUM(usd) FROM costs WHERE stage='synth'") <= 0.10


def test_driver_killed_then_rerun_commits_finished_shards_and_completes(ray_cluster, tmp_path, stub_server):
    run = _run(tmp_path, "driver", 12)
    analyze(run)
    env = {**os.environ, "GEMINI_API_KEY": KEY}
    for var in (
        "GOOGLE_API_KEY",
        "GOOGLE_GEMINI_BASE_URL",
        "GOOGLE_GENAI_USE_VERTEXAI",
        "GGT_TEST_KILL_FILE",
    ):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "ggt.cli", "synth", "--run", str(run), "--generator", "gemini", "--model", MODEL,
           "--concurrency", "2", "--json", "--executor", "ray", "--ray-address", ray_cluster["address"],
           "--shard-size", "2", "--set", f"synth.options.base_url={stub_server.url}",
           "--set", "synth.geometry.size=64"]  # fmt: skip
    stub_server.set_fault_rate(1.0, [Fault("slow", delay_s=0.3)])
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    shards = run / "shards" / "synth" / VARIANT
    deadline = time.time() + 90
    while time.time() < deadline and len(list(shards.glob("*/done"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    kill_group(proc)
    first = stub_server.count("gemini.generate")
    assert 0 < first < 12
    stub_server.clear_faults()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    with Run.open(run) as r:
        assert (
            r.store.scalar("SELECT COUNT(*) FROM stage_results WHERE stage='synth' AND status='done'") == 12
        )
        assert r.store.scalar("SELECT COUNT(DISTINCT item_id) FROM costs WHERE stage='synth'") == 12
    # Only calls in flight at the kill (whose answers never came back) may be sent again: at most the
    # concurrency per running shard.
    repeats = sum(n - 1 for n in stub_server.counts_by_body("gemini.generate").values())
    assert repeats <= 4
    assert len(list((run / "hq" / VARIANT).glob("*.png"))) == 12
    calls = stub_server.count("gemini.generate")
    assert all((d / "committed").exists() for d in shards.iterdir() if (d / "done").exists())
    # A driver killed between its last shard's store commit and the marker: nothing is pending, and the
    # next run still sets the marker (else that shard stays "finished, not committed" for good).
    last = next(d for d in shards.iterdir() if (d / "committed").exists())
    (last / "committed").unlink()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (last / "committed").exists()
    assert stub_server.count("gemini.generate") - calls == 0
