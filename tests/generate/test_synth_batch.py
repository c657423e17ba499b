"""`ggt synth --batch`: Gemini and OpenAI Batch APIs through the engine, against the stub."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_synth_stage import KEY, _analysed_run, _gemini

from fixtures.procs import kill_group
from fixtures.stubs.server import StubServer
from ggt.config import ConfigError
from ggt.generate.stage import synth
from ggt.imaging import read_image
from ggt.store import Run

GEMINI = "gemini-2.5-flash-image"
HALF = 0.039 * 0.5  # the shipped per-image price, at the batch discount
FAST = {"batch_poll_s": 0.01, "batch_max_poll_s": 0.05}


def _items_sent(stub: StubServer, route: str) -> list[int]:
    """How many requests each batch job carried, in creation order."""
    sizes, current = [], None
    for r in stub.requests:
        if r.route in ("gemini.batch_item", "openai.batch_item"):
            job = r.path.split("#")[0]
            if job != current:
                sizes.append(0)
                current = job
            sizes[-1] += 1
    assert len(sizes) == stub.count(route)
    return sizes


def test_gemini_batch_runs_through_the_engine_and_resumes_only_what_is_missing(
    tmp_path, stub_server, monkeypatch
):
    run = _analysed_run(tmp_path, n=5)
    overrides = _gemini(monkeypatch, stub_server)
    stub_server.push_fault("safety", "corrupt_image")  # the first two items of the job
    statuses: list[str] = []

    def progress(done, total, spent_usd=None, status=None):
        if status:
            statuses.append(status)

    s = synth(
        run, generator="gemini", model=GEMINI, overrides=overrides, batch=True, progress=progress, **FAST
    )
    assert (s.done, s.failed, s.pending, s.batch) == (3, 2, 0, True)
    assert s.failures == {"safety_block": 1, "bad_output": 1}
    assert stub_server.count("gemini.batch_create") == 1 and stub_server.count("gemini.generate") == 0
    assert len(s.batch_jobs) == 1 and any("JOB_STATE_RUNNING" in t for t in statuses)
    # Half price, per image, as a direct call prices it: the three answers (the undecodable one and the
    # blocked prompt carry only token counts, which a per-image price does not charge).
    assert s.spent_usd == pytest.approx(3 * HALF)
    with Run.open(run) as r:
        assert r.store.scalar("SELECT SUM(usd) FROM costs WHERE stage='synth'") == pytest.approx(3 * HALF)
        assert r.store.scalar("SELECT COUNT(*) FROM costs WHERE stage='synth'") == 5
        rows = r.store.query(
            "SELECT s.result, i.width, i.height FROM stage_results s JOIN items i ON i.id = s.item_id"
            " WHERE s.stage='synth' AND s.status='done'"
        )
        for row in rows:
            res = json.loads(row[0])
            assert read_image(run / res["hq_path"]).shape == (row["height"], row["width"], 3)
        assert r.store.scalar("SELECT COUNT(*) FROM batch_jobs WHERE state='collected'") == 1

    # The rerun submits only the two failed items, in one new job.
    again = synth(run, generator="gemini", model=GEMINI, overrides=overrides, batch=True, **FAST)
    assert (again.done, again.failed, again.already_done) == (2, 0, 3)
    assert _items_sent(stub_server, "gemini.batch_create") == [5, 2]

    # Answers already in the cache are never put in a batch.
    with Run.open(run) as r, r.store.transaction() as conn:
        conn.execute("DELETE FROM stage_results WHERE stage='synth' AND item_id IN"
                     " (SELECT item_id FROM stage_results WHERE stage='synth' LIMIT 2)")  # fmt: skip
    third = synth(run, generator="gemini", model=GEMINI, overrides=overrides, batch=True, **FAST)
    assert (third.done, third.cache_hits, third.calls) == (2, 2, 0)
    assert stub_server.count("gemini.batch_create") == 2


def _openai(monkeypatch, stub):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-synth-batch-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return [f"synth.options.base_url={stub.openai_url}", "synth.geometry.size=96",
            "synth.prices.openai/gpt-image-x.per_image=0.04"]  # fmt: skip


def test_openai_batch_expired_keeps_its_answers_and_the_rest_fail_with_a_reason(
    tmp_path, stub_server, monkeypatch
):
    run = _analysed_run(tmp_path, n=4)
    overrides = _openai(monkeypatch, stub_server)
    stub_server.batch_pending_polls = 10_000  # runs until the test expires it

    def expire() -> None:
        deadline = time.time() + 30
        while time.time() < deadline and not stub_server.batches:
            time.sleep(0.01)
        stub_server.set_batch_state(next(iter(stub_server.batches)), "expired", answered=2)

    t = threading.Thread(target=expire)
    t.start()
    s = synth(run, generator="openai", model="gpt-image-x", overrides=overrides, batch=True, **FAST)
    t.join()
    assert (s.done, s.failed) == (2, 2) and s.failures == {"timeout": 2}
    assert s.spent_usd == pytest.approx(2 * 0.04 * 0.5)
    with Run.open(run) as r:
        messages = [m for (m,) in r.store.query("SELECT message FROM stage_results WHERE status='failed'")]
    assert all("batch_expired" in m for m in messages)
    stub_server.batch_pending_polls = 0
    again = synth(run, generator="openai", model="gpt-image-x", overrides=overrides, batch=True, **FAST)
    assert (again.done, again.already_done) == (2, 2)
    assert _items_sent(stub_server, "openai.batches_create") == [4, 2]
    assert stub_server.count("openai.files_create") == 2 and stub_server.count("openai.images_edit") == 0


def test_batch_budget_dry_run_and_refusals(tmp_path, stub_server, monkeypatch):
    run = _analysed_run(tmp_path, n=5)
    overrides = _gemini(monkeypatch, stub_server)
    dry = synth(run, generator="gemini", model=GEMINI, overrides=overrides, batch=True, dry_run=True)
    assert dry.estimated_usd == pytest.approx(5 * HALF) and stub_server.count() == 0
    capped = synth(
        run, generator="gemini", model=GEMINI, overrides=overrides, batch=True, budget=0.045, **FAST
    )
    assert (capped.done, capped.pending, capped.budget_exhausted) == (2, 3, True)
    assert _items_sent(stub_server, "gemini.batch_create") == [2]
    with pytest.raises(ConfigError, match="--batch works with gemini and openai"):
        synth(run, generator="classical", batch=True)
    with pytest.raises(ConfigError, match="--batch works with"):
        synth(run, generator="openai-compatible", model="m", batch=True, overrides=overrides)


def test_batch_size_splits_jobs(tmp_path, stub_server, monkeypatch):
    run = _analysed_run(tmp_path, n=5)
    overrides = _gemini(monkeypatch, stub_server)
    s = synth(run, generator="gemini", model=GEMINI, overrides=overrides, batch=True, batch_size=2, **FAST)
    assert s.done == 5 and len(s.batch_jobs) == 3
    assert _items_sent(stub_server, "gemini.batch_create") == [2, 2, 1]


def test_kill_9_while_waiting_then_rerun_collects_the_same_batch(tmp_path, stub_server):
    run = _analysed_run(tmp_path, n=6)
    env = {**os.environ, "GEMINI_API_KEY": KEY}
    for var in ("GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI"):
        env.pop(var, None)
    code = (
        "import sys; from pathlib import Path; from ggt.generate.stage import synth; "
        f"s = synth(Path({str(run)!r}), generator='gemini', model={GEMINI!r}, batch=True, batch_poll_s=0.05, "
        f"batch_max_poll_s=0.05, overrides=['synth.options.base_url={stub_server.url}', 'synth.geometry.size=96']); "
        "print(s.model_dump_json()); sys.exit(0 if s.done == 6 else 1)"
    )
    stub_server.batch_pending_polls = 10_000  # the job stays RUNNING until the test says otherwise
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline and stub_server.count("gemini.batch_get") < 3:
        time.sleep(0.02)
    kill_group(proc)
    assert stub_server.count("gemini.batch_create") == 1
    with Run.open(run) as r:
        assert (
            r.store.scalar("SELECT COUNT(*) FROM batch_jobs WHERE state='submitted' AND name IS NOT NULL")
            == 1
        )
        assert r.store.scalar("SELECT COUNT(*) FROM stage_results WHERE stage='synth'") == 0
    stub_server.set_batch_state(
        next(iter(stub_server.batches)), "BATCH_STATE_RUNNING"
    )  # done at the next look
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert stub_server.count("gemini.batch_create") == 1  # resumed, not submitted again
    assert stub_server.count("gemini.batch_item") == 6
    with Run.open(run) as r:
        assert r.store.scalar("SELECT COUNT(*) FROM stage_results WHERE stage='synth' AND status='done'") == 6
        assert r.store.scalar("SELECT SUM(usd) FROM costs WHERE stage='synth'") == pytest.approx(6 * HALF)
        assert r.store.scalar("SELECT state FROM batch_jobs") == "collected"


def test_cli_batch_dry_run_reports_the_batch_price(tmp_path, stub_server, monkeypatch):
    from typer.testing import CliRunner

    from ggt.cli import app

    run = _analysed_run(tmp_path, n=2)
    sets = [a for o in _gemini(monkeypatch, stub_server) for a in ("--set", o)]
    res = CliRunner().invoke(app, ["synth", "--run", str(run), "--generator", "gemini", "--model", GEMINI,
                                   "--batch", "--dry-run", "--json", *sets])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["batch"] is True and out["estimated_usd"] == pytest.approx(2 * HALF)
    assert stub_server.count() == 0


# ----------------------------------------------------------------------------------------------------------
# Gemini file batches (a JSONL upload per job): end to end, and the crash windows around submission

FILE_MODE = "synth.options.batch_mode=file"


class Crash(Exception):
    """Stands in for the process dying at a chosen point (the ledger keeps what it had written)."""


def _ledger(run) -> list[dict]:
    with Run.open(run) as r:
        rows = r.store.query("SELECT name, display_name, state, detail FROM batch_jobs ORDER BY id")
        return [{**dict(row), "detail": json.loads(row["detail"])} for row in rows]


def test_cli_gemini_file_batch_end_to_end(tmp_path, stub_server, monkeypatch):
    from typer.testing import CliRunner

    from ggt.cli import app
    from ggt.generate.gemini import GeminiBatch

    run = _analysed_run(tmp_path, n=4)
    sets = [a for o in [*_gemini(monkeypatch, stub_server), FILE_MODE] for a in ("--set", o)]
    stub_server.push_fault("safety")  # the job's first line
    submitted: list = []
    real_submit = GeminiBatch.submit_job

    async def spy(self, requests, **kwargs):
        submitted.extend(requests)
        return await real_submit(self, requests, **kwargs)

    monkeypatch.setattr(GeminiBatch, "submit_job", spy)
    stub_server.batch_pending_polls = 0  # done at the first look: the CLI polls every 30 s
    res = CliRunner().invoke(app, ["synth", "--run", str(run), "--generator", "gemini", "--model", GEMINI,
                                   "--batch", "--json", *sets])  # fmt: skip
    assert res.exit_code == 1, res.output  # some items failed
    out = json.loads(res.stdout)
    assert (out["done"], out["failed"], out["batch"]) == (3, 1, True)
    assert out["failures"] == {"safety_block": 1} and out["spent_usd"] == pytest.approx(3 * HALF)
    assert stub_server.uploads == 1 and stub_server.count("gemini.batch_create") == 1
    assert stub_server.count("gemini.generate") == 0 and stub_server.count("gemini.files_download") == 1
    [job] = _ledger(run)
    assert job["state"] == "collected" and job["detail"] == {
        "mode": "file",
        "input_file": "files/stub-upload-1",
    }
    assert stub_server.deleted_files == ["files/stub-upload-1"]  # the input, once its answers were read
    # Every line of the uploaded file was one item's request, answered as a direct call would be.
    assert _items_sent(stub_server, "gemini.batch_create") == [4]
    # The job's images waited on disk, not in memory, and the spool is gone once the job was submitted.
    assert len(submitted) == 4 and all(isinstance(r.data, Path) for r in submitted)
    assert not any(r.data.exists() for r in submitted) and not submitted[0].data.parent.exists()
    with Run.open(run) as r:
        rows = r.store.query(
            "SELECT s.result, i.width, i.height FROM stage_results s JOIN items i ON i.id = s.item_id"
            " WHERE s.stage='synth' AND s.status='done'"
        )
        assert len(rows) == 3
        for row in rows:
            hq = read_image(run / json.loads(row["result"])["hq_path"])
            assert hq.shape == (row["height"], row["width"], 3)


def test_file_batch_crash_after_upload_before_create_submits_again(tmp_path, stub_server, monkeypatch):
    from ggt.generate.gemini import GeminiBatch

    run = _analysed_run(tmp_path, n=3)
    overrides = [*_gemini(monkeypatch, stub_server), FILE_MODE]

    async def crash(self, src, display_name):
        raise Crash("killed after the upload")

    with monkeypatch.context() as m:
        m.setattr(GeminiBatch, "_create", crash)
        with pytest.raises(Crash):
            synth(run, generator="gemini", model=GEMINI, overrides=overrides, batch=True, **FAST)
    assert stub_server.uploads == 1 and stub_server.count("gemini.batch_create") == 0
    [row] = _ledger(run)
    assert (row["state"], row["name"]) == ("submitting", None)

    # No job was created, so nothing was paid: the rerun uploads again and creates the one job.
    s = synth(run, generator="gemini", model=GEMINI, overrides=overrides, batch=True, **FAST)
    assert (s.done, s.failed) == (3, 0)
    assert any(
        "were being submitted when an earlier run stopped" in n and row["display_name"] in n for n in s.notes
    )
    assert stub_server.uploads == 2 and stub_server.count("gemini.batch_create") == 1
    assert [r["state"] for r in _ledger(run)] == ["collected"]


def _crash_before_storing(self, row_id, submission):
    raise Crash("killed before the name was stored")


def test_file_batch_crash_windows_around_storing_the_job_name(tmp_path, stub_server, monkeypatch):
    from ggt.generate.batch import BatchLedger
    from ggt.generate.gemini import GeminiBatch

    run = _analysed_run(tmp_path, n=3)
    overrides = [*_gemini(monkeypatch, stub_server), FILE_MODE]

    # 1. Killed after the vendor created the job, before its name reached the ledger. The ledger holds the
    # display name it gave the job before creating it.
    with monkeypatch.context() as m:
        m.setattr(BatchLedger, "submitted", _crash_before_storing)
        with pytest.raises(Crash):
            synth(run, generator="gemini", model=GEMINI, overrides=overrides, batch=True, **FAST)
    [row] = _ledger(run)
    assert (row["state"], row["name"]) == ("submitting", None)
    assert stub_server.count("gemini.batch_create") == 1 and stub_server.uploads == 1
    assert stub_server.batches["batches/stub-1"].display_name == row["display_name"]

    # 2. The rerun finds that job in the vendor's list by its display name and adopts it: no second upload
    # or job. Killed again while waiting, the next rerun resumes it from the ledger.
    stub_server.batch_pending_polls = 10_000

    async def crash_while_waiting(self, name):
        raise Crash("killed while waiting")

    with monkeypatch.context() as m:
        m.setattr(GeminiBatch, "status", crash_while_waiting)
        with pytest.raises(Crash):
            synth(run, generator="gemini", model=GEMINI, overrides=overrides, batch=True, **FAST)
    assert stub_server.count("gemini.batch_list") == 1
    assert stub_server.count("gemini.batch_create") == 1 and stub_server.uploads == 1
    [stored] = _ledger(run)
    assert (stored["state"], stored["name"], stored["detail"]) == (
        "submitted",
        "batches/stub-1",
        {"adopted": True},
    )

    stub_server.set_batch_state("batches/stub-1", "BATCH_STATE_RUNNING")  # done at the next look
    s = synth(run, generator="gemini", model=GEMINI, overrides=overrides, batch=True, **FAST)
    assert (s.done, s.failed, s.batch_jobs) == (3, 0, ["batches/stub-1"])
    assert stub_server.count("gemini.batch_create") == 1 and stub_server.count("gemini.batch_item") == 3
    assert [r["state"] for r in _ledger(run)] == ["collected"]


def test_openai_job_created_before_a_stop_is_adopted_and_an_unreachable_list_pays_nothing(
    tmp_path, stub_server, monkeypatch
):
    from ggt.generate.batch import BatchLedger

    run = _analysed_run(tmp_path, n=3)
    overrides = _openai(monkeypatch, stub_server)
    with monkeypatch.context() as m:
        m.setattr(BatchLedger, "submitted", _crash_before_storing)
        with pytest.raises(Crash):
            synth(run, generator="openai", model="gpt-image-x", overrides=overrides, batch=True, **FAST)
    assert stub_server.count("openai.batches_create") == 1
    # The vendor's list cannot be read: whether the job exists is unknown, so its items wait (not paid for
    # a second time) and the row stays for the next run.
    stub_server.push_fault("server_error", route="openai.batches_list")
    stub_server.push_fault("server_error", route="openai.batches_list")
    stub_server.push_fault("server_error", route="openai.batches_list")
    waiting = synth(run, generator="openai", model="gpt-image-x", overrides=overrides, batch=True, **FAST)
    assert (waiting.done, waiting.pending) == (0, 3)
    assert any("could not check whether batch" in n for n in waiting.notes)
    assert stub_server.count("openai.batches_create") == 1
    assert [r["state"] for r in _ledger(run)] == ["submitting"]
    stub_server.clear_faults()
    s = synth(run, generator="openai", model="gpt-image-x", overrides=overrides, batch=True, **FAST)
    assert (s.done, s.failed) == (3, 0) and any("adopted batch" in n for n in s.notes)
    assert stub_server.count("openai.batches_create") == 1 and stub_server.count("openai.files_create") == 1
    [row] = _ledger(run)
    assert row["state"] == "collected" and row["detail"]["input_file_id"] == "file-stub1"


@pytest.mark.slow
def test_auto_mode_sends_a_job_over_20_mb_as_a_file(tmp_path, stub_server, monkeypatch):
    # 1024x1024 inputs (about 1.2 MB each once base64-encoded): twenty no longer fit one inline request.
    run = _analysed_run(tmp_path, n=20, size=(1024, 768))
    overrides = [*_gemini(monkeypatch, stub_server), "synth.geometry.size=1024"]
    stub_server.decode_images = False
    s = synth(run, generator="gemini", model=GEMINI, overrides=overrides, batch=True, **FAST)
    assert (s.done, s.failed) == (20, 0)
    assert stub_server.uploads == 1 and stub_server.count("gemini.batch_create") == 1
    upload = stub_server.last("gemini.files_upload_start")
    assert int(upload.header("x-goog-upload-header-content-length")) > 20_000_000
    assert _ledger(run)[0]["detail"]["mode"] == "file"


def test_a_jobs_answers_are_settled_as_they_are_read_not_all_held(tmp_path, stub_server, monkeypatch):
    """Each answer reaches the engine (cached, HQ written) before the next one is read from the results
    file: a 10,000-image job's answers are never all in memory at once."""
    import asyncio

    from ggt.engine import RequestCache
    from ggt.generate.gemini import GeminiBatch

    run = _analysed_run(tmp_path, n=4)
    overrides = [*_gemini(monkeypatch, stub_server), FILE_MODE]
    stub_server.batch_pending_polls = 0
    cache = RequestCache(run / "cache")
    real_stream = GeminiBatch.stream_results
    read: list[str] = []

    async def one_at_a_time(self, submission, keys):
        async for result in real_stream(self, submission, keys):
            if read:  # the previous answer must be settled before this one is handed over
                for _ in range(500):
                    if cache.path(read[-1]).exists():
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError("the previous answer was not settled while this one waited")
            read.append(result.key)
            yield result

    monkeypatch.setattr(GeminiBatch, "stream_results", one_at_a_time)
    s = synth(run, generator="gemini", model=GEMINI, overrides=overrides, batch=True, batch_poll_s=0.01)
    assert (s.done, s.failed) == (4, 0) and len(read) == 4
