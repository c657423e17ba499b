"""A small demo-like export to train on: real photo crops (GT) and noisy, blurred copies (LQ).

Built through the real exporter from a run made of store rows (tests/dataset/dataset_helpers.make_run),
with the run's PNGs replaced by learnable pairs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "dataset"))
from dataset_helpers import make_run

from ggt.dataset import export
from ggt.imaging import encode_image
from ggt.photos import load_photo

NAFNET_TINY = {"type": "nafnet", "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1], "dec_blk_nums": [1]}


def make_pairs(root: Path, n: int = 12, size: int = 48, fmt: str = "folder") -> Path:
    """An export of `n` pairs (about 1/4 in the test split) at `root/fmt`."""
    run, ids = make_run(root, {"haze": n}, size=(size, size))
    rng = np.random.default_rng(0)
    photos = [
        cv2.resize(load_photo(p), (256, 256), interpolation=cv2.INTER_AREA)
        for p in ("astronaut", "coffee", "chelsea")
    ]
    for k, item in enumerate(ids):
        src = photos[k % len(photos)]
        y, x = rng.integers(0, 256 - size, 2)
        gt = src[y : y + size, x : x + size]
        lq = cv2.GaussianBlur(gt, (5, 5), 1.2).astype(np.float32) + rng.normal(0, 12, gt.shape)
        lq = np.clip(lq, 0, 255).astype(np.uint8)
        (run / "lq" / f"{item}.png").write_bytes(encode_image(lq, "png"))
        (run / "hq" / "classical" / f"{item}.png").write_bytes(encode_image(gt, "png"))
    out = root / fmt
    export(run, fmt, out, split="test=0.25", shard_size=4)
    return out


def config(data: Path, out: Path, **kw) -> dict:
    """A CPU-sized training config dict (tiny NAFNet) over an export."""
    cfg = {
        "name": "t", "output": str(out), "arch": dict(NAFNET_TINY),
        "datasets": {"train": {"path": str(data)}, "val": {"path": str(data), "split": "test"}},
        "crop": 24, "batch": 4, "iterations": 20, "num_workers": 0, "device": "cpu", "log_every": 1,
        "checkpoint_every": 10, "cpu_threads": 1, "optimizer": {"lr": 2e-3}, "ema": 0.9,
    }  # fmt: skip
    for k, v in kw.items():
        cfg[k] = v
    return cfg
