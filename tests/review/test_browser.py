"""End to end in a real browser: Debian's chromium, driven by Playwright, against uvicorn on loopback.

Keys pressed as a reviewer would: A, R then 2, U, arrows; the decisions are then read from the store.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from review_helpers import LiveServer, build_bench

from ggt.review import create_app
from ggt.store import Run

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]  # fmt: skip
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "review-screenshot.png"
TOKEN = "browser-test-token-0123456789"

# No skip when the browser is missing: `make test` installs Debian's chromium, so its absence is a
# broken set-up that must fail loudly, not a silently skipped end-to-end test.


def human_rows(run: Path) -> list[dict]:
    with Run.open(run) as r:
        return [
            dict(x) for x in r.store.query("SELECT * FROM decisions WHERE reviewer != 'policy' ORDER BY id")
        ]


def wait_rows(run: Path, n: int, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        rows = human_rows(run)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


@contextmanager
def open_page(app: Any, width: int = 1280, height: int = 720) -> Iterator[tuple[Any, Any, list[str]]]:
    """`app` served on loopback and opened in headless chromium, ready: (page, server, problems), where
    problems collects the page's errors and console errors."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with LiveServer(app) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(f"{server.url}/#token={TOKEN}")
            page.wait_for_selector("body[data-ready='1']", timeout=10_000)
            yield page, server, problems
        finally:
            browser.close()


def test_keyboard_review_in_chromium(review_run: Path, tmp_path: Path) -> None:
    assert Path(CHROMIUM).exists(), "needs Debian's chromium: `make test` installs it (apt install chromium)"
    app = create_app(review_run, reviewer="ann", token=TOKEN)
    with open_page(app) as (page, server, problems):
        assert "token" not in page.url  # taken out of the address bar
        ids = page.eval_on_selector_all("#list li", "els => els.map(e => e.title)")
        assert len(ids) == 5
        order = [it for it in _queue(server.url)]
        cur = lambda: page.eval_on_selector("#list li.cur", "e => Number(e.dataset.i)")  # noqa: E731

        until(lambda: page.eval_on_selector("#img-hq", "e => e.naturalWidth") > 0)
        page.keyboard.press("a")
        rows = wait_rows(review_run, 1)
        assert [(r["item_id"], r["decision"], r["reviewer"]) for r in rows] == [(order[0], "keep", "ann")]
        until(lambda: cur() == 1)
        until(lambda: page.eval_on_selector("#img-hq", "e => e.dataset.item") == order[1])

        page.keyboard.press("r")
        page.wait_for_selector("#picker:not([hidden])")
        page.keyboard.press("2")
        rows = wait_rows(review_run, 2)
        assert (rows[1]["item_id"], rows[1]["decision"], rows[1]["reasons"]) == (
            order[1], "reject", '["misalignment"]'
        )  # fmt: skip
        until(lambda: cur() == 2)

        page.keyboard.press("u")
        rows = wait_rows(review_run, 3)
        assert rows[2]["undoes"] == rows[1]["id"] and rows[2]["decision"] == "review"
        until(lambda: cur() == 1)

        page.keyboard.press("ArrowRight")
        until(lambda: cur() == 2)
        page.keyboard.press("ArrowRight")
        until(lambda: cur() == 3)
        page.keyboard.press("ArrowLeft")
        until(lambda: cur() == 2)
        assert cur() == 2
        page.keyboard.press("s")  # skip: moves on, writes nothing
        until(lambda: cur() == 3)
        assert len(human_rows(review_run)) == 3

        # Slider view and full resolution on demand; then the screenshot for the docs.
        page.keyboard.press("v")
        page.keyboard.press("h")
        until(lambda: page.text_content("#status") == "full resolution")
        assert page.is_visible("#pane-over") and not page.is_visible("#pane-lq")
        page.keyboard.press("v")
        until(lambda: page.eval_on_selector("#img-hq", "e => e.naturalWidth") > 0)
        page.keyboard.press("r")  # show the reason picker in the picture
        shot = tmp_path / "review-screenshot.png"
        page.screenshot(path=str(shot))
        page.keyboard.press("Escape")
        progress = page.text_content("#progress") or ""
        assert "you 1 " in progress, progress  # two decisions, one undone
        marks = page.eval_on_selector_all("#list li", "els => els.map(e => !!e.querySelector('.mine'))")
        assert marks == [True, False, False, False, False]  # the undone reject shows no mark
    assert problems == []
    assert 10_000 < shot.stat().st_size < 300_000
    if os.environ.get("GGT_UPDATE_SCREENSHOTS"):  # refresh the README's picture on request, never by default
        shutil.copy(shot, SCREENSHOT)


def test_a_slow_picture_of_an_item_left_behind_never_replaces_the_current_one(review_run: Path) -> None:
    """Arrow past an item whose pictures are slow to come: a decision before they show is refused, and
    when they arrive the view keeps showing the item now selected (it used to show the stale pair
    under the new title)."""
    app = create_app(review_run, reviewer="ann", token=TOKEN)
    slow: dict[str, str] = {}

    @app.middleware("http")
    async def delay(request, call_next):  # type: ignore[no-untyped-def]
        if slow and request.url.path.startswith(f"/api/image/{slow['id']}/"):
            await asyncio.sleep(1.5)
        return await call_next(request)

    with open_page(app) as (page, server, problems):
        order = _queue(server.url)
        slow["id"] = order[1]
        shown = lambda: page.eval_on_selector("#img-hq", "e => e.dataset.item")  # noqa: E731
        until(lambda: shown() == order[0])
        with page.expect_request(lambda r: f"/api/image/{order[1]}/" in r.url):
            page.keyboard.press("ArrowRight")  # to the slow item, whose pictures are now on their way
        page.keyboard.press("a")  # a decision on pictures not yet shown: refused
        until(lambda: "still loading" in (page.text_content("#status") or ""))
        assert human_rows(review_run) == []
        page.keyboard.press("ArrowRight")  # and on before they arrive
        until(lambda: shown() == order[2])
        page.wait_for_timeout(2500)  # the slow pictures arrive
        assert shown() == order[2]
        assert (page.text_content("#i-title") or "").startswith(order[2])
        assert page.eval_on_selector("#list li.cur", "e => Number(e.dataset.i)") == 2
        page.keyboard.press("a")
        rows = wait_rows(review_run, 1)
        assert [(r["item_id"], r["decision"]) for r in rows] == [(order[2], "keep")]
    assert problems == []


def test_compare_vote_by_key_in_chromium(tmp_path: Path) -> None:
    """Compare mode: one vote with the right-arrow key lands in the store with the order shown."""
    from ggt.review.compare import create_compare_app
    from ggt.store import RunStore

    bench = build_bench(tmp_path)
    app = create_compare_app(bench, voter="ann", token=TOKEN)
    with open_page(app, 1200, 500) as (page, _server, problems):
        until(lambda: page.eval_on_selector("#img-right", "e => e.naturalWidth") > 0)
        assert not (page.text_content("#reveal") or "").strip()  # no names before the vote
        page.keyboard.press("ArrowRight")
        page.wait_for_selector("body[data-voted]", timeout=10_000)
        reveal = page.text_content("#reveal") or ""
    assert problems == []
    with RunStore(bench / "bench.sqlite", create=False) as s:
        (row,) = s.query("SELECT * FROM preferences")
    assert (row["choice"], row["voter"]) == ("right", "ann")
    assert f"left {row['left_name']} · right {row['right_name']}" in reveal


def until(check: object, timeout: float = 10.0) -> None:
    """Poll from Python: the page's CSP forbids eval, which Playwright's string predicates need."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.03)


def _queue(url: str) -> list[str]:
    import httpx

    res = httpx.get(f"{url}/api/queue", headers={"X-GGT-Token": TOKEN})
    return [it["item_id"] for it in res.json()["items"]]
