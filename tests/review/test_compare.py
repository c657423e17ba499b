"""Compare mode (`ggt bench review`): pairs dealt in random order without names, every vote stored with
the order that was shown, and a Bradley-Terry ranking from simulated votes that recovers a known order."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from review_helpers import NAMES, build_bench

from ggt.review.compare import create_compare_app
from ggt.store import RunStore, StoreError

LOCAL = "http://127.0.0.1"
STRENGTH = {"good": 2.0, "mid": 0.0, "bad": -2.0}


@pytest.fixture(scope="module")
def bench_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bench(tmp_path_factory.mktemp("compare"))


@pytest.fixture
def bench(bench_template: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "bench"
    shutil.copytree(bench_template, dst)
    return dst


def client(out: Path, **kw: object) -> TestClient:
    return TestClient(create_compare_app(out, **kw), base_url=LOCAL)  # type: ignore[arg-type]


def identify(c: TestClient, out: Path, deal: dict, side: str) -> str:
    """Which contestant's file the server sent for `side`, from the bytes alone."""
    data = c.get(deal["images"][side]).content
    manifest = json.loads((out / "manifest.json").read_text())
    item = next(it for it in manifest["items"] if it["id"] == deal["item_id"])
    return next(n for n, rel in item["hq"].items() if (out / rel).read_bytes() == data)


def rows(out: Path) -> list[dict]:
    with RunStore(out / "bench.sqlite", create=False) as s:  # a fresh connection: what was committed
        return [dict(r) for r in s.query("SELECT * FROM preferences ORDER BY id")]


def test_vote_is_stored_with_the_order_shown_and_names_only_after(bench: Path) -> None:
    c = client(bench, rng=random.Random(1))
    deal = c.get("/api/compare/next").json()
    assert not any(n in json.dumps(deal) for n in NAMES)  # no names before the vote
    left, right = identify(c, bench, deal, "left"), identify(c, bench, deal, "right")
    assert left != right and c.get(deal["images"]["lq"]).status_code == 200
    res = c.post("/api/compare/vote", json={"ticket": deal["ticket"], "choice": "left"})
    assert res.status_code == 200
    body = res.json()
    assert (body["left"], body["right"], body["winner"], body["voter"]) == (left, right, left, None)
    (row,) = rows(bench)
    assert (row["item_id"], row["left_name"], row["right_name"], row["choice"]) == (
        deal["item_id"], left, right, "left"
    )  # fmt: skip
    assert row["voter"] is None and row["shown_at"] <= row["created_at"]
    # A ticket answers once; its images go with it.
    again = c.post("/api/compare/vote", json={"ticket": deal["ticket"], "choice": "right"})
    assert again.status_code == 409 and c.get(deal["images"]["left"]).status_code == 409
    assert len(rows(bench)) == 1


def test_voter_skip_and_bad_input(bench: Path) -> None:
    c = client(bench, voter="ann")
    d1, d2, d3 = (c.get("/api/compare/next").json() for _ in range(3))
    assert (
        c.post("/api/compare/vote", json={"ticket": d1["ticket"], "choice": "skip"}).json()["winner"] is None
    )
    res = c.post("/api/compare/vote", json={"ticket": d2["ticket"], "choice": "tie"},
                 headers={"X-GGT-Reviewer": "bob"})  # fmt: skip
    assert res.json()["voter"] == "bob"
    assert c.post("/api/compare/vote", json={"ticket": d3["ticket"], "choice": "both"}).status_code == 422
    assert (
        c.post(
            "/api/compare/vote", json={"ticket": d3["ticket"], "choice": "left", "voter": "a b"}
        ).status_code
        == 422
    )
    assert (
        c.post("/api/compare/vote", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    )
    assert [(r["choice"], r["voter"]) for r in rows(bench)] == [("skip", "ann"), ("tie", "bob")]
    assert c.get("/api/compare/progress").json()["votes"] == {"skip": 1, "tie": 1}
    assert c.get("/api/compare/image/nope-nope-nope/left").status_code == 409
    assert c.get(f"/api/compare/image/{d3['ticket']}/hq").status_code == 422
    assert client(bench, token="t0ken-t0ken").get("/api/compare/next").status_code == 401
    assert (
        TestClient(create_compare_app(bench), base_url="http://evil.example")
        .get("/api/compare/next")
        .status_code
        == 403
    )
    with pytest.raises(StoreError, match="not a benchmark folder"):
        create_compare_app(bench / "runs")


def test_sides_are_random_and_least_voted_pairs_come_first(bench: Path) -> None:
    c = client(bench, rng=random.Random(7))
    n_pairs = 4 * 3  # photos x pairs of three contestants
    lefts: dict[tuple[str, frozenset[str]], set[str]] = {}
    seen = []
    for _ in range(2 * n_pairs):
        deal = c.get("/api/compare/next").json()
        left, right = identify(c, bench, deal, "left"), identify(c, bench, deal, "right")
        seen.append((deal["item_id"], frozenset((left, right))))
        lefts.setdefault(seen[-1], set()).add(left)
        c.post("/api/compare/vote", json={"ticket": deal["ticket"], "choice": "tie"})
    # Every (photo, pair) dealt once before any is dealt again, then once more.
    assert len(set(seen[:n_pairs])) == n_pairs and len(set(seen)) == n_pairs
    # Both sides occur: 12 pairs shown twice, each time a coin flip for who is on the left.
    assert sum(len(v) == 2 for v in lefts.values()) >= 3
    shown = [r for r in rows(bench) if "good" in (r["left_name"], r["right_name"])]
    assert len(shown) == 16 and 0 < sum(r["left_name"] == "good" for r in shown) < 16


def test_simulated_votes_recover_a_known_order_in_the_leaderboard(bench: Path) -> None:
    from ggt.bench.generators import ContestantResult, _leaderboards
    from ggt.bench.judge import read_votes
    from ggt.bench.report import write_csv, write_markdown

    c = client(bench, rng=random.Random(3))
    people = random.Random(11)
    for _ in range(96):
        deal = c.get("/api/compare/next").json()
        left, right = identify(c, bench, deal, "left"), identify(c, bench, deal, "right")
        p_left = 1.0 / (1.0 + np.exp(STRENGTH[right] - STRENGTH[left]))  # a Bradley-Terry voter
        choice = "left" if people.random() < p_left else "right"
        assert (
            c.post("/api/compare/vote", json={"ticket": deal["ticket"], "choice": choice}).status_code == 200
        )
    manifest = json.loads((bench / "manifest.json").read_text())
    ids = [it["id"] for it in manifest["items"]]
    items = {it["id"]: {"category": it["category"]} for it in manifest["items"]}
    board = [ContestantResult(name=n, generator=n, variant=n, prompting="fixed") for n in NAMES]
    votes = read_votes(bench)
    boards = _leaderboards(board, ids, items, {}, None, votes)
    ranked = boards["all"]
    by_human = sorted(ranked, key=lambda x: -x.human_bt)
    assert [x.name for x in by_human] == ["good", "mid", "bad"]
    good, mid, bad = (next(x for x in ranked if x.name == n) for n in ("good", "mid", "bad"))
    assert good.human_bt_lo > mid.human_bt_hi or good.human_bt_lo > bad.human_bt_hi
    for x in ranked:
        assert x.human_bt_lo <= x.human_bt <= x.human_bt_hi and x.human_votes == 64
        assert x.bt is None  # no judge games here: the two rankings are separate
    # The true gap good - bad is 4 (log-strength); the CI of the estimated gap's ends must bracket it loosely.
    assert good.human_bt_hi - bad.human_bt_lo > 4.0 * 0.5

    from ggt.bench.generators import BenchSummary

    s = BenchSummary(out=str(bench), images=len(ids), categories=boards, contestants=board, human_votes=96)
    md = write_markdown(bench / "leaderboard.md", s).read_text()
    assert "human BT [95% CI]" in md and "96 people's votes" in md
    header = (write_csv(bench / "leaderboard.csv", s).read_text().splitlines())[0]
    assert "human_bt" in header and "human_votes" in header
