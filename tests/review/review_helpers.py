"""Helpers of the review tests: a small real run, a hand-made generator, uvicorn in a thread."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from fixtures import badfiles as bf
from fixtures.runs import set_analysis
from ggt.store import Run, dumps, now

PHOTOS = ["coffee", "chelsea", "astronaut", "rocket", "camera"]
NAMES = ["bad", "good", "mid"]  # compare-mode contestants, deliberately not in strength order


def build_run(root: Path, n: int = 5) -> Path:
    from ggt.generate.stage import synth
    from ggt.ingest import ingest
    from ggt.qc.stage import qc

    src = root / "src" / "haze"
    src.mkdir(parents=True)
    for i in range(n):
        img = bf.photo(PHOTOS[i % len(PHOTOS)], size=(160, 120)).astype(np.float32)
        img = np.clip(img * 0.6 + 90 + i, 0, 255).astype(np.uint8)  # hazy: washed out
        (src / f"p{i:02d}.png").write_bytes(bf.save(img, "PNG"))
    run = root / "run"
    ingest([root / "src"], run, overrides=["ingest.workers=1"])
    report = {"category": "haze", "degradations": [{"type": "haze", "severity": 0.6}], "scene": "",
              "measures": {}, "analyzer": "heuristic", "model": None}  # fmt: skip
    # Fixed analysis rows: the review page shows whatever the analyzer wrote; its judgement is not tested here.
    set_analysis(run, report, lambda item_id: f"Remove the haze of {item_id}.", prompting=None)
    synth(run)
    qc(run, overrides=["qc.report=false", "qc.workers=1"])
    return run


def add_variant(run: Path, variant: str, rows: list[dict]) -> list[str]:
    """A second generator whose QC rows are written by hand (verdict, reasons, metrics per pair), so the
    filter tests know exactly what each query must return. Its HQ files are copies of the LQ files."""
    with Run.open(run) as r, r.store.transaction() as conn:
        items = conn.execute("SELECT id, lq_path FROM items ORDER BY id").fetchall()
        ids = [row[0] for row in items]
        for (item_id, lq_rel), spec in zip(items, rows, strict=False):
            rel = f"hq/{variant}/{item_id}.png"
            (run / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(run / lq_rel, run / rel)
            conn.execute(
                "INSERT INTO stage_results(item_id, stage, variant, status, result, updated_at)"
                " VALUES (?, 'synth', ?, 'done', ?, ?)",
                (item_id, variant, dumps({"hq_path": rel}), now()),
            )
            result = {"verdict": spec["verdict"], "reasons": spec.get("reasons", []), "category": "haze",
                      "metrics": spec.get("metrics", {}), "judge": None}  # fmt: skip
            conn.execute(
                "INSERT INTO stage_results(item_id, stage, variant, status, result, updated_at)"
                " VALUES (?, 'qc', ?, 'done', ?, ?)",
                (item_id, variant, dumps(result), now()),
            )
            conn.execute(
                "INSERT INTO decisions(item_id, variant, reviewer, decision, reasons, created_at)"
                " VALUES (?, ?, 'policy', ?, ?, ?)",
                (item_id, variant, spec["verdict"], dumps(spec.get("reasons", [])), now()),
            )
    return ids[: len(rows)]


def build_bench(root: Path) -> Path:
    """A benchmark folder as `ggt bench generators` leaves it: a run, three contestants' outputs, the
    manifest; no bench store yet (an offline-judged bench has none)."""
    from ggt.bench.report import write_manifest
    from ggt.ingest import ingest

    src = root / "src" / "haze"
    src.mkdir(parents=True)
    for i, name in enumerate(["coffee", "chelsea", "rocket", "camera"]):
        img = bf.photo(name, size=(96, 64)).astype(np.uint8)
        (src / f"p{i}.png").write_bytes(bf.save(img, "PNG"))
    out = root / "bench"
    run = out / "runs" / "fixed"
    ingest([root / "src"], run, overrides=["ingest.workers=1"])
    items, hq = {}, {}
    with Run.open(run) as r:
        rows = r.store.query("SELECT id, source_name, lq_path FROM items ORDER BY source_name")
    for row in rows:
        items[row["id"]] = {"source_name": row["source_name"], "category": "haze", "lq": run / row["lq_path"]}
        for ci, name in enumerate(NAMES):
            path = run / "hq" / name / f"{row['id']}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            # Distinct bytes per contestant, so a test can tell which one a served image is.
            shutil.copy(run / row["lq_path"], path)
            path.write_bytes(path.read_bytes() + name.encode())
            hq[(ci, row["id"])] = path
    write_manifest(out, NAMES, items, sorted(items), hq)
    return out


class LiveServer:
    """uvicorn serving an app in a thread on a free loopback port (the socket is bound first: no race)."""

    def __init__(self, app: object) -> None:
        import socket
        import threading

        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Inherited by accepted sockets: without it a response's header and body writes meet Nagle.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
