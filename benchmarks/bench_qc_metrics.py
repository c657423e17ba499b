"""Time every QC metric on a 1024x1024 LQ/HQ pair on one core; write the table into docs/qc-metrics.md.

    .venv/bin/python benchmarks/bench_qc_metrics.py [--size 1024] [--repeats 5] [--no-write]

Full-reference metrics are timed on the pair, no-reference ones on one image; "compute_all" is the whole
default set on the pair (no-reference metrics run on both images there). Target: under ~1 s for the
built-ins together. When pyiqa is importable (the ``iqa`` extra), its psnr/ssim/ms_ssim are timed on the
same pair and thread count and the values compared, as a quick check of speed and calibration (pyiqa
may live in another virtual environment: append its site-packages to ``sys.path`` and run this file with
``runpy``, so numpy and OpenCV still come from this one).
"""

from __future__ import annotations

import os

# One core for every library, set before numpy/OpenCV/torch load their thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from skimage import data  # noqa: E402

from ggt.degrade import apply_preset  # noqa: E402
from ggt.qc.metrics import compute_all, create_metric, default_metric_names, list_metrics  # noqa: E402
from ggt.qc.metrics.base import MetricUnavailableError  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "qc-metrics.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: caches, lazy imports, model files
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def _pyiqa_rows(lq: np.ndarray, hq: np.ndarray, repeats: int) -> list[tuple[str, float, float, float]]:
    """(name, pyiqa ms, pyiqa value, ggt value) for the metrics pyiqa also has, if pyiqa imports."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import pyiqa  # type: ignore[import-not-found]
        import torch  # type: ignore[import-not-found]
    except ImportError:
        return []
    torch.set_num_threads(1)
    x = torch.from_numpy(np.ascontiguousarray(lq.transpose(2, 0, 1)))[None]
    y = torch.from_numpy(np.ascontiguousarray(hq.transpose(2, 0, 1)))[None]
    rows = []
    for ours in ("psnr", "psnr_y", "ssim", "ssim_rgb", "ms_ssim"):
        m = create_metric(ours)
        ref = pyiqa.create_metric(m.pyiqa_name, device="cpu")
        with torch.no_grad():
            ms = _time(lambda ref=ref: ref(x, y), max(1, repeats // 2))
            val = float(ref(x, y).item())
        rows.append((ours, ms, val, float(m(lq, hq))))  # type: ignore[arg-type]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/qc-metrics.md alone")
    args = ap.parse_args()
    cv2.setNumThreads(1)

    hq = cv2.resize(data.astronaut(), (args.size, args.size), interpolation=cv2.INTER_CUBIC)
    hq = hq.astype(np.float32) / 255.0
    lq = apply_preset(hq, "social_media", seed=1).image

    rows: list[tuple[str, str, float]] = []
    for name in list_metrics():
        m = create_metric(name)
        try:
            m.check_available()
        except MetricUnavailableError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        imgs = (lq, hq) if m.kind == "fr" else (hq,)
        rows.append((name, m.kind, _time(lambda m=m, imgs=imgs: m(*imgs), args.repeats)))
    total = _time(lambda: compute_all(lq, hq), args.repeats)
    names = default_metric_names()
    cheap = [n for n in names if n not in ("niqe", "brisque")]
    total_cheap = _time(lambda: compute_all(lq, hq, names=cheap), args.repeats)
    pyiqa_rows = _pyiqa_rows(lq, hq, args.repeats)

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpu = platform.processor() or platform.machine()
    lines = [
        f"Measured {stamp} on {platform.system()} {platform.machine()} ({cpu}), Python "
        f"{platform.python_version()}, OpenCV {cv2.__version__}, numpy {np.__version__}, one thread; "
        f"{args.size}x{args.size} pair (astronaut, LQ = social_media preset), median of {args.repeats}.",
        "",
        "| metric | kind | ms |",
        "|---|---|---:|",
        *[f"| {n} | {k.upper()} | {ms:.1f} |" for n, k, ms in rows],
        f"| **compute_all** (default set: {len(names)} metrics, NR on both images) | pair | **{total:.0f}** |",
        f"| compute_all without niqe, brisque | pair | {total_cheap:.0f} |",
    ]
    if pyiqa_rows:
        lines += [
            "",
            "pyiqa on the same pair, CPU, one thread:",
            "",
            "| metric | pyiqa ms | ggt ms | speed-up | pyiqa value | ggt value | difference |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        ours_ms = {n: ms for n, _, ms in rows}
        for n, ms, pv, gv in pyiqa_rows:
            lines.append(
                f"| {n} | {ms:.1f} | {ours_ms[n]:.1f} | {ms / ours_ms[n]:.1f}x | {pv:.6f} | {gv:.6f} | "
                f"{abs(pv - gv):.2e} |"
            )
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        text = DOC.read_text() if DOC.exists() else f"# QC metrics\n\n{START}\n{END}\n"
        if START not in text:
            text += f"\n{START}\n{END}\n"
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        DOC.write_text(f"{head}{START}\n{table}\n{END}{tail}")
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
