"""Shared bits for benchmark scripts: machine description, peak-RSS sampling, results file."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import threading
import time
from pathlib import Path

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
        text = text[:start] + block + (text[nxt + 1 :] if nxt != -1 else "")
    else:
        text = text.rstrip() + "\n\n" + block
    DOCS.write_text(text, encoding="utf-8")
