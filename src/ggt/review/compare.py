"""`ggt bench review OUT`: the review app's compare mode, people's pairwise preferences for a benchmark.

The page shows one photo's LQ and two contestants' outputs, left and right in random order, without their
names; the person answers left, right, tie or skip, and only then sees who was who. The server deals each
comparison as a ticket (item, left contestant, right contestant), so the page never knows the names before
voting and cannot mislabel a vote: the vote names the ticket, the server records the order it dealt.
Every vote (skips too) is a row of the bench store's append-only `preferences` table, committed before
the answer returns. `ggt bench generators` (rerun with the same arguments: every call is cached) ranks
the votes with Bradley-Terry beside the judge's ranking.

Security is the review app's: loopback by default, a token otherwise, images only by ticket and side.
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from itertools import combinations
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from ggt.review.app import (
    PAGE_HEADERS,
    REVIEWER,
    _guard,
    _Stores,
    add_page_routes,
    is_loopback,
    run_server,
)
from ggt.store import StoreError, now

MANIFEST = "manifest.json"
STATIC = ("common.js", "compare.js", "compare.css")
MAX_TICKETS = 10_000  # dealt but unanswered comparisons kept in memory (oldest dropped first)
Choice = Literal["left", "right", "tie", "skip"]


class VoteIn(BaseModel):
    ticket: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    choice: Choice
    voter: str | None = Field(default=None, pattern=REVIEWER.pattern)


@dataclass(frozen=True)
class Ticket:
    item_id: str
    left: str
    right: str
    shown_at: float


class Bench:
    """The benchmark folder as the compare mode sees it: the manifest, and the bench store (created and
    filled with the runs' item rows if the bench was judged offline and has none yet)."""

    def __init__(self, out: Path) -> None:
        from ggt.bench.judge import BENCH_STORE, open_store, sync_items

        self.root = Path(out).resolve()
        path = self.root / MANIFEST
        if not path.is_file():
            raise StoreError(
                f"{out} is not a benchmark folder (no {MANIFEST}): run `ggt bench generators` first"
            )
        doc = json.loads(path.read_text(encoding="utf-8"))
        self.names: list[str] = list(doc["contestants"])
        self.items: dict[str, dict[str, Any]] = {it["id"]: it for it in doc["items"]}
        # Every pair of contestants that both made an output for the photo.
        self.pairs: list[tuple[str, str, str]] = [
            (i, a, b) for i, it in self.items.items() for a, b in combinations(self.names, 2)
            if a in it["hq"] and b in it["hq"]
        ]  # fmt: skip
        runs = sorted(p for p in (self.root / "runs").glob("*") if (p / "ggt.sqlite").is_file())
        store = open_store(self.root)
        try:
            sync_items(store, runs)
        finally:
            store.close()
        self.store_path = self.root / BENCH_STORE

    def file(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        # The manifest is ours, but a hand-edited one must still not lead outside the bench folder.
        if not path.is_relative_to(self.root) or not path.is_file():
            raise HTTPException(404, "no such image")
        return path


def create_compare_app(
    out: Path,
    voter: str | None = None,
    token: str | None = None,
    allowed_hosts: set[str] | None = None,
    rng: random.Random | None = None,
) -> FastAPI:
    """The compare page over the benchmark folder `out` (written by `ggt bench generators`).

    `voter`: the name recorded with votes whose page gives none (None: anonymous). `rng`: the source of
    the pair choice and the left/right order (seed it in tests).
    """
    if voter is not None and not REVIEWER.match(voter):
        raise ValueError(f"bad voter name {voter!r}: letters, digits and _.@- only")
    bench = Bench(out)
    stores = _Stores(bench.store_path)
    rand = rng or random.Random()
    tickets: OrderedDict[str, Ticket] = OrderedDict()
    lock = threading.Lock()  # tickets and the random source are shared by the server's threads

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        stores.close()

    app = FastAPI(title="ggt compare", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.token = token
    app.state.hosts = allowed_hosts or {"127.0.0.1", "localhost", "::1", "[::1]"}
    app.state.stores = stores
    api = APIRouter(prefix="/api/compare", dependencies=[Depends(_guard)])

    def counts() -> dict[tuple[str, str, str], int]:
        rows = stores.get().query(
            "SELECT item_id, left_name, right_name, COUNT(*) AS n FROM preferences GROUP BY 1, 2, 3"
        )
        out: dict[tuple[str, str, str], int] = {}
        for r in rows:
            a, b = sorted((r["left_name"], r["right_name"]), key=bench.names.index)
            key = (r["item_id"], a, b)
            out[key] = out.get(key, 0) + int(r["n"])
        return out

    @api.get("/next")
    def next_pair() -> dict[str, Any]:
        """Deal a comparison: one of the least-voted (photo, pair), sides in random order."""
        if not bench.pairs:
            raise HTTPException(404, "nothing to compare: the benchmark needs two contestants with outputs")
        seen = counts()
        least = min(seen.get(p, 0) for p in bench.pairs)
        with lock:
            item_id, a, b = rand.choice([p for p in bench.pairs if seen.get(p, 0) == least])
            left, right = (a, b) if rand.random() < 0.5 else (b, a)
            ticket = secrets.token_urlsafe(12)
            tickets[ticket] = Ticket(item_id, left, right, now())
            while len(tickets) > MAX_TICKETS:
                tickets.popitem(last=False)
        it = bench.items[item_id]
        return {
            "ticket": ticket, "item_id": item_id, "category": it.get("category"),
            "images": {side: f"/api/compare/image/{ticket}/{side}" for side in ("lq", "left", "right")},
            "votes": sum(seen.values()), "pairs": len(bench.pairs),
        }  # fmt: skip

    def ticket_of(ticket: str) -> Ticket:
        with lock:
            t = tickets.get(ticket)
        if t is None:
            raise HTTPException(409, "unknown or expired comparison: load the next one")
        return t

    @api.get("/image/{ticket}/{side}")
    def image(ticket: str, side: Literal["lq", "left", "right"]) -> FileResponse:
        t = ticket_of(ticket)
        it = bench.items[t.item_id]
        rel = it["lq"] if side == "lq" else it["hq"][t.left if side == "left" else t.right]
        return FileResponse(bench.file(rel), headers={"Cache-Control": "private, no-store"})

    @api.post("/vote")
    def vote(body: VoteIn, x_ggt_reviewer: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        name = body.voter or x_ggt_reviewer or voter
        if name is not None and not REVIEWER.match(name):
            raise HTTPException(400, "bad voter name")
        t = ticket_of(body.ticket)
        store = stores.get()
        with store.transaction() as conn:  # committed before the answer leaves: a vote is never lost
            row = conn.execute(
                "INSERT INTO preferences(item_id, left_name, right_name, choice, voter, shown_at, created_at)"
                " VALUES (?,?,?,?,?,?,?)",
                (t.item_id, t.left, t.right, body.choice, name, t.shown_at, time.time()),
            ).lastrowid
        with lock:
            tickets.pop(body.ticket, None)  # one vote per dealt comparison
        winner = {"left": t.left, "right": t.right}.get(body.choice)
        return {"id": row, "item_id": t.item_id, "left": t.left, "right": t.right, "choice": body.choice,
                "winner": winner, "voter": name}  # fmt: skip

    @api.get("/progress")
    def progress(x_ggt_reviewer: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        store = stores.get()
        rows = store.query("SELECT choice, COUNT(*) AS n FROM preferences GROUP BY choice")
        mine = x_ggt_reviewer or voter
        you = store.scalar("SELECT COUNT(*) FROM preferences WHERE voter = ?", (mine,)) if mine else 0
        return {"votes": {r["choice"]: r["n"] for r in rows}, "you": you, "pairs": len(bench.pairs),
                "contestants": len(bench.names)}  # fmt: skip

    app.include_router(api)
    page = resources.files("ggt.review").joinpath("static")

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return Response(
            page.joinpath("compare.html").read_bytes(), media_type="text/html", headers=PAGE_HEADERS
        )

    add_page_routes(app, page, STATIC)
    return app


def serve_compare(
    out: Path, host: str = "127.0.0.1", port: int = 8766, voter: str | None = None, token: str | None = None
) -> None:
    """Serve the compare page for the benchmark folder `out` until interrupted (off loopback: a token)."""
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(24)
    app = create_compare_app(out, voter=voter, token=token)
    who = f"voter {voter}" if voter else "anonymous votes unless the page names a voter"
    run_server(app, host, port, token, lambda url: f"ggt bench review: open {url}  ({who}; Ctrl+C to stop)")
