"""Shared bits for benchmark scripts: machine description, peak-RSS sampling, results file."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

import psutil

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return f"{platform.system()} {platform.machine()} ({cpu}), {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


class PeakRSS:
    """Samples the RSS of this process and all its children every 20 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            try:
                procs = [me, *me.children(recursive=True)]
            except psutil.Error:
                procs = [me]
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(0.02)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def record(section: str, body: str) -> None:
    """Replace (or add) `## section` in docs/benchmarks.md with body, stamped with machine and date."""
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    text = (
        DOCS.read_text(encoding="utf-8")
        if DOCS.exists()
        else "# Benchmarks\n\nRecorded by the scripts in `benchmarks/`.\n"
    )
    header = f"## {section}"
    stamp = f"_{dt.date.today().isoformat()}, {machine()}_\n\n"
    block = f"{header}\n\n{stamp}{body.strip()}\n"
    if header in text:
        start = text.index(header)
        nxt = text.find("\n## ", start + len(header))
        text = text[:start] + block + ("\n" + text[nxt + 1 :] if nxt != -1 else "")
    else:
        text = text.rstrip() + "\n\n" + block
    DOCS.write_text(text, encoding="utf-8")


def _serve_gemini(url_q: Any, stop: Any, answer_png: bytes, latency_s: float) -> None:
    import base64
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from fixtures.stubs.server import Fault, Reply, StubServer, gemini_reply

    # The stub shares the machine's cores with what is measured, so it does as little as a server can: no
    # decoding of uploads, one pre-serialised answer. Its CPU is measured and reported all the same.
    part = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(answer_png).decode("ascii")}}
    body = json.dumps(gemini_reply([part], model="bench", usage=(1290, 1290))).encode()
    headers = {"Content-Type": "application/json; charset=utf-8"}
    with StubServer() as stub:
        stub.decode_images = False
        stub.keep_bodies = False
        stub.set_responder(lambda req: Reply(200, body, dict(headers)))
        stub.set_fault_rate(1.0, [Fault("slow", delay_s=latency_s)])
        url_q.put(stub.url)
        c0 = time.process_time()
        stop.wait()
        times = sorted(r.received_at for r in stub.requests if r.route == "gemini.generate")
        url_q.put({"calls": len(times), "cpu_s": time.process_time() - c0, "times": times})


class GeminiStubProcess:
    """The loopback Gemini stub in its own process, answering every call with `answer_png` after
    `latency_s`; `url` while running, and after `stop()`: calls, the stub's CPU seconds, request times."""

    def __init__(self, answer_png: bytes, latency_s: float) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._q, self._stop = ctx.Queue(), ctx.Event()
        self._proc = ctx.Process(
            target=_serve_gemini, args=(self._q, self._stop, answer_png, latency_s), daemon=True
        )
        self._proc.start()
        self.url: str = self._q.get(timeout=60)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        out = self._q.get(timeout=60)
        self._proc.join(timeout=10)
        return out
