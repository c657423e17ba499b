"""The review API through FastAPI's TestClient: queue filters and paging, pair details, images,
decisions, undo, two writers at once, token and host checks, and paths a client must never reach."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from review_helpers import add_variant

from ggt.review import create_app
from ggt.review.app import is_loopback
from ggt.store import Run

LOCAL = "http://127.0.0.1"


def client(run: Path, **kw: object) -> TestClient:
    return TestClient(create_app(run, **kw), base_url=LOCAL)  # type: ignore[arg-type]


@pytest.fixture
def mixed(review_run: Path) -> tuple[Path, list[str]]:
    """The real 'classical' pairs plus a hand-made 'fake' generator with known verdicts and metrics."""
    ids = add_variant(
        review_run,
        "fake",
        [
            {"verdict": "keep", "metrics": {"psnr": 30.0, "misalign.shift_px": 0.1}},
            {
                "verdict": "reject",
                "reasons": ["shifted"],
                "metrics": {"psnr": 12.0, "misalign.shift_px": 9.0},
            },
            {
                "verdict": "review",
                "reasons": ["unnatural"],
                "metrics": {"psnr": 20.0, "misalign.shift_px": 1.0},
            },
            {"verdict": "keep", "metrics": {"psnr": 25.0, "misalign.shift_px": 0.2}},
            {"verdict": "reject", "reasons": ["shifted", "unnatural"], "metrics": {"psnr": 15.0}},
        ],
    )
    return review_run, ids


def decisions(run: Path) -> list[dict]:
    with Run.open(run) as r:
        return [dict(row) for row in r.store.query("SELECT * FROM decisions ORDER BY id")]


def test_queue_puts_review_first_then_pages_by_cursor_without_gaps(mixed: tuple[Path, list[str]]) -> None:
    run, _ = mixed
    c = client(run)
    whole = c.get("/api/queue", params={"limit": 500}).json()
    assert whole["next"] is None and len(whole["items"]) == 10
    order = [it["verdict"] for it in whole["items"]]
    assert order == sorted(order, key=["review", "reject", "keep"].index)
    assert order[:5] == ["review"] * 5 and order.count("review") == 5  # four classical pairs, then fake's one
    seen, cursor = [], None
    while True:
        page = c.get("/api/queue", params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [(it["item_id"], it["variant"]) for it in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [(it["item_id"], it["variant"]) for it in whole["items"]]
    assert c.get("/api/queue", params={"cursor": "garbage!"}).status_code == 400


def test_filters_and_metric_sort(mixed: tuple[Path, list[str]]) -> None:
    run, ids = mixed
    c = client(run)

    def q(**params: object) -> list[tuple[str, str]]:
        res = c.get("/api/queue", params=params)
        assert res.status_code == 200, res.text
        return [(it["item_id"], it["variant"]) for it in res.json()["items"]]

    assert q(generator="fake", verdict="keep") == [(ids[0], "fake"), (ids[3], "fake")]
    assert q(generator="fake", rule="shifted") == [(ids[1], "fake"), (ids[4], "fake")]
    assert set(q(rule="unnatural", generator="fake")) == {(ids[2], "fake"), (ids[4], "fake")}
    assert q(generator="fake", metric_min="psnr:15", metric_max="psnr:25") == [
        (ids[2], "fake"), (ids[4], "fake"), (ids[3], "fake")
    ]  # fmt: skip
    by_shift = q(generator="fake", sort="misalign.shift_px", desc=True)
    # The pair without the metric comes last: a reviewer sorting by it must still see every pair.
    assert by_shift == [
        (ids[1], "fake"),
        (ids[2], "fake"),
        (ids[3], "fake"),
        (ids[0], "fake"),
        (ids[4], "fake"),
    ]
    assert q(generator="fake", sort="misalign.shift_px")[-1] == (ids[4], "fake")
    paged = q(generator="fake", sort="psnr", limit=2)
    assert paged == [(ids[1], "fake"), (ids[4], "fake")]
    assert len(q(category="haze")) == 10 and q(category="rain") == []
    assert len(q(generator="classical")) == 5
    assert c.get("/api/queue", params={"sort": "x') OR 1=1 --"}).status_code == 400
    assert c.get("/api/queue", params={"metric_min": "psnr:abc"}).status_code == 400
    for params in ({"sort": "nonexistent"}, {"metric_min": "foo:1"}, {"metric_max": "foo:1"}):
        res = c.get("/api/queue", params=params)  # a typo is an error, not an empty queue
        assert res.status_code == 400 and "no pair has a metric" in res.text
    f = c.get("/api/facets").json()
    assert f["generators"] == ["classical", "fake"] and "shifted" in f["rules"] and "psnr" in f["metrics"]


def test_pair_detail_and_images(mixed: tuple[Path, list[str]]) -> None:
    run, ids = mixed
    c = client(run)
    d = c.get(f"/api/pair/{ids[1]}", params={"variant": "fake"}).json()
    assert d["verdict"] == "reject" and d["reasons"] == ["shifted"] and d["metrics"]["psnr"] == 12.0
    assert d["prompt"] == f"Remove the haze of {ids[1]}." and d["report"]["category"] == "haze"
    assert d["decision"]["reviewer"] == "policy"
    real = c.get(f"/api/pair/{ids[0]}", params={"variant": "classical"}).json()
    assert real["judge"]["verdict"] in ("keep", "reject", "review") and real["metrics"]
    thumb = c.get(f"/api/image/{ids[0]}/hq", params={"variant": "classical"})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:2] == b"\xff\xd8"
    cached = list((run / "cache" / "thumbs").glob("*.jpg"))
    assert len(cached) == 1
    again = c.get(f"/api/image/{ids[0]}/hq", params={"variant": "classical"})
    assert again.content == thumb.content and list((run / "cache" / "thumbs").glob("*.jpg")) == cached
    full = c.get(f"/api/image/{ids[0]}/lq", params={"full": True})
    assert full.status_code == 200 and full.content[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "path",
    [
        "/api/image/../../etc/passwd",
        "/api/image/..%2f..%2fetc%2fpasswd/lq",
        "/api/image/%2e%2e%2f%2e%2e%2fetc%2fpasswd/lq",
        "/api/image/%2fetc%2fpasswd/lq",
        "/api/image//etc/passwd/lq",
        "/api/image/0000000000000000/lq",
        "/api/image/{id}/hq?variant=../../../etc",
        "/api/image/{id}/hq?variant=%2e%2e%2f%2e%2e%2fggt.sqlite",
        "/api/image/{id}/hq?variant=/etc/passwd",
        "/api/image/{id}/hq?variant=nosuch",
        "/api/image/{id}/passwd",
        "/api/image/{id}/..%2f..%2fggt.sqlite",
        "/api/pair/{id}?variant=../classical",
        "/api/pair/ffffffffffffffff?variant=classical",
        "/static/..%2f__init__.py",
        "/static/index.html%00.js",
    ],
)
def test_no_client_path_reaches_the_file_system(review_run: Path, path: str) -> None:
    c = client(review_run)
    with Run.open(review_run) as r:
        item = r.store.scalar("SELECT id FROM items ORDER BY id LIMIT 1")
    res = c.get(path.replace("{id}", item))
    assert res.status_code == 404, (path, res.status_code)
    assert b"root:" not in res.content and b"SQLite" not in res.content


def test_decide_undo_and_progress(review_run: Path) -> None:
    c = client(review_run, reviewer="ann")
    page = c.get("/api/queue").json()["items"]
    a, b = page[0], page[1]
    ok = c.post("/api/decision", json={"item_id": a["item_id"], "variant": a["variant"], "decision": "keep"})
    assert ok.status_code == 200
    rej = {
        "item_id": b["item_id"],
        "variant": b["variant"],
        "decision": "reject",
        "reasons": ["misalignment"],
    }
    assert c.post("/api/decision", json=rej).status_code == 200
    bob = {"X-GGT-Reviewer": "bob"}
    assert c.post("/api/decision", json={**rej, "reasons": ["artefacts"]}, headers=bob).status_code == 200
    prog = c.get("/api/progress").json()
    assert prog["reviewers"] == {"ann": {"decisions": 2, "pairs": 2}, "bob": {"decisions": 1, "pairs": 1}}
    # Ann's latest decision still in force is on `a` (bob overrode her on `b`): undo goes there.
    u = c.post("/api/undo", json={}).json()
    assert (u["item_id"], u["decision"]["reviewer"]) == (a["item_id"], "policy")
    rows = decisions(review_run)
    assert rows[-1]["undoes"] == rows[-4]["id"] and rows[-1]["decision"] == "review"
    # Bob undoes his: ann's reject comes back, reasons and all.
    u = c.post("/api/undo", json={"item_id": b["item_id"], "variant": b["variant"]}, headers=bob).json()
    assert u["decision"]["reviewer"] == "ann" and u["decision"]["reasons"] == ["misalignment"]
    d = c.get(f"/api/pair/{b['item_id']}", params={"variant": b["variant"]}).json()
    assert d["decision"]["decision"] == "reject" and d["decision"]["reviewer"] == "ann"
    assert c.post("/api/undo", json={}, headers=bob).status_code == 409
    # Ann undoes the reject on b too; then nothing of hers is left in force.
    assert c.post("/api/undo", json={}).json()["item_id"] == b["item_id"]
    assert c.post("/api/undo", json={}).status_code == 409
    assert len(decisions(review_run)) == 5 + 3 + 3  # policy rows + decisions + undo rows: nothing deleted
    assert c.get("/api/progress").json()["reviewers"]["ann"]["decisions"] == 0


@pytest.mark.parametrize(
    "body, code",
    [
        ({"decision": "keep", "variant": "nosuch"}, 404),
        ({"decision": "maybe"}, 422),
        ({"decision": "reject", "reasons": ["bogus"]}, 422),
        ({"decision": "reject", "reasons": ["other"]}, 400),
        ({"decision": "keep", "reasons": ["artefacts"]}, 400),
        ({"decision": "keep", "item_id": "../../etc/passwd"}, 422),
        ({"decision": "keep", "item_id": "ffffffffffffffff"}, 404),
    ],
)
def test_bad_decisions_are_refused(review_run: Path, body: dict, code: int) -> None:
    c = client(review_run)
    item = c.get("/api/queue").json()["items"][0]["item_id"]
    before = len(decisions(review_run))
    res = c.post("/api/decision", json={"item_id": item, "variant": "classical", **body})
    assert res.status_code == code, res.text
    assert len(decisions(review_run)) == before
    other = {
        "item_id": item,
        "variant": "classical",
        "decision": "reject",
        "reasons": ["other"],
        "note": "halo",
    }
    assert c.post("/api/decision", json=other).status_code == 200


def test_two_reviewers_at_once_never_lose_a_decision(review_run: Path) -> None:
    app = create_app(review_run)
    items = [(it["item_id"], it["variant"]) for it in client(review_run).get("/api/queue").json()["items"]]
    errors: list[str] = []
    undone: dict[str, int] = {"ann": 0, "bob": 0}
    barrier = threading.Barrier(2)

    def work(name: str) -> None:
        c = TestClient(app, base_url=LOCAL)
        barrier.wait()
        for k in range(40):
            item_id, variant = items[k % len(items)]
            body = {"item_id": item_id, "variant": variant, "decision": "keep" if k % 2 else "reject"}
            res = c.post("/api/decision", json=body, headers={"X-GGT-Reviewer": name})
            if res.status_code != 200:
                errors.append(res.text)
            if k % 10 == 9:
                res = c.post("/api/undo", json={}, headers={"X-GGT-Reviewer": name})
                # 409 is a right answer too: the other reviewer may have decided over every pair of ours.
                if res.status_code == 200:
                    undone[name] += 1
                elif res.status_code != 409:
                    errors.append(res.text)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("ann", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = decisions(review_run)
    for name in ("ann", "bob"):
        mine = [r for r in rows if r["reviewer"] == name]
        assert sum(r["undoes"] is None for r in mine) == 40  # every decision landed
        assert sum(r["undoes"] is not None for r in mine) == undone[name]
    assert sum(undone.values()) >= 1
    progress = client(review_run).get("/api/progress").json()["reviewers"]
    assert progress["ann"]["decisions"] == 40 - undone["ann"]


def test_token_required_on_every_api_request_when_set(review_run: Path) -> None:
    c = TestClient(create_app(review_run, token="s3cret-token"), base_url="http://10.1.2.3:8765")
    page = c.get("/")
    assert page.status_code == 200 and b"s3cret" not in page.content  # the page carries no secret
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert c.get("/static/app.js").status_code == 200
    for path in ("/api/queue", "/api/progress", "/api/facets", "/api/whoami"):
        assert c.get(path).status_code == 401
        assert c.get(path, headers={"X-GGT-Token": "wrong"}).status_code == 401
        assert c.get(path, headers={"X-GGT-Token": "s3cret-token"}).status_code == 200
    item = c.get("/api/queue", headers={"X-GGT-Token": "s3cret-token"}).json()["items"][0]
    body = {"item_id": item["item_id"], "variant": item["variant"], "decision": "keep"}
    assert c.get(f"/api/image/{item['item_id']}/lq").status_code == 401
    assert c.post("/api/decision", json=body).status_code == 401
    assert c.post("/api/undo", json={}).status_code == 401
    ok = c.post("/api/decision", json=body, headers={"X-GGT-Token": "s3cret-token"})
    assert ok.status_code == 200
    # A cross-site form post (text/plain, no preflight) is refused even with the token.
    form = c.post("/api/decision", content=json.dumps(body),
                  headers={"X-GGT-Token": "s3cret-token", "Content-Type": "text/plain"})  # fmt: skip
    assert form.status_code == 415
    assert c.get("/api/decision", headers={"X-GGT-Token": "s3cret-token"}).status_code == 405


def test_tokenless_server_answers_loopback_hosts_only(review_run: Path) -> None:
    assert client(review_run).get("/api/whoami").status_code == 200
    rebound = TestClient(create_app(review_run), base_url="http://evil.example:8765")
    assert rebound.get("/api/queue").status_code == 403
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_generates_and_prints_a_token_off_loopback(
    review_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    from ggt.review import serve

    seen: dict = {}

    def run(self: uvicorn.Server, sockets: list[socket.socket]) -> None:
        seen.update(app=self.config.app, host=sockets[0].getsockname()[0])
        for sock in sockets:
            sock.close()

    monkeypatch.setattr(uvicorn.Server, "run", run)
    port = _free_port()
    serve(review_run, host="0.0.0.0", port=port)
    token = seen["app"].state.token
    assert token and len(token) >= 24 and f"#token={token}" in capsys.readouterr().out
    assert seen["host"] == "0.0.0.0"
    serve(review_run, host="127.0.0.1", port=port)
    assert seen["app"].state.token is None and "#token" not in capsys.readouterr().out
    serve(review_run, host="127.0.0.1", port=port, token="given")
    assert seen["app"].state.token == "given"


def test_a_taken_port_is_a_usage_error_before_any_url_is_printed(review_run: Path) -> None:
    from typer.testing import CliRunner

    from ggt.cli import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        res = CliRunner().invoke(app, ["review", "--run", str(review_run), "--port", str(port)])
    # Before, uvicorn failed after our URL was printed: a URL to whatever server held the port.
    assert res.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in res.output
    assert "open http" not in res.output


def test_undecided_filter_hides_pairs_a_person_decided(review_run: Path) -> None:
    c = client(review_run)
    first = c.get("/api/queue").json()["items"][0]
    body = {"item_id": first["item_id"], "variant": first["variant"], "decision": "keep"}
    assert c.post("/api/decision", json=body).status_code == 200
    pending = [it["item_id"] for it in c.get("/api/queue", params={"pending": True}).json()["items"]]
    assert len(pending) == 4 and first["item_id"] not in pending
    c.post("/api/undo", json={})  # back to the policy's decision: undecided again
    assert len(c.get("/api/queue", params={"pending": True}).json()["items"]) == 5
