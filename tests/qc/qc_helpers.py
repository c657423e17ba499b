"""Shared helpers of the QC stage tests: a tiny run folder with hand-made pairs (no synth needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ggt.degrade import apply_preset
from ggt.execute.local import Outcome, record_outcomes
from ggt.imaging import encode_image, read_image
from ggt.photos import load_photo
from ggt.qc.corrupt import corrupt
from ggt.store import Run


def clean(name: str, h: int = 192, w: int = 256) -> np.ndarray:
    img = load_photo(name).astype(np.float32) / 255
    return np.ascontiguousarray(img[:h, :w])


def make_run(root: Path, pairs: dict[str, str], variant: str = "classical") -> dict[str, str]:
    """Ingest one rain LQ per photo, then write its HQ (clean, a copy of the LQ, or corrupted as `pairs[photo]` says) with
    a synth row, the way `ggt synth` records it. Returns {photo: item_id}."""
    src = root / "src"
    src.mkdir(parents=True)
    hqs = {}
    for i, (name, kind) in enumerate(pairs.items()):
        hq = clean(name)
        lq = apply_preset(hq, "rain", i + 1).image
        (src / f"{name}.png").write_bytes(encode_image(lq, "png"))
        if kind == "copy":  # the HQ is the LQ as stored
            hq = read_image_back(lq)
        elif kind != "good":
            donor = clean("coffee" if name != "coffee" else "rocket")
            hq, _ = corrupt(kind, hq, read_image_back(lq), 7, donor)
        hqs[name] = hq
    from ggt.ingest import ingest

    run = root / "run"
    ingest([src], run, category="rain", overrides=["ingest.workers=1"])
    ids = {}
    with Run.open(run) as r:
        rows = r.store.query("SELECT id, source_name FROM items")
        outcomes = []
        for row in rows:
            name = Path(row["source_name"]).stem
            ids[name] = row["id"]
            rel = f"hq/{variant}/{row['id']}.png"
            (run / rel).parent.mkdir(parents=True, exist_ok=True)
            (run / rel).write_bytes(encode_image(hqs[name], "png"))
            outcomes.append(Outcome(item_id=row["id"], result={"hq_path": rel, "generator": variant}))
        record_outcomes(r.store, "synth", variant, outcomes)
    return ids


def read_image_back(img: np.ndarray) -> np.ndarray:
    """The LQ as ingest stores it (8-bit PNG), so 'HQ = LQ' pairs are exactly equal on disk."""
    from ggt.imaging import decode_image, to_float

    return to_float(decode_image(encode_image(img, "png")).rgb)


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def qc_rows(run: Path, stage: str = "qc", variant: str = "classical") -> dict[str, dict]:
    with Run.open(run) as r:
        rows = r.store.query(
            "SELECT item_id, status, result, reason, message FROM stage_results WHERE stage = ? AND variant = ?",
            (stage, variant),
        )
        return {
            row["item_id"]: {"status": row["status"], "reason": row["reason"], "message": row["message"],
                             **json.loads(row["result"])}
            for row in rows
        }  # fmt: skip


__all__ = ["clean", "copy_run", "make_run", "qc_rows", "read_image", "read_image_back"]
