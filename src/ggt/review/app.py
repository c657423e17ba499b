"""`ggt review`: a FastAPI app and one static page for deciding pairs by hand.

Security model, in short: the server binds 127.0.0.1 unless told otherwise, and any other address needs a
token. The token reaches the page through the URL fragment (never sent to the server, never written into
served HTML) and comes back on every API request in the `X-GGT-Token` header. Images are addressed only by
item id, kind and a variant the store knows; no client string ever becomes a path. State changes are
POST with a JSON body, which a cross-site form cannot send without a CORS preflight we never answer.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
import socket
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from ggt.review import queries as q
from ggt.review.thumbs import thumb_path, thumbnail
from ggt.store import RunStore, StoreError
from ggt.store.run import STORE_FILE

TOKEN_HEADER = "X-GGT-Token"
REVIEWER_HEADER = "X-GGT-Reviewer"
REVIEWER = re.compile(r"^[A-Za-z0-9_.@\-]{1,64}$")
STATIC = ("common.js", "app.js", "app.css")
# The page loads only its own script, style and blob: images; nothing inline, nothing from elsewhere.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; script-src 'self'; style-src 'self';"
    " frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
LOOPBACK_NAMES = {"localhost"}
ReasonTag = Literal[
    "hallucination", "misalignment", "colour_shift", "residual_degradation", "artefacts", "other"
]


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class DecisionIn(BaseModel):
    item_id: str = Field(pattern=q.ITEM_ID.pattern)
    variant: str = Field(min_length=1, max_length=200)
    decision: Literal["keep", "reject"]
    reasons: list[ReasonTag] = Field(default_factory=list, max_length=6)
    note: str | None = Field(default=None, max_length=2000)


class UndoIn(BaseModel):
    item_id: str | None = Field(default=None, pattern=q.ITEM_ID.pattern)
    variant: str | None = Field(default=None, max_length=200)


class _Stores:
    """One store connection per server thread: a sqlite3 connection must not carry two threads'
    transactions at once, and WAL lets the readers run beside the one writer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[RunStore] = []
        self._lock = threading.Lock()
        self._gen = 0

    def get(self) -> RunStore:
        store, gen = getattr(self._local, "store", None), getattr(self._local, "gen", -1)
        if store is None or gen != self._gen:
            store = RunStore(self.path, create=False)
            self._local.store, self._local.gen = store, self._gen
            with self._lock:
                self._all.append(store)
        return store

    def close(self) -> None:
        # A thread still holding a closed store sees the new generation and opens a fresh one.
        with self._lock:
            self._gen += 1
            for store in self._all:
                with suppress(sqlite3.ProgrammingError):
                    store.close()
            self._all.clear()


def create_app(
    run: Path, reviewer: str = "reviewer", token: str | None = None, allowed_hosts: set[str] | None = None
) -> FastAPI:
    """The review app over the run folder `run`.

    `token`: required on every API request when set. `allowed_hosts`: Host header names accepted when no
    token is set (default: loopback names), which stops a DNS-rebinding page from reaching a tokenless
    server on 127.0.0.1.
    """
    root = Path(run).resolve()
    if not (root / STORE_FILE).exists():
        raise StoreError(f"{run} is not a ggt run (no {STORE_FILE})")
    if not REVIEWER.match(reviewer) or reviewer == q.POLICY:
        raise ValueError(f"bad reviewer name {reviewer!r}: letters, digits and _.@- only, not 'policy'")
    # Open once up front so a schema migration (the review indexes) happens before any request.
    RunStore(root / STORE_FILE, create=False).close()
    stores = _Stores(root / STORE_FILE)
    hosts = allowed_hosts or {"127.0.0.1", "localhost", "::1", "[::1]"}
    facet_cache: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        stores.close()

    app = FastAPI(title="ggt review", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    app.state.token = token
    app.state.hosts = hosts
    app.state.stores = stores
    app.state.reviewer = reviewer
    api = APIRouter(prefix="/api", dependencies=[Depends(_guard)])

    @api.get("/whoami")
    def whoami(name: Who) -> dict[str, Any]:
        return {"reviewer": name, "run": root.name}

    @api.get("/facets")
    def get_facets() -> dict[str, Any]:
        c = stores.get().conn
        if "v" not in facet_cache:
            facet_cache["v"] = q.facets(c)
        return facet_cache["v"]

    @api.get("/progress")
    def get_progress() -> dict[str, Any]:
        return q.progress(stores.get().conn)

    @api.get("/queue")
    def get_queue(
        category: str | None = None,
        verdict: str | None = None,
        rule: str | None = None,
        generator: str | None = None,
        metric_min: Annotated[list[str] | None, Query()] = None,
        metric_max: Annotated[list[str] | None, Query()] = None,
        pending: bool = False,
        sort: str | None = None,
        desc: bool = False,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=2000)] = None,
    ) -> dict[str, Any]:
        f = q.QueueFilter(
            category=category or None,
            verdict=verdict or None,
            rule=rule or None,
            generator=generator or None,
            metric_min=_ranges(metric_min),
            metric_max=_ranges(metric_max),
            pending=pending,
            sort=sort or None,
            descending=desc,
        )
        try:
            return q.queue_page(stores.get().conn, f, limit, cursor)
        except q.QueryError as exc:
            raise HTTPException(400, str(exc)) from None

    @api.get("/pair/{item_id}")
    def get_pair(item_id: str, variant: str) -> dict[str, Any]:
        c = stores.get().conn
        detail = q.pair_detail(c, item_id, variant) if q.ITEM_ID.match(item_id) else None
        if detail is None:
            raise HTTPException(404, "no such pair")
        return detail

    @api.get("/image/{item_id}/{kind}")
    def get_image(item_id: str, kind: str, variant: str = "", full: bool = False) -> FileResponse:
        c = stores.get().conn
        path = _image_path(c, root, item_id, kind, variant)
        if full:
            return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})
        target = thumbnail(path, thumb_path(root, item_id, kind, variant))
        return FileResponse(
            target, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
        )

    @api.post("/decision")
    def post_decision(body: DecisionIn, name: Who) -> dict[str, Any]:
        # The store is taken here, in the thread that runs this endpoint: one connection, one thread.
        if not q.pair_exists(stores.get().conn, body.item_id, body.variant):
            raise HTTPException(404, "no such pair")
        if "other" in body.reasons and not (body.note or "").strip():
            raise HTTPException(400, "reason 'other' needs a note")
        if body.decision == "keep" and body.reasons:
            raise HTTPException(400, "reason tags go with reject only")
        row = q.record_decision(
            stores.get(), body.item_id, body.variant, name, body.decision, list(body.reasons), body.note
        )
        return {"id": row, "item_id": body.item_id, "variant": body.variant, "decision": body.decision}

    @api.post("/undo")
    def post_undo(body: UndoIn, name: Who) -> dict[str, Any]:
        if (body.item_id is None) != (body.variant is None):
            raise HTTPException(400, "give both item_id and variant, or neither")
        pair = (body.item_id, body.variant) if body.item_id and body.variant else None
        try:
            return q.undo_last(stores.get(), name, pair)
        except q.UndoError as exc:
            raise HTTPException(409, str(exc)) from None

    app.include_router(api)

    page = resources.files("ggt.review").joinpath("static")

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return Response(
            page.joinpath("index.html").read_bytes(), media_type="text/html", headers=PAGE_HEADERS
        )

    add_page_routes(app, page, STATIC)
    return app


def add_page_routes(app: FastAPI, page: Any, static_files: tuple[str, ...]) -> None:
    """What every ggt page app serves besides its API: its static files, an empty favicon, and a store
    error as 503 (the store is busy or gone; the page retries)."""

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)  # browsers ask on their own; an empty answer keeps logs clean

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in static_files:
            raise HTTPException(404, "not found")
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response(page.joinpath(name).read_bytes(), media_type=kind, headers=PAGE_HEADERS)

    @app.exception_handler(StoreError)
    def store_error(_: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)


# Dependencies live at module level: FastAPI resolves their annotations from the module's globals.


def _guard(
    request: Request,
    x_ggt_token: Annotated[str | None, Header()] = None,
    content_type: Annotated[str | None, Header()] = None,
) -> None:
    token: str | None = request.app.state.token
    if token is not None:
        if x_ggt_token is None or not hmac.compare_digest(x_ggt_token.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong token")
    elif (request.url.hostname or "") not in request.app.state.hosts:
        raise HTTPException(403, "host not allowed")
    if request.method == "POST" and (content_type or "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "POST needs a JSON body")


def _who(request: Request, x_ggt_reviewer: Annotated[str | None, Header()] = None) -> str:
    name = x_ggt_reviewer or request.app.state.reviewer
    if not REVIEWER.match(name) or name == q.POLICY:
        raise HTTPException(400, "bad reviewer name")
    return name


Who = Annotated[str, Depends(_who)]


def _ranges(values: list[str] | None) -> dict[str, float]:
    """`name:value` pairs from the query string."""
    out: dict[str, float] = {}
    for v in values or []:
        name, _, num = v.rpartition(":")
        try:
            out[name] = float(num)
        except ValueError:
            raise HTTPException(400, f"bad metric range {v!r}: want NAME:NUMBER") from None
    return out


def _image_path(c: sqlite3.Connection, root: Path, item_id: str, kind: str, variant: str) -> Path:
    """The file of one image, taken from the store only; 404 for anything it does not know."""
    if not q.ITEM_ID.match(item_id) or kind not in ("lq", "hq"):
        raise HTTPException(404, "no such image")
    if kind == "lq":
        row = c.execute("SELECT lq_path FROM items WHERE id = ?", (item_id,)).fetchone()
        rel = row[0] if row else None
    else:
        row = c.execute(
            "SELECT json_extract(result, '$.hq_path') FROM stage_results WHERE item_id = ? AND stage = 'synth'"
            " AND variant = ? AND status = 'done'",
            (item_id, variant),
        ).fetchone()
        rel = (row[0] or f"hq/{variant}/{item_id}.png") if row else None
    if rel is None:
        raise HTTPException(404, "no such image")
    path = (root / rel).resolve()
    # The store is trusted, but a hand-edited row must still not lead outside the run folder.
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(404, "no such image")
    return path


def serve(
    run: Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    reviewer: str = "reviewer",
    token: str | None = None,
) -> None:
    """Serve the review page for `run` until interrupted. Binding a non-loopback address needs a token:
    the given one, or a fresh one printed with the URL to open."""
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(24)
    app = create_app(run, reviewer=reviewer, token=token)
    run_server(
        app, host, port, token, lambda url: f"ggt review: open {url}  (reviewer {reviewer}; Ctrl+C to stop)"
    )


def run_server(app: FastAPI, host: str, port: int, token: str | None, banner: Callable[[str], str]) -> None:
    """Serve `app` until interrupted, printing `banner(url)` once the port is ours."""
    import uvicorn

    sock = _bind(host, port)
    shown = host if ":" not in host else f"[{host}]"
    url = f"http://{shown}:{port}/" + (f"#token={token}" if token else "")
    print(banner(url), flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port), bound before the URL is printed: with the port taken, uvicorn
    printed its error after our URL, which led to whatever server held the port (another run's page)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
