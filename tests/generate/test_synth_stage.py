"""`ggt synth` over a run: classical on the pool; an API generator through the engine and the stub."""

import json
import os
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
from typer.testing import CliRunner

from fixtures import badfiles as bf
from fixtures.procs import die_mid_write, kill_group
from fixtures.runs import set_analysis
from fixtures.stubs.server import Fault
from ggt.cli import app
from ggt.config import ConfigError
from ggt.engine import RequestCache
from ggt.generate.stage import synth
from ggt.imaging import read_image
from ggt.ingest import ingest
from ggt.store import Run

runner = CliRunner()
KEY = "AIza-synth-test-key-0000"


def _analysed_run(tmp_path, n=3, size=(160, 120)):
    """A run whose items carry analysis rows (a fixed report and prompt), so synth tests do not depend
    on the analyzer's judgement."""
    src = tmp_path / "src" / "haze"
    src.mkdir(parents=True)
    names = ["coffee", "chelsea", "astronaut", "rocket", "camera", "coins"]
    for i in range(n):
        img = bf.photo(names[i % len(names)], size=size).astype(np.float32)
        img = np.clip(img * 0.6 + 90 + i, 0, 255).astype(np.uint8)  # hazy: washed out
        (src / f"p{i:02d}.png").write_bytes(bf.save(img, "PNG"))
    run = tmp_path / "run"
    ingest([tmp_path / "src"], run)
    report = {"category": "haze", "degradations": [{"type": "haze", "severity": 0.6}], "scene": "", "measures": {},
              "analyzer": "heuristic", "model": None}  # fmt: skip
    set_analysis(run, report, lambda item_id: f"Remove the haze of {item_id}.")
    return run


def test_classical_synth_writes_hq_at_lq_size_and_resumes(tmp_path):
    run = _analysed_run(tmp_path)
    s = synth(run)
    assert (s.done, s.failed, s.variant, s.estimated_usd) == (3, 0, "classical", 0.0)
    with Run.open(run) as r:
        rows = r.store.query("SELECT i.width, i.height, s.result FROM items i JOIN stage_results s"
                             " ON s.item_id = i.id AND s.stage = 'synth'")  # fmt: skip
    for row in rows:
        result = json.loads(row["result"])
        hq = read_image(run / result["hq_path"])
        assert hq.shape == (row["height"], row["width"], 3)
        assert any(op["operator"] == "dehaze" for op in result["operators"])
    again = synth(run)
    assert again.planned == 0 and again.already_done == 3
    lost = run / json.loads(rows[0]["result"])["hq_path"]
    lost.unlink()
    redone = synth(run)
    assert (redone.done, redone.already_done) == (1, 2) and lost.is_file()
    assert f"1 HQ files recorded as done were missing (e.g. {lost.relative_to(run)})" in redone.notes[0]


def test_a_mistyped_generator_option_fails_at_once_and_is_not_saved(tmp_path):
    # Before: every item failed on its own with the option's validation error, and the run's
    # config.yaml kept the typo for every later command.
    run = _analysed_run(tmp_path, n=2)
    saved = (run / "config.yaml").read_text()
    with pytest.raises(ConfigError, match=r"unknown key 'synth\.options\.strenth'"):
        synth(run, overrides=["synth.options.strenth=0.5"])
    assert (run / "config.yaml").read_text() == saved
    with Run.open(run) as r:
        assert r.store.scalar("SELECT COUNT(*) FROM stage_results WHERE stage = 'synth'") == 0
    assert synth(run, overrides=["synth.options.strength=0.5"]).done == 2
    with pytest.raises(ConfigError, match=r"unknown key 'synth\.options\.qualty'"):
        synth(run, generator="openai", model="gpt-image-1", overrides=["synth.options.qualty=high"])


def test_unanalysed_items_are_left_out_with_a_note(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(bf.save(bf.photo(), "PNG"))
    ingest([src], tmp_path / "run")
    s = synth(tmp_path / "run")
    assert s.planned == 0 and s.not_analysed == 1 and "ggt analyze" in s.notes[0]


def _gemini(monkeypatch, stub):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    for var in ("GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI"):
        monkeypatch.delenv(var, raising=False)
    return [f"synth.options.base_url={stub.url}", "synth.geometry.size=128", "synth.max_attempts=6"]


def test_gemini_synth_with_faults_ends_every_item_done_or_failed_and_never_pays_twice(
    tmp_path, stub_server, monkeypatch
):
    run = _analysed_run(tmp_path, n=12)
    overrides = _gemini(monkeypatch, stub_server)
    stub_server.push_fault("safety", "text_only", "corrupt_image", Fault("wrong_size", size=(128, 64)))
    stub_server.set_fault_rate(0.3, ["rate_limit", "server_error", "unavailable"], seed=3)
    s = synth(run, generator="gemini", model="gemini-2.5-flash-image", overrides=overrides)
    assert (s.done, s.failed, s.pending) == (8, 4, 0)
    assert s.failures == {"safety_block": 1, "no_image": 1, "bad_output": 2}
    assert s.retries > 0
    # A request that got a usable answer is never sent again.
    served = Counter(r.body_sha256 for r in stub_server.requests if r.fault is None)
    assert len(served) == 8 and max(served.values()) == 1
    with Run.open(run) as r:
        assert r.store.scalar("SELECT SUM(usd) FROM costs WHERE stage='synth'") == pytest.approx(s.spent_usd)
        assert s.spent_usd >= 0.039 * 8 - 1e-9
        reasons = {row[0] for row in r.store.query("SELECT reason FROM stage_results WHERE status='failed'")}
        assert reasons == {"safety_block", "no_image", "bad_output"}
        for row in r.store.query(
            "SELECT s.result, i.width, i.height FROM stage_results s JOIN items i"
            " ON i.id = s.item_id WHERE s.stage='synth' AND s.status='done'"
        ):
            res = json.loads(row[0])
            assert read_image(run / res["hq_path"]).shape == (row["height"], row["width"], 3)
            assert res["transform"]["policy"] == "pad_square"
    stub_server.clear_faults()
    calls_before = stub_server.count("gemini.generate")
    again = synth(run, generator="gemini", model="gemini-2.5-flash-image", overrides=overrides)
    # The 4 failed items are asked again (a bad answer is never cached); the 8 done are not.
    assert (again.done, again.already_done, again.failed, again.calls, again.cache_hits) == (4, 8, 0, 4, 0)
    assert stub_server.count("gemini.generate") - calls_before == 4
    # A done HQ deleted since is made again from the paid answer kept in the cache: no new call.
    hq = next((run / "hq").rglob("*.png"))
    hq.unlink()
    spent = again.spent_usd + s.spent_usd
    third = synth(run, generator="gemini", model="gemini-2.5-flash-image", overrides=overrides)
    assert (third.done, third.already_done, third.calls, third.cache_hits) == (1, 11, 0, 1)
    assert hq.is_file() and "missing" in third.notes[-1]
    assert stub_server.count("gemini.generate") - calls_before == 4
    with Run.open(run) as r:
        assert r.store.scalar("SELECT SUM(usd) FROM costs WHERE stage='synth'") == pytest.approx(spent)


def test_dry_run_estimates_and_budget_stops_launching(tmp_path, stub_server, monkeypatch):
    run = _analysed_run(tmp_path, n=6)
    overrides = _gemini(monkeypatch, stub_server)
    with pytest.raises(ConfigError, match="needs a model"):
        synth(run, generator="gemini", overrides=overrides)
    with pytest.raises(ConfigError, match="unknown generator"):
        synth(run, generator="dalle")
    dry = synth(run, generator="gemini", model="gemini-2.5-flash-image", dry_run=True, overrides=overrides)
    assert dry.planned == 6 and dry.estimated_usd == pytest.approx(6 * 0.039) and stub_server.count() == 0
    capped = synth(run, generator="gemini", model="gemini-2.5-flash-image", budget=0.10, overrides=overrides)
    assert (capped.done, capped.pending, capped.failed) == (2, 4, 0) and capped.budget_exhausted
    assert capped.spent_usd <= 0.10
    # The budget covers the run's synth spending in all: the same cap starts nothing more.
    again = synth(run, generator="gemini", model="gemini-2.5-flash-image", budget=0.10, overrides=overrides)
    assert again.calls == 0 and again.pending == 4
    sets = [a for o in overrides for a in ("--set", o)]
    res = runner.invoke(app, ["synth", "--run", str(run), "--generator", "gemini", "--model", "nano-x",
                              "--budget", "1", *sets])  # fmt: skip
    assert res.exit_code == 2 and "needs a price" in res.stderr
    res = runner.invoke(
        app, ["synth", "--run", str(run), "--generator", "gemini", "--model", "nano-x", *sets]
    )
    assert res.exit_code == 0 and "cost is unknown" in res.stderr


def test_kill_9_mid_synth_then_rerun_completes_with_no_duplicate_paid_call(tmp_path, stub_server):
    run = _analysed_run(tmp_path, n=16)
    env = {**os.environ, "GEMINI_API_KEY": KEY}
    for var in ("GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "ggt.cli", "synth", "--run", str(run), "--generator", "gemini",
           "--model", "gemini-2.5-flash-image", "--concurrency", "2", "--json",
           "--set", f"synth.options.base_url={stub_server.url}", "--set", "synth.geometry.size=96"]  # fmt: skip
    # Every answer takes 0.3 s, so the kill lands with calls in flight and some answers recorded.
    stub_server.set_fault_rate(1.0, [Fault("slow", delay_s=0.3)])
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 60
    while time.time() < deadline and stub_server.count("gemini.generate") < 6:
        time.sleep(0.02)
    kill_group(proc)
    first = stub_server.count("gemini.generate")
    assert 0 < first < 16
    hq_dir = run / "hq" / "gemini-gemini-2.5-flash-image"
    die_mid_write(hq_dir / "killed.png")  # a kill between an HQ's write and its rename
    stub_server.clear_faults()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    with Run.open(run) as r:
        assert (
            r.store.scalar("SELECT COUNT(*) FROM stage_results WHERE stage='synth' AND status='done'") == 16
        )
        assert r.store.scalar("SELECT COUNT(*) FROM costs WHERE stage='synth'") == 16
    # A request is sent again only if the kill took it in flight (its answer never came back): at most
    # the concurrency, 2. Every answer that reached ggt was cached and never paid for twice.
    repeats = sum(n - 1 for n in stub_server.counts_by_body("gemini.generate").values())
    assert repeats <= 2
    assert len(list(hq_dir.glob("*.png"))) == 16 and not list(hq_dir.glob(".*"))


def test_a_local_models_path_and_lora_name_its_variant() -> None:
    from ggt.config import SynthConfig
    from ggt.generate.stage import _apply_local_model, local_variant

    cfg = _apply_local_model(SynthConfig(generator="diffusers", model="/models/instruct pix2pix/"))
    assert cfg.options["model"] == "/models/instruct pix2pix/" and cfg.model is None
    assert local_variant(cfg) == "diffusers-instruct_pix2pix"
    tuned = cfg.model_copy(update={"options": {**cfg.options, "lora": "/out/rain/lora.safetensors"}})
    assert local_variant(tuned) == "diffusers-instruct_pix2pix-lora-rain_lora"
    assert local_variant(SynthConfig()) == "classical"
    with pytest.raises(ConfigError, match="classical generator takes no model"):
        _apply_local_model(SynthConfig(generator="classical", model="x"))


def test_plain_pngs_are_sent_and_kept_as_they_are(tmp_path, stub_server, monkeypatch):
    """An LQ sent without padding or resampling goes as its file's bytes; an answer already at the LQ's
    framing is kept as the vendor's bytes when they stand for its pixels, and re-encoded when they do not."""
    import hashlib
    import struct
    import threading
    import zlib

    import cv2

    from ggt.imaging import decode_image, encode_image

    run = _analysed_run(tmp_path, n=2, size=(128, 128))
    overrides = _gemini(monkeypatch, stub_server)  # geometry.size=128: the LQ is the square that is sent
    gamma = b"gAMA" + struct.pack(">I", 45455)
    answers: dict[str, bytes] = {}
    lock = threading.Lock()

    def respond(req):
        inverted = (255 - np.rint(req.images[0].array * 255)).astype(np.uint8)
        data = cv2.imencode(".png", inverted[..., ::-1])[1].tobytes()
        with lock:
            if len(answers) == 1:  # the second answer carries a gamma chunk: its bytes are not its pixels
                chunk = struct.pack(">I", 4) + gamma + struct.pack(">I", zlib.crc32(gamma))
                data = data[:33] + chunk + data[33:]
            answers[hashlib.sha256(req.images[0].data).hexdigest()] = data
        return data

    stub_server.set_responder(respond, route="gemini.generate")
    s = synth(run, generator="gemini", model="gemini-2.5-flash-image", overrides=overrides)
    assert s.done == 2
    with Run.open(run) as r:
        rows = r.store.query("SELECT i.lq_path, s.result FROM items i JOIN stage_results s"
                             " ON s.item_id = i.id AND s.stage = 'synth'")  # fmt: skip
    kept_as_is = 0
    for row in rows:
        lq = (run / row["lq_path"]).read_bytes()
        sent = [r for r in stub_server.requests if r.route == "gemini.generate" and r.images[0].data == lq]
        assert len(sent) == 1  # the LQ file's own bytes, once
        # ...which are the bytes decoding and encoding it again gave before: runs keep their request keys.
        assert encode_image(decode_image(lq).pixels, "png") == lq
        answer = answers[hashlib.sha256(lq).hexdigest()]
        hq = (run / json.loads(row["result"])["hq_path"]).read_bytes()
        assert np.array_equal(decode_image(hq).pixels, decode_image(answer).pixels)
        kept_as_is += hq == answer
        # The kept answer is the cache's own file (a hard link: its megabytes are written once); the
        # re-encoded one is a file of its own.
        hq_stat = (run / json.loads(row["result"])["hq_path"]).stat()
        cached = RequestCache(run / "cache").path(json.loads(row["result"])["request_key"]).stat()
        assert (hq_stat.st_ino == cached.st_ino) == (hq == answer)
    assert kept_as_is == 1  # the plain answer; the one with gAMA was decoded and written afresh
