"""Export throughput and memory: folder vs a plain copy, webdataset vs `tar`, over the same files.

    .venv/bin/python benchmarks/bench_export.py --sizes 1000,10000 --work /tmp/ggt-bench-export

Builds a run of N synthetic 512x512 pairs (store rows inserted directly, PNG files written from a few
pre-encoded images), then times in the same run: `shutil.copyfile` of the 2N files, `ggt` folder export
copying (link=False) and hard-linking (the default), `tar -cf` of the same files, `ggt` webdataset export. Each export runs in a child process so its peak
RSS (from wait4) is its own. Everything reads from a warm page cache, the baselines as much as ggt, and
every timing ends with the data on disk (syncfs), as an export's does before it writes its manifest.
Prints one JSON line per size; docs/export.md records the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIDE = 512


def _pngs(k: int) -> list[bytes]:
    """k distinct photo-like PNGs (a real photo, shifted and noised) so sizes resemble real exports."""
    from skimage import data, transform

    from ggt.imaging import encode_image

    base = transform.resize(data.astronaut(), (SIDE, SIDE), anti_aliasing=True).astype(np.float32)
    rng = np.random.default_rng(0)
    out = []
    for i in range(k):
        img = np.roll(base, i * 13, axis=1) + rng.normal(0, 0.02, base.shape).astype(np.float32)
        out.append(encode_image(np.clip(img, 0, 1), "png"))
    return out


def build_run(root: Path, n: int) -> Path:
    from ggt.store import Run, dumps, now

    run = root / "run"
    pngs = _pngs(16)
    with Run.create(run) as r:
        hq_dir = run / "hq" / "classical"
        hq_dir.mkdir(parents=True, exist_ok=True)
        items, results, decisions = [], [], []
        ts = now()
        for k in range(n):
            item = f"{k:016x}"
            (run / "lq" / f"{item}.png").write_bytes(pngs[k % 16])
            (hq_dir / f"{item}.png").write_bytes(pngs[(k + 7) % 16])
            cat = ("haze", "rain", "snow", "low_light")[k % 4]
            items.append((item, item * 4, cat, f"/src/{k}.png", f"{k}.png", 1, "PNG", "RGB", SIDE, SIDE,
                          f"lq/{item}.png", f"{k:016x}", ts))  # fmt: skip
            analysis = {"report": {"category": cat}, "prompt": "restore", "prompting": "adaptive"}
            results.append((item, "analyze", "", dumps(analysis), ts))
            synth = {"hq_path": f"hq/classical/{item}.png", "generator": "classical", "model": None}
            results.append((item, "synth", "classical", dumps(synth), ts))
            qc = {"verdict": "keep", "reasons": [], "metrics": {"psnr": 30.0}}
            results.append((item, "qc", "classical", dumps(qc), ts))
            decisions.append((item, "classical", "policy", "keep", "[]", ts))
        with r.store.transaction() as conn:
            conn.executemany(
                "INSERT INTO items(id, sha256, category, source_path, source_name, source_bytes, format, mode,"
                " width, height, lq_path, phash, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                items,
            )
            conn.executemany(
                "INSERT INTO stage_results(item_id, stage, variant, status, result, updated_at)"
                " VALUES (?,?,?,'done',?,?)",
                results,
            )
            conn.executemany(
                "INSERT INTO decisions(item_id, variant, reviewer, decision, reasons, created_at)"
                " VALUES (?,?,?,?,?,?)",
                decisions,
            )
    return run


_CHILD = """
import json, sys, time
from ggt.dataset import export
t = time.perf_counter()
s = export(sys.argv[1], sys.argv[2], sys.argv[3], split="test=0.05", shard_size=1000, link=sys.argv[4] == "1")
print(json.dumps({"seconds": time.perf_counter() - t, "pairs": s.pairs, "bytes": s.bytes}))
"""


def run_export(run: Path, fmt: str, out: Path, link: bool = False) -> dict[str, float]:
    cmd = [sys.executable, "-c", _CHILD, str(run), fmt, str(out), "1" if link else "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{fmt} export failed ({proc.returncode})")
    res = json.loads(text)
    res["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    return res


def bench(root: Path, n: int) -> dict[str, object]:
    from ggt.fsutil import sync_filesystem

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    t = time.perf_counter()
    run = build_run(root, n)
    build_s = time.perf_counter() - t
    files = [p for d in ("lq", "hq/classical") for p in sorted((run / d).iterdir())]
    total = sum(p.stat().st_size for p in files)
    # Warm the page cache for everyone alike.
    for p in files:
        p.read_bytes()
    sync_filesystem(root)  # the run's own writes must not land on whichever timing syncs first

    dst = root / "copy"
    dst.mkdir()
    t = time.perf_counter()
    for i, p in enumerate(files):
        shutil.copyfile(p, dst / f"{i}.png")
    sync_filesystem(dst)
    copy_s = time.perf_counter() - t
    shutil.rmtree(dst)

    folder = run_export(run, "folder", root / "folder")
    shutil.rmtree(root / "folder")
    linked = run_export(run, "folder", root / "linked", link=True)
    shutil.rmtree(root / "linked")

    t = time.perf_counter()
    subprocess.run(["tar", "-cf", str(root / "all.tar"), "-C", str(run), "lq", "hq"], check=True)
    sync_filesystem(root)
    tar_s = time.perf_counter() - t
    (root / "all.tar").unlink()

    wds = run_export(run, "webdataset", root / "wds")
    shutil.rmtree(root / "wds")
    shutil.rmtree(root)
    mb = total / 1e6
    return {
        "pairs": n, "mb": round(mb, 1), "build_s": round(build_s, 2),
        "copy_mb_s": round(mb / copy_s, 1), "folder_mb_s": round(mb / folder["seconds"], 1),
        "folder_vs_copy": round(copy_s / folder["seconds"], 2), "folder_peak_rss_mb": round(folder["peak_rss_mb"]),
        "linked_mb_s": round(mb / linked["seconds"], 1), "linked_vs_copy": round(copy_s / linked["seconds"], 2),
        "linked_peak_rss_mb": round(linked["peak_rss_mb"]),
        "tar_mb_s": round(mb / tar_s, 1), "wds_mb_s": round(mb / wds["seconds"], 1),
        "wds_vs_tar": round(tar_s / wds["seconds"], 2), "wds_peak_rss_mb": round(wds["peak_rss_mb"]),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--work", type=Path, default=Path("/tmp/ggt-bench-export"))
    args = ap.parse_args()
    for n in (int(x) for x in args.sizes.split(",")):
        print(json.dumps(bench(args.work, n)), flush=True)


if __name__ == "__main__":
    main()
