"""The benchmark with a VLM pairwise judge, against the loopback stubs.

Three stub generators of known faithfulness: "same" returns the LQ it was sent, "blur" a blurred copy,
"shift" a blurred and shifted copy. The stub judge prefers the candidate closer to the LQ, so the
ranking must come out same > blur > shift; a judge that always answers "A" must rank nobody.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from fixtures.stubs import pairwise_judge_responder
from ggt.bench import bench_generators
from ggt.bench.generators import _games
from ggt.bench.judge import JUDGE_STAGE, pairwise_instruction
from ggt.degrade import apply_preset
from ggt.photos import load_photo
from ggt.store import RunStore

SIZE = (192, 128)  # NIQE needs two 96x96 patches
PHOTOS = ["astronaut", "coffee", "chelsea"]
PIN, POUT = 100.0, 1000.0  # judge price, USD per million tokens in / out
CALL_USD = (123 * PIN + 45 * POUT) / 1e6  # the stub reports 123 input and 45 output tokens per call


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "images"
    (root / "haze").mkdir(parents=True)
    for k, name in enumerate(PHOTOS):
        img = Image.fromarray(load_photo(name)).resize(SIZE, Image.Resampling.BILINEAR)
        lq = apply_preset(np.asarray(img, dtype=np.float32) / 255.0, "haze", seed=k).image
        Image.fromarray((np.clip(lq, 0, 1) * 255 + 0.5).astype(np.uint8)).save(root / "haze" / f"{name}.png")
    return root


def generate(req):
    """The image generators: what each stub model does to the image it was sent."""
    sent = req.images[0].array
    if req.model == "same":
        return sent
    blurred = gaussian_filter(sent, sigma=(2, 2, 0))
    return blurred if req.model == "blur" else np.roll(blurred, 8, axis=1)


def _env(monkeypatch, stub, judge_backend: str) -> list[str]:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-bench-judge-key-0000")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-bench-judge-key-0000")
    for var in ("GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    judge_url = stub.openai_url if judge_backend == "openai" else stub.url
    return [
        f"synth.options.base_url={stub.url}",
        "synth.geometry.size=192",
        f"qc.judge_options.base_url={judge_url}",
        f"synth.prices.{judge_backend}/judge-1.per_million_input_tokens={PIN}",
        f"synth.prices.{judge_backend}/judge-1.per_million_output_tokens={POUT}",
    ]


def test_vlm_judge_ranks_by_faithfulness_retries_bad_json_and_reruns_free(
    tmp_path, images, stub_server, monkeypatch
):
    overrides = _env(monkeypatch, stub_server, "openai")
    stub_server.set_responder(generate, route="gemini.generate")
    stub_server.set_responder(pairwise_judge_responder("closer"), route="openai.chat")
    stub_server.push_fault("malformed_json", route="openai.chat")  # the first judge answer is broken
    out = tmp_path / "bench"
    gens = ["gemini:shift", "gemini:same", "gemini:blur"]  # listed worst first: order must not matter

    s = bench_generators(images, gens, "fixed", judge="openai", judge_model="judge-1", out=out,
                         overrides=overrides)  # fmt: skip
    asked = 3 * 3 * 2  # images x pairs x both orders
    js = s.judge_summary
    assert (js.comparisons, js.done, js.failed, js.calls) == (asked, asked, 0, asked), js
    chats = [r for r in stub_server.requests if r.route == "openai.chat"]
    assert len(chats) == asked + 1  # the malformed answer was retried once, with the error quoted
    assert [r.fault for r in chats].count("malformed_json") == 1
    assert sum("could not be used" in r.texts[-1] for r in chats) == 1  # calls run concurrently: any order
    assert all(len(r.images) == 3 for r in chats)

    board = s.categories["all"]
    assert [c.model for c in board] == ["same", "blur", "shift"], [(c.name, c.bt) for c in board]
    assert board[0].win_rate == 1.0 and board[-1].win_rate == 0.0
    for c in board:
        assert c.bt_lo <= c.bt <= c.bt_hi and c.games == 2 * 3
    assert [c.model for c in s.categories["haze"]] == ["same", "blur", "shift"]
    # Cost: every call's tokens, the retried one twice, priced from synth.prices["openai/judge-1"].
    assert js.input_tokens == 123 * (asked + 1) and js.total_usd == pytest.approx(CALL_USD * (asked + 1))
    md = (out / "leaderboard.md").read_text()
    assert f"${js.total_usd:.4f} in all" in md and "judge: openai judge-1" in md
    assert "judge: openai judge-1" in (out / "leaderboard.html").read_text()
    lines = [json.loads(x) for x in (out / "judgments.jsonl").read_text().splitlines()]
    assert len(lines) == asked and all(x["winner"] in ("A", "B", "tie") and x["reasons"] for x in lines)
    report = json.loads((out / "report.json").read_text())
    assert report["judge"]["model"] == "judge-1" and "faithful" in report["judge"]["instruction_example"]
    with RunStore(out / "bench.sqlite", create=False) as store:
        costs = store.scalar("SELECT COUNT(*) FROM costs WHERE stage = ?", (JUDGE_STAGE,))
    assert costs == asked  # one row per paid engine call, the corrective retry's tokens included

    before = stub_server.count()
    again = bench_generators(images, gens, "fixed", judge="openai", judge_model="judge-1", out=out,
                             overrides=overrides)  # fmt: skip
    assert stub_server.count() == before and again.judge_summary.calls == 0
    assert again.judge_summary.done == asked and again.judge_summary.total_usd == pytest.approx(js.total_usd)
    assert [c.name for c in again.categories["all"]] == [c.name for c in board]


def test_both_orders_cancel_a_judge_that_always_answers_a(tmp_path, images, stub_server, monkeypatch):
    overrides = _env(monkeypatch, stub_server, "gemini")
    # One Gemini route for the generators and the judge: image requests fall through to `generate`.
    stub_server.set_responder(
        pairwise_judge_responder("closer", position_bias="A", fallback=generate), route="gemini.generate"
    )
    s = bench_generators(images, ["gemini:same", "gemini:shift"], "fixed", judge="gemini",
                         judge_model="judge-1", out=tmp_path / "b", overrides=overrides)  # fmt: skip
    lines = [json.loads(x) for x in (tmp_path / "b" / "judgments.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * 2 and {x["winner"] for x in lines} == {"A"}  # biased in every answer...
    for c in s.categories["all"]:  # ...and yet nobody is ranked above anybody
        assert c.win_rate == 0.5 and abs(c.bt) < 1e-6 and c.bt_lo <= 0.0 <= c.bt_hi
    assert stub_server.count("gemini.generate") == 3 * 2 + 3 * 2  # 6 images made, 6 questions asked


def test_games_average_both_orders_and_skip_half_asked_pairs():
    per_output = {(ci, i): {} for ci in range(3) for i in ("x", "y")}
    # Contestant 0 is truly better than 1; the judge leans to A: it says A whenever it is unsure.
    judged = {
        ("x", 0, 1): 1.0, ("x", 1, 0): 0.0,  # clear: 0 wins both orders
        ("y", 0, 1): 1.0, ("y", 1, 0): 1.0,  # unsure: A both times, a tie after averaging
        ("x", 0, 2): 1.0,  # the other order was never answered: the pair is left out
    }  # fmt: skip
    games = _games(["x", "y"], 3, per_output, judged)
    assert sorted(games) == [(0, 0, 1, 1.0), (1, 0, 1, 0.5)]


def test_instruction_names_the_criteria_and_the_category():
    text = pairwise_instruction("haze")
    assert "Image 2 is candidate A and image 3 is candidate B" in text and "'haze'" in text
    assert all(k in text for k in ("faithfulness", "degradations_removed", "natural_look"))
    assert "classified" not in pairwise_instruction("unknown")


def test_vlm_judge_needs_a_model_before_anything_is_paid(tmp_path, images, stub_server):
    from ggt.config import ConfigError

    with pytest.raises(ConfigError, match="needs a model"):
        bench_generators(images, ["gemini:same"], "fixed", judge="openai", out=tmp_path / "b")
    with pytest.raises(ConfigError, match="heuristic"):
        bench_generators(images, ["gemini:same"], "fixed", judge="claude", out=tmp_path / "b")
    assert stub_server.count() == 0


def test_cli_judge_options_and_bench_review_errors(tmp_path, images):
    from typer.testing import CliRunner

    from ggt.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["bench", "generators", "--images", str(images), "--generator", "classical",
                              "--out", str(tmp_path / "b"), "--judge", "gemini"])  # fmt: skip
    assert res.exit_code == 2 and "--judge-model" in res.stderr
    res = runner.invoke(app, ["bench", "review", str(tmp_path)])
    assert res.exit_code == 2 and "not a benchmark folder" in res.stderr
