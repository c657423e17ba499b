"""Runs for export tests, built from store rows and small PNGs (no analyzer, generator or QC needed)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ggt.imaging import encode_image
from ggt.store import Run, dumps, now


def image(seed: int, w: int, h: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def make_run(
    root: Path,
    categories: dict[str, int],
    *,
    size: tuple[int, int] = (40, 32),
    scale: int = 1,
    generators: tuple[str, ...] = ("classical",),
    decision: str = "keep",
    near_dups: tuple[tuple[int, int], ...] = (),
    hq_from_lq: bool = False,
) -> tuple[Path, list[str]]:
    """A run with one item per (category, index), each with a done synth + qc result and a policy decision.

    `near_dups` are (a, b) item indexes: item b gets near_dup_of = item a. With `hq_from_lq` the HQ is the
    LQ enlarged by pixel repetition, so a test can check that crops of both line up."""
    run = root / "run"
    ids: list[str] = []
    with Run.create(run) as r, r.store.transaction() as conn:
        k = 0
        for cat, n in sorted(categories.items()):
            for _ in range(n):
                item = hashlib.sha256(f"item{k}".encode()).hexdigest()[:16]
                ids.append(item)
                w, h = size
                (run / "lq").mkdir(exist_ok=True)
                (run / "lq" / f"{item}.png").write_bytes(encode_image(image(k, w, h), "png"))
                conn.execute(
                    "INSERT INTO items(id, sha256, category, source_path, source_name, source_bytes, format, mode,"
                    " width, height, lq_path, phash, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (item, item * 4, cat, f"/src/{cat}/p{k}.jpg", f"p{k}.jpg", 1, "PNG", "RGB", w, h,
                     f"lq/{item}.png", f"{k:016x}", now()),
                )  # fmt: skip
                report = {"category": cat, "degradations": [{"type": cat, "severity": 0.5}]}
                conn.execute(
                    "INSERT INTO stage_results(item_id, stage, variant, status, result, updated_at)"
                    " VALUES (?, 'analyze', '', 'done', ?, ?)",
                    (
                        item,
                        dumps({"report": report, "prompt": f"fix {item}", "prompting": "adaptive"}),
                        now(),
                    ),
                )
                for g in generators:
                    hq = run / "hq" / g / f"{item}.png"
                    hq.parent.mkdir(parents=True, exist_ok=True)
                    lq_px = image(k, w, h)
                    hq_px = (
                        np.repeat(np.repeat(lq_px, scale, 0), scale, 1)
                        if hq_from_lq
                        else image(10_000 + k, w * scale, h * scale)
                    )
                    hq.write_bytes(encode_image(hq_px, "png"))
                    synth = {"hq_path": f"hq/{g}/{item}.png", "generator": g, "model": f"{g}-model",
                             "prompt": f"fix {item}"}  # fmt: skip
                    qc = {
                        "verdict": decision,
                        "reasons": [],
                        "metrics": {"psnr": 30.0 + k % 5},
                        "judge": None,
                    }
                    for stage, result in (("synth", synth), ("qc", qc)):
                        conn.execute(
                            "INSERT INTO stage_results(item_id, stage, variant, status, result, updated_at)"
                            " VALUES (?, ?, ?, 'done', ?, ?)",
                            (item, stage, g, dumps(result), now()),
                        )
                    conn.execute(
                        "INSERT INTO decisions(item_id, variant, reviewer, decision, reasons, created_at)"
                        " VALUES (?, ?, 'policy', ?, '[]', ?)",
                        (item, g, decision, now()),
                    )
                k += 1
        for a, b in near_dups:
            conn.execute("UPDATE items SET near_dup_of = ? WHERE id = ?", (ids[a], ids[b]))
    return run, ids


def decide(run: Path, item: str, decision: str, variant: str = "classical", reviewer: str = "alice") -> None:
    with Run.open(run) as r, r.store.transaction() as conn:
        conn.execute(
            "INSERT INTO decisions(item_id, variant, reviewer, decision, reasons, created_at) VALUES (?,?,?,?,?,?)",
            (item, variant, reviewer, decision, json.dumps(["by hand"]), now()),
        )
