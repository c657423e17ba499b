"""Ingest throughput and memory against a decode-only loop over the same files, on the same cores.

Goal (issue 2): ingest of ~1 MP real-photo JPEGs at >= 0.8x the throughput of a decode-only loop
(Pillow decode to an RGB array, same number of processes), and peak RSS that does not grow with the
number of files. Run: `python benchmarks/bench_ingest.py [--n 2000]`.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from _common import PeakRSS, record
from ggt.ingest import ingest
from ggt.photos import PHOTO_NAMES, load_photo


def make_photos(folder: Path, n: int, seed: int = 0) -> None:
    """n JPEGs of about 1 MP: random crops of the scikit-image photos at random scales and qualities."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(load_photo(name)) for name in PHOTO_NAMES]
    for i in range(n):
        im = photos[i % len(photos)]
        w, h = int(rng.integers(1000, 1300)), int(rng.integers(760, 960))
        scale = max(w / im.width, h / im.height) * float(rng.uniform(1.0, 1.6))
        big = im.resize((int(im.width * scale) + 1, int(im.height * scale) + 1), Image.Resampling.BICUBIC)
        x, y = int(rng.integers(0, big.width - w + 1)), int(rng.integers(0, big.height - h + 1))
        big.crop((x, y, x + w, y + h)).save(folder / f"img_{i:05d}.jpg", quality=int(rng.integers(80, 96)))


def _decode_only(path: str) -> int:
    with open(path, "rb") as fh:
        data = fh.read()
    arr = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return arr.shape[0]


def decode_loop(files: list[str], workers: int) -> float:
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        for _ in pool.map(_decode_only, files, chunksize=8):
            pass
    return time.perf_counter() - t0


def timed_ingest(src: Path, run: Path, overrides: list[str]) -> tuple[float, int]:
    shutil.rmtree(run, ignore_errors=True)
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        summary = ingest([src], run, overrides=overrides)
        elapsed = time.perf_counter() - t0
    assert summary.failed == 0 and summary.new + summary.duplicates == summary.found
    return elapsed, rss.peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    workers = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="ggt-bench-ingest-"))
    try:
        src = tmp / "photos"
        t0 = time.perf_counter()
        make_photos(src, args.n)
        mp = np.mean([Image.open(p).width * Image.open(p).height for p in list(src.iterdir())[:50]]) / 1e6
        print(f"made {args.n} JPEGs (~{mp:.2f} MP) in {time.perf_counter() - t0:.0f} s")
        files = sorted(str(p) for p in src.iterdir())
        decode_loop(files[:64], workers)  # warm the page cache and the pool start-up path
        half = tmp / "half"
        half.mkdir()
        for f in files[: args.n // 2]:
            os.link(f, half / Path(f).name)

        rows = []
        base = decode_loop(files, workers)
        rows.append(("decode-only loop (baseline)", base, None))
        t_pass, rss_full = timed_ingest(src, tmp / "run", [f"ingest.workers={workers}"])
        rows.append(("ggt ingest (default: JPEG passthrough)", t_pass, rss_full))
        _, rss_half = timed_ingest(half, tmp / "run_half", [f"ingest.workers={workers}"])
        t_png, rss_png = timed_ingest(
            src, tmp / "run_png", [f"ingest.workers={workers}", "ingest.jpeg_passthrough=false"]
        )
        rows.append(("ggt ingest (passthrough off: decode + PNG encode)", t_png, rss_png))

        lines = [
            f"{args.n} JPEGs of ~{mp:.2f} MP made from scikit-image's photos (random crops/scales/qualities), "
            f"{workers} worker processes for both the baseline and ingest.",
            "",
            "| job | seconds | files/s | vs decode-only | peak RSS (MiB, all processes) |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, secs, rss in rows:
            lines.append(
                f"| {name} | {secs:.1f} | {args.n / secs:.0f} | {base / secs:.2f}x | "
                f"{'' if rss is None else f'{rss / 2**20:.0f}'} |"
            )
        lines += [
            "",
            f"Peak RSS of ingest with {args.n // 2} files: {rss_half / 2**20:.0f} MiB; with {args.n}: "
            f"{rss_full / 2**20:.0f} MiB (ratio {rss_full / rss_half:.2f}; flat means ~1.0).",
            "",
            "Goal: ingest >= 0.8x the decode-only throughput; peak RSS flat in the number of files.",
        ]
        body = "\n".join(lines)
        print(body)
        record("Ingest throughput (issue 2)", body)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
