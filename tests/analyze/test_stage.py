"""The analyze stage over a run: heuristic on the process pool, a VLM through the engine and the stub."""

import json

import pytest
from typer.testing import CliRunner

from fixtures import badfiles as bf
from ggt.analyze.stage import analyze
from ggt.cli import app
from ggt.ingest import ingest
from ggt.status import run_status
from ggt.store import Run

runner = CliRunner()

ANSWER = {
    "category": "rain",
    "degradations": [{"type": "rain", "severity": 0.7}, {"type": "rain", "severity": 0.4}],
    "scene": "a cup of coffee",
    "prompt": "Remove the rain streaks.",
}


@pytest.fixture
def small_run(tmp_path):
    src = tmp_path / "src" / "rain"
    src.mkdir(parents=True)
    for name in ("coffee", "chelsea", "astronaut"):
        (src / f"{name}.png").write_bytes(bf.save(bf.photo(name, size=(128, 96)), "PNG"))
    ingest([tmp_path / "src"], tmp_path / "run")
    return tmp_path / "run"


def test_heuristic_analysis_stores_report_and_prompt_and_resumes(small_run):
    summary = analyze(small_run)
    assert summary.analyzed == 3 and summary.failed == 0 and sum(summary.categories.values()) == 3
    with Run.open(small_run) as r:
        rows = r.store.query("SELECT result FROM stage_results WHERE stage = 'analyze' AND status = 'done'")
    result = json.loads(rows[0]["result"])
    assert result["report"]["analyzer"] == "heuristic" and result["prompting"] == "adaptive"
    assert "Keep" in result["prompt"] or "keep" in result["prompt"]
    again = analyze(small_run)
    assert again.analyzed == 0 and again.already_done == 3
    assert run_status(small_run).stages["analyze"] == {"done": 3}


def test_missing_lq_file_fails_that_item_only(small_run):
    with Run.open(small_run) as r:
        victim = r.store.query("SELECT lq_path FROM items LIMIT 1")[0]["lq_path"]
    (small_run / victim).unlink()
    summary = analyze(small_run)
    assert summary.analyzed == 2 and summary.failed == 1
    assert summary.failures[0].reason == "missing_file" and "is missing" in summary.failures[0].message
    res = runner.invoke(app, ["status", "--run", str(small_run), "--errors", "--json"])
    errors = json.loads(res.stdout)["errors"]
    assert [e["stage"] for e in errors] == ["analyze"]


def test_fixed_prompting_gives_one_prompt_for_all(small_run):
    analyze(small_run, overrides=["analyze.prompting=fixed"])
    with Run.open(small_run) as r:
        prompts = {json.loads(row[0])["prompt"] for row in r.store.query("SELECT result FROM stage_results")}
    assert len(prompts) == 1


def _gemini(monkeypatch, stub, run):
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test-key-000000")
    for var in ("GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI"):
        monkeypatch.delenv(var, raising=False)
    return [
        "analyze.vlm=gemini",
        "analyze.vlm_options.model=gemini-test",
        f"analyze.vlm_options.base_url={stub.url}",
        "analyze.max_attempts=3",
    ]


def test_vlm_analysis_through_the_stub_is_cached_and_retried(small_run, stub_server, monkeypatch):
    overrides = _gemini(monkeypatch, stub_server, small_run)
    stub_server.reply_text(json.dumps(ANSWER))
    stub_server.push_fault("rate_limit")  # the first call is refused once, then retried by the engine
    summary = analyze(small_run, overrides=overrides)
    assert summary.analyzed == 3 and summary.failed == 0 and summary.categories == {"rain": 3}
    assert stub_server.count("gemini.generate") == 4
    first = stub_server.requests[-1]
    assert first.model == "gemini-test" and first.images and first.images[0].size == (128, 96)
    with Run.open(small_run) as r:
        result = json.loads(r.store.query("SELECT result FROM stage_results LIMIT 1")[0][0])
        assert result["report"]["degradations"] == [{"type": "rain", "severity": 0.7}]  # duplicates merged
        assert result["prompt"].startswith("Remove the rain streaks.") and "Rules:" in result["prompt"]
        assert r.store.scalar("SELECT COUNT(*) FROM attempts WHERE stage='analyze' AND ok = 0") == 1
        assert r.store.scalar("SELECT SUM(input_tokens) FROM costs WHERE stage='analyze'") > 0
    # --redo with the same VLM and instruction: answered from the cache, no new paid call.
    again = analyze(small_run, overrides=overrides, redo=True)
    assert again.analyzed == 3 and again.cache_hits == 3 and stub_server.count("gemini.generate") == 4


def test_vlm_safety_block_fails_the_item_with_its_reason(small_run, stub_server, monkeypatch):
    overrides = _gemini(monkeypatch, stub_server, small_run)
    stub_server.reply_text(json.dumps(ANSWER))
    stub_server.push_fault("safety")
    summary = analyze(small_run, overrides=overrides)
    assert summary.analyzed == 2 and summary.failed == 1
    assert summary.failures[0].reason == "safety_block"


def test_inspect_json_lines_in_order_with_errors(tmp_path):
    good = tmp_path / "a.png"
    good.write_bytes(bf.save(bf.photo("coffee"), "PNG"))
    bad = tmp_path / "b.jpg"
    bad.write_text("not an image")
    res = runner.invoke(app, ["inspect", str(good), str(bad), str(good), "--json"])
    assert res.exit_code == 1
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [line["lq"] for line in lines] == [str(good), str(bad), str(good)]
    assert set(lines[0]) >= {"lq", "category", "degradations", "prompt"}
    assert "not_an_image" in lines[1]["error"]
    assert lines[0] == lines[2]


def _never_clean_model(path):
    """The shipped model with `clean` out of the running: no gates, and its logit pushed far down."""
    from ggt.analyze.model import MODEL_PATH, _members

    params = json.loads(MODEL_PATH.read_text())
    clf = params["classifier"]
    clf["gates"] = dict.fromkeys(clf["gates"], 0.0)
    for layers in _members(clf):
        layers[-1]["b"][clf["classes"].index("clean")] -= 100.0
    path.write_text(json.dumps(params))
    return path


def test_a_refitted_model_from_config_decides_in_the_pool_workers(small_run, tmp_path):
    assert analyze(small_run).categories == {"clean": 3}  # the shipped model
    model = _never_clean_model(tmp_path / "mine.json")
    summary = analyze(small_run, overrides=[f"analyze.heuristic.model={model}"], redo=True)
    assert summary.analyzed == 3 and "clean" not in summary.categories


def test_a_missing_analyzer_model_is_refused_before_any_item(small_run, tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match=r"nope\.json not found: fit one with"):
        analyze(small_run, overrides=[f"analyze.heuristic.model={missing}"])
    assert run_status(small_run).stages.get("analyze", {}) == {}
