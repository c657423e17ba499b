"""Review server latency on a store of 100,000 pairs, against bare SQLite on the same rows.

Goals (manual review issue): the queue's first page in < 200 ms and a decision POST in < 50 ms (median
over 200 requests, httpx against uvicorn on loopback). Each is also timed as the bare SQLite work it
stands on, in the same run, and the ratio reported. Results go to docs/review.md.
Run: `python benchmarks/bench_review.py [--n 100000] [--requests 200]`.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn

from _common import machine
from ggt.review import create_app
from ggt.review.queries import QueueFilter, queue_page
from ggt.store import Run, dumps, now

DOC = Path(__file__).resolve().parent.parent / "docs" / "review.md"
METRICS = [f"m{k:02d}.value" for k in range(30)] + ["psnr", "ssim", "misalign.shift_px", "drift.de_mean"]
RULES = ["shifted", "unnatural", "colour_drift", "unchanged", "judge_rejects", "crop_suspect"]


def fill_store(root: Path, n: int, seed: int = 0) -> None:
    """n items with analyze, synth, qc_metrics and qc rows and a policy decision each, shaped like the
    real ones (about 1 KB of JSON per QC result), inserted with executemany in one transaction."""
    rng = random.Random(seed)
    run = Run.create(root)
    t = now()
    items, stages, decisions = [], [], []
    for i in range(n):
        item_id = f"{i:016x}"
        items.append((item_id, f"{i:064x}", rng.choice(["rain", "haze", "snow", "low_light"]), f"/src/{i}.jpg",
                      f"{i}.jpg", 100_000, "JPEG", "RGB", 1024, 768, f"lq/{item_id}.png", "0" * 16, t))  # fmt: skip
        verdict = rng.choices(["review", "reject", "keep"], weights=[1, 3, 6])[0]
        reasons = rng.sample(RULES, rng.randint(0, 2)) if verdict != "keep" else []
        metrics = {m: rng.uniform(0, 40) for m in METRICS}
        qc = {"verdict": verdict, "reasons": reasons, "metrics": metrics, "category": items[-1][2],
              "judge": {"verdict": verdict, "scores": {"content": 1.0}}, "judge_name": "heuristic"}  # fmt: skip
        stages += [
            (
                item_id,
                "analyze",
                "",
                dumps({"report": {"category": items[-1][2]}, "prompt": "Remove the rain."}),
                t,
            ),
            (item_id, "synth", "classical", dumps({"hq_path": f"hq/classical/{item_id}.png"}), t),
            (item_id, "qc_metrics", "classical", dumps({"metrics": metrics}), t),
            (item_id, "qc", "classical", dumps(qc), t),
        ]
        decisions.append((item_id, "classical", "policy", verdict, json.dumps(reasons), "policy default", t))
    with run.store.transaction() as conn:
        conn.executemany(
            "INSERT INTO items(id, sha256, category, source_path, source_name, source_bytes, format, mode, width,"
            " height, lq_path, phash, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            items,
        )
        conn.executemany(
            "INSERT INTO stage_results(item_id, stage, variant, status, result, updated_at)"
            " VALUES (?,?,?,'done',?,?)",
            stages,
        )
        conn.executemany(
            "INSERT INTO decisions(item_id, variant, reviewer, decision, reasons, note, created_at)"
            " VALUES (?,?,?,?,?,?,?)",
            decisions,
        )
    run.store.conn.execute("ANALYZE")
    run.close()


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "run"
        t0 = time.perf_counter()
        fill_store(root, args.n)
        fill_s = time.perf_counter() - t0
        sock = socket.socket()
        # uvicorn given a ready socket leaves Nagle on; accepted sockets inherit this, which removes the
        # 40 ms delayed-ACK stall a header-then-body response otherwise meets (as with uvicorn's own bind).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = uvicorn.Server(
            uvicorn.Config(create_app(root, reviewer="bench"), log_level="warning", access_log=False)
        )
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        rows: list[tuple[str, str, float, float, float]] = []
        try:
            with httpx.Client(base_url=url, timeout=30) as c, Run.open(root) as r:
                conn = r.store.conn
                first = c.get("/api/queue", params={"limit": 50}).json()
                cursor = first["next"]
                cases: list[tuple[str, dict, QueueFilter, str | None]] = [
                    ("queue, first page (50)", {"limit": 50}, QueueFilter(), None),
                    ("queue, next page by cursor", {"limit": 50, "cursor": cursor}, QueueFilter(), cursor),
                    ("queue, verdict=keep", {"limit": 50, "verdict": "keep"}, QueueFilter(verdict="keep"), None),
                    ("queue, rule fired", {"limit": 50, "rule": "shifted"}, QueueFilter(rule="shifted"), None),
                    ("queue, category + psnr range", {"limit": 50, "category": "rain", "metric_min": "psnr:30"},
                     QueueFilter(category="rain", metric_min={"psnr": 30.0}), None),
                    ("queue, sorted by a metric", {"limit": 50, "sort": "psnr", "desc": "true"},
                     QueueFilter(sort="psnr", descending=True), None),
                ]  # fmt: skip
                for name, params, f, cur in cases:
                    reps = args.requests if "first" in name else 5 if "sorted" in name else 30
                    api = timed(lambda p=params: c.get("/api/queue", params=p).raise_for_status(), reps)
                    bare = timed(lambda f=f, cur=cur: queue_page(conn, f, 50, cur), reps)
                    sql = _bare_sql(conn, f, cur)
                    raw = timed(sql, reps)
                    rows.append((name, f"{reps}", med(api), med(bare), med(raw)))
                ids = [it["item_id"] for it in c.get("/api/queue", params={"limit": 500}).json()["items"]]
                k = iter(range(10**9))

                def post() -> None:
                    i = ids[next(k) % len(ids)]
                    body = {
                        "item_id": i,
                        "variant": "classical",
                        "decision": "reject",
                        "reasons": ["artefacts"],
                    }
                    c.post("/api/decision", json=body).raise_for_status()

                def bare_insert() -> None:
                    i = ids[next(k) % len(ids)]
                    with r.store.transaction() as w:
                        w.execute(
                            "INSERT INTO decisions(item_id, variant, reviewer, decision, reasons, note, created_at)"
                            " VALUES (?,?,?,?,?,?,?)",
                            (i, "classical", "bare", "reject", '["artefacts"]', None, now()),
                        )

                api = timed(post, args.requests)
                raw = timed(bare_insert, args.requests)
                rows.append(("decision POST", f"{args.requests}", med(api), float("nan"), med(raw)))
                undo = timed(lambda: c.post("/api/undo", json={}).raise_for_status(), 50)
                rows.append(("undo POST", "50", med(undo), float("nan"), float("nan")))
                prog = timed(lambda: c.get("/api/progress").raise_for_status(), 20)
                rows.append(("progress counts", "20", med(prog), float("nan"), float("nan")))
                thumbs = len(list((root / "cache").glob("thumbs/*")))
                assert thumbs == 0
        finally:
            server.should_exit = True
            thread.join(10)
    table = [
        "| request | n | API median ms | queue_page() ms | bare SQL ms | API / bare SQL |",
        "|---|---|---|---|---|---|",
    ]
    for name, n, api_ms, fn_ms, raw_ms in rows:
        fn = "" if fn_ms != fn_ms else f"{fn_ms:.2f}"
        raw = "" if raw_ms != raw_ms else f"{raw_ms:.2f}"
        ratio = "" if raw_ms != raw_ms else f"{api_ms / raw_ms:.1f}x"
        table.append(f"| {name} | {n} | {api_ms:.2f} | {fn} | {raw} | {ratio} |")
    body = (
        f"_{time.strftime('%Y-%m-%d')}, {machine()}; {args.n:,} pairs (store filled in {fill_s:.1f} s)_\n\n"
        + "\n".join(table)
        + "\n"
    )
    print(body)
    text = DOC.read_text(encoding="utf-8")
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    DOC.write_text(
        re.sub(f"{start}.*?{end}", lambda _: f"{start}\n{body}{end}", text, flags=re.S), encoding="utf-8"
    )


def _bare_sql(conn: object, f: QueueFilter, cursor: str | None) -> Callable[[], object]:
    """The plainest SQL that returns the same 50 rows (no JSON decoding, no decision look-ups)."""
    import sqlite3

    assert isinstance(conn, sqlite3.Connection)
    base = "SELECT s.item_id, s.variant, s.result FROM stage_results s JOIN items i ON i.id = s.item_id WHERE s.stage = 'qc'"
    if f.sort:
        sql = f"{base} ORDER BY json_extract(s.result, '$.metrics.\"{f.sort}\"') DESC LIMIT 50"
        return lambda: conn.execute(sql).fetchall()
    if f.rule:
        sql = (
            f"{base} AND json_extract(s.result, '$.verdict') = 'review' AND EXISTS (SELECT 1 FROM"
            " json_each(s.result, '$.reasons') r WHERE r.value = ?) ORDER BY s.variant,"
            " s.item_id LIMIT 50"
        )
        return lambda: conn.execute(sql, (f.rule,)).fetchall()
    if f.category:
        sql = (
            f"{base} AND json_extract(s.result, '$.verdict') = 'review' AND i.category = ? AND"
            " json_extract(s.result, '$.metrics.psnr') >= 30 ORDER BY s.variant,"
            " s.item_id LIMIT 50"
        )
        return lambda: conn.execute(sql, (f.category,)).fetchall()
    verdict = f.verdict or "review"
    after = ""
    params: list[object] = [verdict]
    if cursor:
        import base64

        state = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after = " AND (s.variant, s.item_id) > (?, ?)"
        params += [state["g"], state["i"]]
    sql = f"{base} AND json_extract(s.result, '$.verdict') = ?{after} ORDER BY s.variant, s.item_id LIMIT 50"
    return lambda: conn.execute(sql, params).fetchall()


if __name__ == "__main__":
    main()
