"""Engine throughput against a loopback Gemini stub with 2 s latency, 1024x1024 images.

Goal (issue 4): with concurrency 64, synth throughput >= 0.9x of the lesser of concurrency/latency (the
API bound) and the CPU bound of the per-item image work (read the LQ, frame it, encode it; decode the
answer, map it back, encode the HQ) measured on the same machine in the same run. The stub runs in its
own process (it decodes every upload, as a server would); the engine's own overhead is reported per item.

Run: `PYTHONPATH=benchmarks:tests python benchmarks/bench_engine.py [--n 256]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import GeminiStubProcess, record

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures.runs import set_analysis
from ggt.config import GeometryConfig
from ggt.generate.geometry import answer_is_final, plan, prepare, restore_framing, sends_lq_as_is
from ggt.generate.stage import synth
from ggt.imaging import decode_image, encode_image, plain_png_size, write_image
from ggt.ingest import ingest
from ggt.photos import PHOTO_NAMES, load_photo

SIZE = 1024
LATENCY_S = 2.0


def make_run(root: Path, n: int) -> Path:
    src = root / "src" / "haze"
    src.mkdir(parents=True)
    import cv2

    for i in range(n):
        img = cv2.resize(
            load_photo(PHOTO_NAMES[i % len(PHOTO_NAMES)]), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC
        )
        img[0, 0] = (i % 256, i // 256, 0)  # distinct bytes per item: ingest keeps exact duplicates once
        write_image(src / f"p{i:04d}.png", img)
    run = root / "run"
    ingest([root / "src"], run)
    report = {
        "category": "haze",
        "degradations": [],
        "scene": "",
        "measures": {},
        "analyzer": "heuristic",
        "model": None,
    }
    set_analysis(run, report, lambda item_id: f"Restore {item_id}.")
    return run


def image_work_s(run: Path, answer_png: bytes, n: int = 16) -> float:
    """CPU seconds per item of the image work alone (read the LQ, frame and encode it; decode the answer,
    map it back, encode the HQ), single-threaded. The codecs (OpenCV, Pillow's zlib, fpng) release the GIL,
    so the CPU bound of this work on all cores is cores / this."""
    geometry = GeometryConfig()
    lqs = sorted((run / "lq").iterdir())[:n]
    t0 = time.process_time()
    for path in lqs:
        lq = decode_image(path).rgb
        sent, _ = prepare(lq, geometry)
        encode_image(sent, "png")
        hq = restore_framing(decode_image(answer_png).rgb, plan(lq.shape[1], lq.shape[0], geometry))
        encode_image(hq, "png")
    return (time.process_time() - t0) / n


def synth_image_work_s(run: Path, answer_png: bytes, n: int = 16) -> float:
    """CPU seconds per item of the image work synth itself does when the PNGs may pass through: the LQ
    file read and checked (`plain_png_size`, sent as it is), the answer decoded (its check) and checked."""
    geometry = GeometryConfig()
    lqs = sorted((run / "lq").iterdir())[:n]
    t0 = time.process_time()
    for path in lqs:
        raw = path.read_bytes()
        size = plain_png_size(raw)
        assert size is not None and sends_lq_as_is(plan(*size, geometry))
        hq = restore_framing(decode_image(answer_png).rgb, plan(*size, geometry))
        assert answer_is_final(plan(*size, geometry), plain_png_size(answer_png)) and hq.shape[0] == size[1]
    return (time.process_time() - t0) / n


def image_work_rate(run: Path, answer_png: bytes, threads: int, seconds: float = 4.0) -> float:
    """Items per second of the same image work on `threads` threads, by the wall clock: the CPU this
    (shared) machine actually gives right now, which a process-time figure cannot see."""
    import threading

    geometry = GeometryConfig()
    lqs = sorted((run / "lq").iterdir())
    done = [0] * threads
    stop_at = time.perf_counter() + seconds

    def loop(k: int) -> None:
        i = k
        while time.perf_counter() < stop_at:
            lq = decode_image(lqs[i % len(lqs)]).rgb
            sent, _ = prepare(lq, geometry)
            encode_image(sent, "png")
            hq = restore_framing(decode_image(answer_png).rgb, plan(lq.shape[1], lq.shape[0], geometry))
            encode_image(hq, "png")
            done[k] += 1
            i += threads

    t0 = time.perf_counter()
    pool = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(done) / (time.perf_counter() - t0)


def fresh_copy(run: Path, dst: Path) -> Path:
    """The run before synth, for the next mode: LQ files hard-linked (read only), the store copied."""

    def copy(src: str, target: str) -> None:
        if "/lq/" in src:
            os.link(src, target)
        else:
            shutil.copy2(src, target)

    shutil.copytree(run, dst, copy_function=copy)
    return dst


def one_synth(run: Path, answer_png: bytes, n: int, concurrency: int) -> dict[str, float]:
    """One synth over `run` against its own stub: rates, CPU per item, the stub's CPU and call count."""
    server = GeminiStubProcess(answer_png, LATENCY_S)
    stub = None
    marks: list[tuple[float, float, int]] = []  # (wall, process CPU, items settled)
    try:
        os.environ["GEMINI_API_KEY"] = "bench-key"

        def progress(
            done: int, total: int, spent_usd: float | None = None, status: str | None = None
        ) -> None:
            marks.append((time.perf_counter(), time.process_time(), done))

        t0, c0 = time.perf_counter(), time.process_time()
        s = synth(run, generator="gemini", model="gemini-2.5-flash-image", concurrency=concurrency,
                  overrides=[f"synth.options.base_url={server.url}"], progress=progress)  # fmt: skip
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        stub = server.stop()
    finally:
        if stub is None:
            server.stop()
    assert s.done == n and s.failed == 0, s
    # Steady state: from the 10th to the 90th percentile item, leaving out start-up (imports, the SDK
    # client, the first answers' 2 s) and the tail, neither of which a 100,000-item run notices.
    lo = next(m for m in marks if m[2] >= n * 0.1)
    hi = next(m for m in marks if m[2] >= n * 0.9)
    return {
        "rate": n / wall,
        "steady": (hi[2] - lo[2]) / (hi[0] - lo[0]),
        "cpu_item": cpu / n,
        "steady_cpu": (hi[1] - lo[1]) / (hi[2] - lo[2]),
        "stub_item": stub["cpu_s"] / n,
        "calls": stub["calls"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3, help="synth runs, each on a fresh copy of the run")
    ap.add_argument("--no-record", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ggt-bench-engine-"))
    answer = np.full((SIZE, SIZE, 3), 0.5, np.float32)
    answer[::8] = 0.7
    answer_png = encode_image(answer, "png")
    cores = os.cpu_count() or 1
    try:
        run = make_run(tmp, args.n)
        work = image_work_s(run, answer_png)
        own_work = synth_image_work_s(run, answer_png)
        cpu_bound = cores / work
        api_bound = args.concurrency / LATENCY_S
        bound = min(api_bound, cpu_bound)
        results, walls = [], [image_work_rate(run, answer_png, cores)]
        for i in range(args.repeat):
            copy = fresh_copy(run, tmp / f"run{i}")
            results.append(one_synth(copy, answer_png, args.n, args.concurrency))
            # Its ~5 GB of answers and HQs go before the next run, so that run's fsyncs do not queue behind
            # their writeback (and the disk does not fill up over five runs).
            shutil.rmtree(copy, ignore_errors=True)
            walls.append(image_work_rate(run, answer_png, cores))
        load = os.getloadavg()[0]
        lines = [
            f"{args.n} items of {SIZE}x{SIZE}, stub latency {LATENCY_S:.0f} s, concurrency {args.concurrency}, "
            f"{cores} cores (load average {load:.1f} at the end); the stub runs in its own process. Synth runs "
            f"{args.repeat} times, each on a fresh copy of the same run against a fresh stub.",
            "",
            "| quantity | value |",
            "|---|---:|",
            f"| API bound (concurrency / latency) | {api_bound:.1f} items/s |",
            f"| image work per item, one core (read, frame, encode; decode, map back, encode) | {work * 1000:.0f} ms |",
            f"| CPU bound of the image work on {cores} cores (same run) | {cpu_bound:.1f} items/s |",
            f"| of which synth still does: plain PNGs pass through (LQ read and checked; answer decoded and "
            f"checked, its bytes kept) | {own_work * 1000:.0f} ms |",
            "",
            "| run | whole run items/s | steady items/s (10%-90%) | **steady / lesser bound (goal >= 0.9)** "
            "| steady / wall-clock bound | synth CPU per item, steady (whole run) | stub CPU per item | stub "
            "calls (one per item) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for k, res in enumerate(results):
            # What the (shared) machine gave the image work by the wall clock just before and after this mode.
            wall_bound = min(api_bound, (walls[k] + walls[k + 1]) / 2)
            lines.append(
                f"| {k + 1} | {res['rate']:.1f} | {res['steady']:.1f} | **{res['steady'] / bound:.2f}** "
                f"| {res['steady'] / wall_bound:.2f} | {res['steady_cpu'] * 1000:.0f} ms "
                f"({res['cpu_item'] * 1000:.0f} ms) | {res['stub_item'] * 1000:.0f} ms | {res['calls']} |"
            )
        ratios = sorted(res["steady"] / bound for res in results)
        lines += ["", f"**Median steady ratio over the {len(ratios)} runs: {statistics.median(ratios):.2f}** "
                  f"(lowest {ratios[0]:.2f}, highest {ratios[-1]:.2f}; goal >= 0.9)."]  # fmt: skip
        lines += [
            "",
            "Where the time goes. Per 1024x1024 item the synth process spends about 20 ms of Python inside "
            "google-genai encoding the request (URL-safe base64 of the 2 MB PNG, then JSON of the 2.7 MB "
            "body; py-spy with `--gil` puts half the GIL-holding samples there) and reads the answer the same "
            "way, all on the one event loop that also schedules, caches and records; the image work synth "
            "still does (above) runs in threads whose codecs release the GIL. The loop is busy most of the "
            "time at 32 items/s, so each of the 64 slots cycles in 2 s plus the time its request waits to be "
            "encoded and its answer to be read: that wait is the gap to the API bound.",
            "",
            "History of this bench. 2026-11-29: 184 ms CPU per item, 4.2 items/s, ratio 0.18 (the answer "
            "decoded three times and the LQ read twice, both in float; the input's SHA-256 recomputed per use; "
            "the loop's default thread pool queueing fsync-bound writes behind the codecs; the stub decoding "
            "every upload on the same two cores). 2026-11-30 morning: 64 ms, 19.8 items/s steady, ratio 0.62 "
            "(the PNG decode of the LQ and its re-encode, ~30 ms, and the HQ's encode, ~7 ms, still done for "
            "every item). Then plain PNGs passed through (an LQ sent without padding or resampling goes as its "
            "file's bytes when they stand for its pixels; an answer already at the LQ's framing is kept as the "
            "vendor's PNG; the answer is still decoded once, to reject unusable ones before they are cached): "
            "42 ms, steady ratios 0.83-0.93 over seven runs on an idle machine (median 0.88), the loop being "
            "the limit. Then a kept vendor PNG became a hard link to the request cache's file instead of a "
            "second 2 MB write and fsync per item (the runs above). Tried and dropped: giving a call's slot "
            "back once its answer is cached, before the "
            "SQLite records (0.94/0.91/0.91 against 0.89/0.91/0.91 without, 512 items: no difference worth "
            "the code; giving it back before the cache write breaks the bound on answers a kill can lose); "
            "google-genai's blocking client on worker threads (ratio 0.54 against 0.62: the request building "
            "holds the GIL either way); aiohttp as the "
            "SDK's transport; the SDK calls in spawned helper processes fed through pipes (steady ratios "
            "0.85-0.90 against 0.91-0.93 in the same runs: on two cores shared with the stub the pickling and "
            "the extra hops cost more than the GIL they free).",
            "",
            "The whole-run figure includes start-up (imports, the SDK client, the first "
            "wave's 2 s latency before anything settles, the last wave's tail), which a 100,000-item run does "
            "not notice; the steady state is the rate such a run goes at. Under load from other jobs both synth "
            "and the image work get a share of the two cores, which only the wall-clock bound reflects.",
        ]
        body = "\n".join(lines)
        print(body)
        if not args.no_record:
            record("Synth engine throughput (issue 4)", body)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
