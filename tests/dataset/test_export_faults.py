"""Faults: a full disk, a killed export resumed to a verified dataset, a real synth + qc run exported."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from dataset_helpers import make_run

from ggt.dataset import ExportError, export, exporter, verify
from ggt.dataset.manifest import WORK_DIR


class _FullDisk:
    """A file that accepts `budget` bytes across all files, then fails as a full disk does."""

    left = 0

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "wb")  # noqa: SIM115 - closed by close()/__exit__ like a real file

    def write(self, data) -> int:
        n = len(data)
        if n > _FullDisk.left:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.fh.name))
        _FullDisk.left -= n
        return self.fh.write(data)

    def tell(self) -> int:
        return self.fh.tell()

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()

    @property
    def closed(self) -> bool:
        return self.fh.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()


def _stray(out: Path) -> list[str]:
    return [p.name for p in out.rglob("*.tmp")]


@pytest.mark.parametrize("fmt", ["folder", "webdataset", "parquet"])
def test_full_disk_fails_cleanly_and_resumes(tmp_path, monkeypatch, fmt):
    run, _ = make_run(tmp_path, {"haze": 9}, size=(64, 48))
    out = tmp_path / "o"
    _FullDisk.left = 80_000  # a 3-pair shard is about 56 kB: the second one fails midway
    monkeypatch.setattr(exporter, "_open_output", _FullDisk)
    with pytest.raises(ExportError, match="no space left on the device") as info:
        export(run, fmt, out, split="test=0", shard_size=3, link=False)
    assert "--resume" in str(info.value)
    done = sorted(p.stem for p in (out / WORK_DIR / "done").iterdir())
    assert len(done) == 1 and not _stray(out)  # the interrupted shard is neither done nor left half-written
    assert not (out / "MANIFEST.sha256").exists()
    monkeypatch.undo()
    s = export(run, fmt, out, split="test=0", shard_size=3, resume=True, link=False)
    assert s.shards_resumed == len(done) and s.pairs == 9 and verify(out).ok


_KILLABLE = textwrap.dedent(
    """
    import sys, time
    from ggt.dataset import exporter

    real = exporter.WRITERS[sys.argv[2]]

    def slow(ctx, shard):
        res = real(ctx, shard)
        time.sleep(0.4)  # a window to kill in, after a shard's files exist but before its marker
        return res

    exporter.WRITERS[sys.argv[2]] = slow
    exporter.export(sys.argv[1], sys.argv[2], sys.argv[3], split="test=0.25", shard_size=2)
    """
)


@pytest.mark.parametrize("fmt", ["folder", "webdataset"])
def test_killed_export_resumes_to_a_verified_dataset(tmp_path, fmt):
    run, _ = make_run(tmp_path, {"haze": 8, "rain": 4})
    out = tmp_path / "o"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(run), fmt, str(out)], env=env)
    deadline = time.time() + 30
    markers = out / WORK_DIR / "done"
    while time.time() < deadline and proc.poll() is None:
        if markers.is_dir() and len(list(markers.iterdir())) >= 2:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL, "the export finished before it could be killed"
    assert not (out / "MANIFEST.sha256").exists()
    with pytest.raises(ExportError, match="not empty"):
        export(run, fmt, out, split="test=0.25", shard_size=2)
    s = export(run, fmt, out, split="test=0.25", shard_size=2, resume=True)
    assert s.shards_resumed >= 2 and s.pairs == 12
    rep = verify(out)
    assert rep.ok, rep


def test_real_run_through_synth_and_qc_exports(tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "generate"))
    from test_synth_stage import _analysed_run

    from ggt.generate.stage import synth
    from ggt.qc.stage import qc

    run = _analysed_run(tmp_path, n=4, size=(96, 72))
    synth(run)
    q = qc(run)
    kept = q.variants["classical"].keep
    s = export(run, "folder", tmp_path / "o", split="test=0", include=["kept", "undecided", "rejected"])
    assert s.pairs == 4 and verify(tmp_path / "o").ok
    rows = [json.loads(x) for x in (tmp_path / "o" / "metadata.jsonl").read_text().splitlines()]
    assert sum(r["status"] == "kept" for r in rows) == kept
    assert all(r["qc"]["verdict"] in ("keep", "reject", "review") and r["prompt"] for r in rows)
