"""`bench_generators` end to end: classical plus two stub-backed generators of known quality.

"good" answers each request with the clean reference of the photo it was sent (found by comparing the
request's image to the framed LQs), "bad" with a blurred, shifted copy of what it was sent; so the
leaderboard must put good first and bad last on fidelity, full-reference metrics and Bradley-Terry.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from ggt.bench import bench_generators, prefer
from ggt.bench.stats import bootstrap_mean, bradley_terry, bt_with_ci
from ggt.config import ConfigError, GeometryConfig
from ggt.degrade import apply_preset
from ggt.generate.geometry import prepare
from ggt.imaging import read_image
from ggt.photos import load_photo

KEY = "AIza-bench-test-key-0000"
SIZE = (192, 128)  # NIQE needs two 96x96 patches
PHOTOS = {"haze": ["astronaut", "coffee", "chelsea"], "low_light": ["rocket", "camera", "coins"]}
GEOMETRY = GeometryConfig(size=192)


def _crop(name: str) -> np.ndarray:
    img = Image.fromarray(load_photo(name)).resize(SIZE, Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255.0


def _save(img: np.ndarray, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


@pytest.fixture
def dataset(tmp_path):
    """LQ photos in category folders, and the clean crops they were degraded from, same-named."""
    images, refs = tmp_path / "images", tmp_path / "refs"
    pairs = []
    for cat, names in PHOTOS.items():
        for k, name in enumerate(names):
            clean = _crop(name)
            lq = apply_preset(clean, cat, seed=k).image
            _save(lq, images / cat / f"{name}.png")
            _save(clean, refs / f"{name}.png")
            pairs.append((read_image(images / cat / f"{name}.png"), read_image(refs / f"{name}.png")))
    return images, refs, pairs


def _responder(pairs):
    framed = [(prepare(lq, GEOMETRY)[0], prepare(ref, GEOMETRY)[0]) for lq, ref in pairs]

    def answer(req):
        sent = req.images[0].array
        if req.model == "bad":
            return np.roll(gaussian_filter(sent, sigma=(2, 2, 0)), 4, axis=1)
        errs = [
            float(np.mean((f_lq - sent) ** 2)) if f_lq.shape == sent.shape else math.inf for f_lq, _ in framed
        ]
        return framed[int(np.argmin(errs))][1]

    return answer


def _env(monkeypatch, stub):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    for var in ("GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI"):
        monkeypatch.delenv(var, raising=False)
    return [
        f"synth.options.base_url={stub.url}",
        "synth.geometry.size=192",
        "synth.prices.gemini/good.per_image=0.04",
        "synth.prices.gemini/bad.per_image=0.01",
    ]


GENERATORS = ["classical", "gemini:good", "gemini:bad"]


def test_bench_ranks_good_first_bad_last_writes_reports_and_reruns_from_cache(
    tmp_path, dataset, stub_server, monkeypatch
):
    images, refs, pairs = dataset
    overrides = _env(monkeypatch, stub_server)
    stub_server.set_responder(_responder(pairs), route="gemini.generate")
    out = tmp_path / "bench"

    dry = bench_generators(
        images, GENERATORS, "both", out=out, references=refs, dry_run=True, overrides=overrides
    )
    assert stub_server.count() == 0
    assert dry.estimated_usd == pytest.approx(2 * 6 * (0.04 + 0.01))
    assert json.loads((out / "report.json").read_text())["summary"]["dry_run"] is True

    s = bench_generators(images, GENERATORS, "both", out=out, references=refs, overrides=overrides)
    assert set(s.runs) == {"fixed", "adaptive"}
    assert all((out / "runs" / m / "ggt.sqlite").is_file() for m in ("fixed", "adaptive"))
    assert stub_server.count("gemini.generate") == 2 * 2 * 6  # 2 models x 2 prompting modes x 6 photos
    assert s.images == 6 and len(s.contestants) == 6, s.notes
    assert all(c.done == 6 for c in s.contestants), [(c.name, c.done, c.failed) for c in s.contestants]

    board = s.categories["all"]
    good = {c.name for c in board if c.model == "good"}
    bad = {c.name for c in board if c.model == "bad"}
    assert {c.name for c in board[:2]} == good and {c.name for c in board[-2:]} == bad
    # LQ-HQ fidelity is not on the list: the clean reference is far from its degraded LQ, so a true
    # restoration scores lower on it than a timid one; that is why references matter.
    for key in ("ref.psnr", "ref.ssim", "judge.mean", "brisque.hq"):
        sign = 1 if key == "brisque.hq" else -1
        ranked = sorted(board, key=lambda c: sign * c.metrics[key].mean)
        assert {c.name for c in ranked[:2]} == good and {c.name for c in ranked[-2:]} == bad, key
    for c in board:
        assert c.bt_lo <= c.bt <= c.bt_hi and 0.0 <= c.win_rate <= 1.0
        for stat in c.metrics.values():
            assert stat.lo <= stat.mean <= stat.hi
        if c.model == "good":
            assert c.cost_per_image_usd == pytest.approx(0.04) and c.median_latency_s is not None
        if c.generator == "classical":
            assert c.cost_per_image_usd == 0.0
    assert {"all", "haze", "low_light"} <= set(s.categories)
    # The prompting modes differ in what the photos were told, and report.json records both.
    report = json.loads((out / "report.json").read_text())
    assert set(report["prompts"]) == {"fixed", "adaptive"} and report["versions"]["numpy"] == np.__version__
    assert report["prompts"]["fixed"] != report["prompts"]["adaptive"]

    with (out / "leaderboard.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {"category", "rank", "contestant", "bt", "bt_lo", "bt_hi", "win_rate", "cost_per_image_usd",
            "median_latency_s", "ref.psnr", "ref.psnr.lo", "niqe.hq", "fidelity"} <= set(rows[0])  # fmt: skip
    assert rows[0]["category"] == "all" and rows[0]["contestant"] in good
    html = (out / "leaderboard.html").read_text()
    assert "<table>" in html and "grid.jpg" in html
    md = (out / "leaderboard.md").read_text()
    assert "| # | contestant |" in md and "## haze" in md
    for name in ("metrics.png", "realism_vs_fidelity.png", "grid.jpg"):
        with Image.open(out / name) as im:
            assert im.size[0] > 100
    assert len((out / "scores.jsonl").read_text().splitlines()) == 6 * 6

    calls = stub_server.count()
    again = bench_generators(images, GENERATORS, "both", out=out, references=refs, overrides=overrides)
    assert stub_server.count() == calls and again.calls == 0
    assert [c.name for c in again.categories["all"]] == [c.name for c in board]


def test_one_mode_without_references_names_contestants_by_variant(tmp_path, dataset):
    images, _, _ = dataset
    s = bench_generators(images, ["classical"], "fixed", out=tmp_path / "b")
    assert list(s.runs) == ["fixed"] and s.categories["all"][0].name == "classical"
    assert "ref.psnr" not in s.categories["all"][0].metrics and s.categories["all"][0].win_rate is None


def test_bad_arguments_are_config_errors(tmp_path, dataset):
    from ggt.config import ConfigError

    images, _, _ = dataset
    with pytest.raises(ConfigError, match="prompting"):
        bench_generators(images, ["classical"], "sometimes", out=tmp_path / "b")
    with pytest.raises(ConfigError, match="heuristic"):
        bench_generators(images, ["classical"], "fixed", judge="claude", out=tmp_path / "b")
    with pytest.raises(ConfigError, match="judge-model"):
        bench_generators(images, ["classical"], "fixed", judge_model="m", out=tmp_path / "b")
    with pytest.raises(ConfigError, match="twice"):
        bench_generators(images, ["classical", "classical"], "fixed", out=tmp_path / "b")


def test_prefer_is_order_consistent_and_falls_back_to_fidelity():
    a = {"judge.mean": 0.9, "fidelity": 0.5}
    b = {"judge.mean": 0.5, "fidelity": 0.99}
    assert prefer(a, b) == 1.0 and prefer(b, a) == 0.0
    c = {"judge.mean": 0.89, "fidelity": 0.99}
    assert prefer(a, c) == 0.0 and prefer(c, a) == 1.0
    assert prefer(a, dict(a)) == 0.5
    # The clean reference, where there is one, outranks the judge.
    assert prefer({**b, "ref.ssim": 0.9}, {**a, "ref.ssim": 0.5}) == 1.0


def test_bradley_terry_recovers_order_and_bootstrap_is_seeded():
    wins = np.array([[0, 8, 9], [2, 0, 7], [1, 3, 0]], dtype=float)
    s = bradley_terry(wins)
    assert s[0] > s[1] > s[2] and abs(s.mean()) < 1e-9
    # An undefeated player stays finite thanks to the prior ties.
    assert np.all(np.isfinite(bradley_terry(np.array([[0, 5], [0, 0]], dtype=float))))
    games = [(m, 0, 1, 1.0) for m in range(10)] + [(m, 1, 2, 0.5) for m in range(10)]
    a = bt_with_ci(games, 3, 10, n_boot=50, seed=1)
    b = bt_with_ci(games, 3, 10, n_boot=50, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    est, lo, hi = a
    assert np.all(lo <= est) and np.all(est <= hi)
    mean, lo1, hi1 = bootstrap_mean([1.0, 2.0, 3.0, math.nan], n_boot=200, seed=0)
    assert mean == 2.0 and lo1 <= 2.0 <= hi1 and math.isnan(bootstrap_mean([])[0])


def test_budget_stops_a_generator_and_the_board_ranks_what_was_made(
    tmp_path, dataset, stub_server, monkeypatch
):
    images, refs, pairs = dataset
    overrides = [*_env(monkeypatch, stub_server), "synth.concurrency=1"]
    stub_server.set_responder(_responder(pairs), route="gemini.generate")
    s = bench_generators(
        images, ["gemini:good", "classical"], "fixed", out=tmp_path / "b", references=refs, budget=0.1,
        overrides=overrides,
    )  # fmt: skip
    good = next(c for c in s.contestants if c.model == "good")
    assert (good.done, good.pending) == (2, 4) and stub_server.count("gemini.generate") == 2
    assert good.spent_usd <= 0.1 and good.cost_per_image_usd == pytest.approx(0.04)
    assert s.categories["all"][0].name == "gemini-good" and good.games == 2


def test_a_local_contestant_names_its_pipeline_and_lora() -> None:
    from ggt.bench.generators import parse_generator, split_lora
    from ggt.generate.stage import variant_for

    name, model = parse_generator("diffusers:/models/ip2p+lora=/out/rain")
    assert (name, split_lora(model)) == ("diffusers", ("/models/ip2p", "/out/rain"))
    assert variant_for(name, *split_lora(model)) == "diffusers-ip2p-lora-rain"
    with pytest.raises(ConfigError, match="NAME:MODEL"):
        parse_generator("diffusers:+lora=/out/rain")


def _cli(*args):
    from typer.testing import CliRunner

    from ggt.cli import app

    return CliRunner().invoke(app, ["bench", "generators", *map(str, args)])


def test_cli_exits_1_listing_a_contestant_whose_items_failed_and_keeps_the_board(tmp_path, dataset):
    images, _, _ = dataset
    res = _cli("--images", images, "--generator", "classical", "--generator", "diffusers:/nonexistent",
               "--prompting", "fixed", "--out", tmp_path / "b")  # fmt: skip
    assert res.exit_code == 1, res.output
    assert "classical: BT" in res.stdout and "leaderboard:" in res.stdout
    failed = [line for line in res.stderr.splitlines() if line.startswith("failed ")]
    assert len(failed) == 1 and failed[0].startswith("failed diffusers-nonexistent: 6 images (6 x ")
    assert "/nonexistent" in failed[0]  # the main reason's message, not only its reason code
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert any(c["failed"] == 6 for c in report["summary"]["contestants"])


def test_cli_missing_images_or_references_folder_is_a_usage_error_before_any_work(tmp_path, dataset):
    images, _, _ = dataset
    res = _cli("--images", tmp_path / "nope", "--generator", "classical", "--out", tmp_path / "b")
    assert res.exit_code == 2 and "--images" in res.stderr and "no such" in res.stderr
    res = _cli("--images", images, "--references", tmp_path / "nope", "--generator", "classical",
               "--out", tmp_path / "b")  # fmt: skip
    assert res.exit_code == 2 and "--references" in res.stderr and "no such" in res.stderr
    assert not (tmp_path / "b").exists()
    with pytest.raises(ConfigError, match="--images"):
        bench_generators(tmp_path / "nope", ["classical"], "fixed", out=tmp_path / "b")


def test_a_corrupt_photo_is_listed_once_and_fails_the_bench(tmp_path, dataset):
    images, _, _ = dataset
    (images / "haze" / "broken.png").write_bytes(b"not a png")
    res = _cli("--images", images, "--generator", "classical", "--prompting", "both", "--out", tmp_path / "b")
    assert res.exit_code == 1, res.output
    failed = [line for line in res.stderr.splitlines() if line.startswith("failed ")]
    assert len(failed) == 1 and "broken.png" in failed[0] and "not_an_image" in failed[0]
    assert "classical@fixed: BT" in res.stdout  # the other photos are still benched


def test_category_rows_count_the_category_s_images_and_failures(tmp_path, dataset):
    images, _, _ = dataset
    s = bench_generators(images, ["classical", "diffusers:/nonexistent"], "fixed", out=tmp_path / "b")
    assert s.categories["all"][0].done == 6
    with open(tmp_path / "b" / "leaderboard.csv", newline="") as fh:
        rows = {(r["category"], r["contestant"]): r for r in csv.DictReader(fh)}
    assert rows[("all", "classical")]["images"] == "6"
    assert rows[("all", "diffusers-nonexistent")]["failed"] == "6"
    for cat in PHOTOS:
        assert rows[(cat, "classical")]["images"] == "3" and rows[(cat, "classical")]["failed"] == "0"
        assert rows[(cat, "diffusers-nonexistent")]["images"] == "0"
        assert rows[(cat, "diffusers-nonexistent")]["failed"] == "3"
    haze = next(c for c in s.categories["haze"] if c.generator == "diffusers")
    assert sum(haze.failures.values()) == 3 and s.failed
