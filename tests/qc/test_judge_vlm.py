"""The VLM judge through the loopback Gemini/OpenAI stub: request content, parsing, faults, retries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qc_helpers import copy_run, make_run, qc_rows

from fixtures.procs import kill_group
from fixtures.stubs import StubServer
from fixtures.stubs.server import Fault
from ggt.qc.judge import CHECKLIST
from ggt.store import Run

KEEP = {
    "scores": dict.fromkeys(CHECKLIST, 0.9),
    "verdict": "keep",
    "failure_mode": "none",
    "explanation": "same scene, rain removed",
}
REJECT = {**KEEP, "scores": {**KEEP["scores"], "no_invention": 0.1}, "verdict": "reject",
          "failure_mode": "invented_content"}  # fmt: skip


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "OPENAI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test-gemini-key-0123456789")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai-key-0123456789")


@pytest.fixture(scope="module")
def measured_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Two pairs with metrics already stored (heuristic qc run), so each test only pays for judging."""
    from ggt.qc.stage import qc

    root = tmp_path_factory.mktemp("vlmrun")
    ids = make_run(root, {"astronaut": "good", "chelsea": "good"})
    qc(root / "run", overrides=["qc.report=false", "qc.workers=2"])
    return root / "run", ids


def run_judge(run: Path, stub: StubServer, backend: str = "gemini", *extra: str):
    from ggt.qc.stage import qc

    url = stub.url if backend == "gemini" else stub.openai_url
    return qc(
        run,
        judge=backend,
        overrides=[
            "qc.report=false", "qc.concurrency=1", "qc.max_attempts=3", "qc.retry_base_s=0", "qc.retry_max_s=0",
            "qc.judge_options.model=judge-test", f"qc.judge_options.base_url={url}", "qc.judge_options.timeout_s=5",
            *extra,
        ],
    )  # fmt: skip


def judge_rows(run: Path, backend: str = "gemini") -> dict[str, dict]:
    return qc_rows(run, "qc_judge", f"classical:{backend}-judge-test")


def test_request_carries_both_images_and_numbers(
    measured_run: tuple[Path, dict[str, str]], tmp_path: Path, stub_server: StubServer
) -> None:
    run = copy_run(measured_run[0], tmp_path / "run")
    stub_server.default_text = json.dumps(KEEP)
    s = run_judge(run, stub_server)
    v = s.variants["classical"]
    assert (v.judged, v.judge_failed, v.metrics_cached) == (2, 0, 2)
    assert stub_server.count("gemini.generate") == 2
    req = stub_server.last("gemini.generate")
    assert len(req.images) == 2 and all(im.array is not None for im in req.images)
    assert req.images[0].size == (256, 192) and req.images[1].size == (256, 192)
    text = "\n".join(req.texts)
    assert "misalign.shift_px =" in text and "local_mismatch.worst =" in text and "no_invention" in text
    rows = judge_rows(run)
    assert all(r["status"] == "done" and r["answer"]["verdict"] == "keep" for r in rows.values())
    decisions = qc_rows(run)
    assert all(d["judge"]["explanation"] == "same scene, rain removed" for d in decisions.values())
    # Resumable: a second run asks nothing.
    stub_server.clear()
    assert run_judge(run, stub_server).variants["classical"].judge_cached == 2
    assert stub_server.count() == 0


def test_judge_reject_sends_pair_to_review(
    measured_run: tuple[Path, dict[str, str]], tmp_path: Path, stub_server: StubServer
) -> None:
    run = copy_run(measured_run[0], tmp_path / "run")
    stub_server.default_text = json.dumps(REJECT)
    run_judge(run, stub_server, "openai-compatible")
    assert stub_server.count("openai.chat") == 2
    for d in qc_rows(run).values():
        assert d["verdict"] == "review" and "judge_rejects" in d["reasons"]
        assert d["judge"]["failure_mode"] == "invented_content"


def test_malformed_json_is_recorded_as_failed(
    measured_run: tuple[Path, dict[str, str]], tmp_path: Path, stub_server: StubServer
) -> None:
    run = copy_run(measured_run[0], tmp_path / "run")
    stub_server.default_text = json.dumps(KEEP)
    stub_server.push_fault("malformed_json", "malformed_json")  # the answer and its corrective retry
    s = run_judge(run, stub_server)
    assert s.variants["classical"].judge_failed == 1
    failed = [r for r in judge_rows(run).values() if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["reason"] == "malformed_json"
    verdicts = sorted((d["verdict"], (d["reasons"] or [""])[-1]) for d in qc_rows(run).values())
    assert ("review", "judge_failed:malformed_json") in verdicts


def test_safety_block_is_permanent(
    measured_run: tuple[Path, dict[str, str]], tmp_path: Path, stub_server: StubServer
) -> None:
    run = copy_run(measured_run[0], tmp_path / "run")
    stub_server.default_text = json.dumps(KEEP)
    stub_server.push_fault("safety")
    s = run_judge(run, stub_server)
    assert s.variants["classical"].judge_failed == 1 and s.variants["classical"].judge_retries == 0
    assert stub_server.count("gemini.generate") == 2  # no retry of the blocked pair
    assert sorted(r["reason"] or "" for r in judge_rows(run).values()) == ["", "safety_block"]


def test_rate_limit_is_retried_then_given_up(
    measured_run: tuple[Path, dict[str, str]], tmp_path: Path, stub_server: StubServer
) -> None:
    run = copy_run(measured_run[0], tmp_path / "run")
    stub_server.default_text = json.dumps(KEEP)
    stub_server.push_fault("rate_limit", "rate_limit")
    s = run_judge(run, stub_server)
    assert s.variants["classical"].judge_retries == 2 and s.variants["classical"].judge_failed == 0
    assert stub_server.count("gemini.generate") == 4

    run2 = copy_run(measured_run[0], tmp_path / "run2")
    stub_server.clear()
    stub_server.push_fault("rate_limit", "rate_limit", "rate_limit")
    s = run_judge(run2, stub_server, "gemini", "qc.max_attempts=2")
    v = s.variants["classical"]
    assert v.judge_failed == 1 and v.judged == 1 and v.judge_retries == 2
    failed = [r for r in judge_rows(run2).values() if r["status"] == "failed"]
    assert failed[0]["reason"] == "rate_limited" and "2 attempts" in failed[0]["message"]
    # The failed pair is asked again by the next run (it is not done), and this time it succeeds.
    s = run_judge(run2, stub_server)
    assert s.variants["classical"].judged == 1 and s.variants["classical"].judge_cached == 1


def test_judge_calls_go_through_the_request_cache_with_costs(
    measured_run: tuple[Path, dict[str, str]], tmp_path: Path, stub_server: StubServer
) -> None:
    run = copy_run(measured_run[0], tmp_path / "run")
    stub_server.default_text = json.dumps(KEEP)
    # A price for the judge model in the run's table turns the stub's usage (123 in, 45 out) into dollars.
    price = ["synth.prices.gemini/judge-test.per_million_input_tokens=1000",
             "synth.prices.gemini/judge-test.per_million_output_tokens=2000"]  # fmt: skip
    v = run_judge(run, stub_server, "gemini", *price).variants["classical"]
    assert (v.judged, v.judge_calls, v.judge_cache_hits) == (2, 2, 0)
    assert v.judge_spent_usd == pytest.approx(2 * (123 * 1e-3 + 45 * 2e-3))
    with Run.open(run) as r:
        costs = r.store.query(
            "SELECT backend, model, usd, input_tokens, output_tokens FROM costs WHERE stage='qc_judge'"
        )
        assert [(c["backend"], c["model"], c["input_tokens"], c["output_tokens"]) for c in costs] == [
            ("gemini", "judge-test", 123, 45)
        ] * 2
        assert sum(c["usd"] for c in costs) == pytest.approx(v.judge_spent_usd)
        assert (
            r.store.scalar(
                "SELECT COUNT(*) FROM attempts WHERE stage='qc_judge' AND variant LIKE '%gemini%' AND ok=1"
            )
            == 2
        )
        # Losing the judge's rows (or a fresh stage) does not lose the answers: they are in the cache.
        with r.store.transaction() as conn:
            conn.execute("DELETE FROM stage_results WHERE stage='qc_judge'")
    stub_server.clear()
    v = run_judge(run, stub_server, "gemini", *price).variants["classical"]
    assert stub_server.count() == 0 and (v.judged, v.judge_calls, v.judge_cache_hits) == (2, 0, 2)
    assert all(d["judge"]["explanation"] == "same scene, rain removed" for d in qc_rows(run).values())
    with Run.open(run) as r:
        assert r.store.scalar("SELECT COUNT(*) FROM costs WHERE stage='qc_judge'") == 2  # nothing paid again
    # Another model is another request: it is asked.
    v = run_judge(run, stub_server, "gemini", "qc.judge_options.model=judge-other").variants["classical"]
    assert v.judge_calls == 2 and stub_server.count("gemini.generate", model="judge-other") == 2


def test_kill_9_mid_judge_then_rerun_repeats_no_paid_call(tmp_path: Path, stub_server: StubServer) -> None:
    from ggt.qc.stage import qc

    names = ["astronaut", "chelsea", "coffee", "rocket", "camera", "brick", "grass", "gravel"]
    make_run(tmp_path, dict.fromkeys(names, "good"))
    run = tmp_path / "run"
    qc(run, overrides=["qc.report=false", "qc.workers=1"])  # metrics first: the kill lands in the judging
    env = {**os.environ, "GEMINI_API_KEY": "AIza-test-gemini-key-0123456789"}
    for var in ("GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "ggt.cli", "qc", "--run", str(run), "--judge", "gemini", "--json",
           "--set", "qc.report=false", "--set", "qc.concurrency=2", "--set", "qc.judge_options.model=judge-test",
           "--set", f"qc.judge_options.base_url={stub_server.url}"]  # fmt: skip
    stub_server.default_text = json.dumps(KEEP)
    stub_server.set_fault_rate(1.0, [Fault("slow", delay_s=0.3)])
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 60
    while time.time() < deadline and stub_server.count("gemini.generate") < 4:
        time.sleep(0.02)
    kill_group(proc)
    first = stub_server.count("gemini.generate")
    assert 0 < first < len(names)
    stub_server.clear_faults()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    with Run.open(run) as r:
        done = "SELECT COUNT(*) FROM stage_results WHERE stage='qc_judge' AND variant LIKE '%gemini%' AND status='done'"
        assert r.store.scalar(done) == len(names)
        assert r.store.scalar("SELECT COUNT(*) FROM costs WHERE stage='qc_judge'") == len(names)
    # Only a request the kill caught in flight (its answer never came back) is sent again: at most the
    # concurrency, 2. Every answer that reached ggt was cached and never paid twice.
    repeats = sum(n - 1 for n in stub_server.counts_by_body("gemini.generate").values())
    assert repeats <= 2
    # A third run asks nothing at all.
    stub_server.clear()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert stub_server.count() == 0
