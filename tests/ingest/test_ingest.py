import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fixtures import badfiles as bf
from fixtures.procs import die_mid_write, kill_group
from ggt.cli import app
from ggt.config import IngestConfig
from ggt.imaging import read_image, write_image
from ggt.ingest import ingest
from ggt.ingest.worker import process_source
from ggt.status import run_status
from ggt.store import Run

runner = CliRunner()

EXPECTED_FAILURES = {
    "zero_byte.jpg": "empty",
    "truncated.jpg": "truncated",
    "text_named.jpg": "not_an_image",
    "bomb.png": "too_large",
    "one_pixel.png": "too_small",
    "symlink_loop": "symlink_loop",
}


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    files = bf.write_corpus(root / "photos")
    run = root / "run"
    res = runner.invoke(app, ["ingest", str(root / "photos"), "--run", str(run), "--category", "rain"])
    return files, run, res


def test_run_continues_past_every_bad_input_and_exits_1(corpus_run):
    _, run, res = corpus_run
    assert res.exit_code == 1, res.output
    st = run_status(run, errors=True)
    # 13 files written: 5 fail, one is a duplicate, 7 become items.
    assert st.items == 7 and st.sources == {"duplicate": 1, "failed": 6, "ok": 7}
    assert st.categories == {"rain": 7}


def test_status_errors_give_one_line_reason_per_bad_input(corpus_run):
    files, run, _ = corpus_run
    res = runner.invoke(app, ["status", "--run", str(run), "--errors", "--json"])
    assert res.exit_code == 0
    errors = json.loads(res.stdout)["errors"]
    by_path = {e["path"]: e for e in errors}
    assert len(errors) == len(EXPECTED_FAILURES)
    for name, reason in EXPECTED_FAILURES.items():
        entry = by_path[str(files[name])]
        assert entry["reason"] == reason and entry["message"] and "\n" not in entry["message"]
    text = runner.invoke(app, ["status", "--run", str(run), "--errors"]).stdout
    assert "symlink loop" in text and "truncated" in text and "exceeds the limit" in text


def test_good_but_unusual_files_become_items(corpus_run):
    files, run, _ = corpus_run
    with Run.open(run) as r:
        rows = {Path(row["source_path"]).name: row for row in r.store.query("SELECT * FROM items")}
        for name in ("sixteen_bit.png", "cmyk.jpg", "palette_transparent.png", "exif_orientation_6.jpg",
                     "animated.gif", "phötö ünïcode.jpg"):  # fmt: skip
            row = rows[name]
            lq = read_image(run / row["lq_path"])
            assert lq.shape == (row["height"], row["width"], 3)
        assert (rows["exif_orientation_6.jpg"]["width"], rows["exif_orientation_6.jpg"]["height"]) == (
            100,
            200,
        )
        assert rows["exif_orientation_6.jpg"]["lq_path"].endswith(".png")  # rotated, so re-encoded
        assert "frames" in rows["animated.gif"]["notes"]
        assert rows["phötö ünïcode.jpg"]["source_path"] == str(files["dír with spaces/phötö ünïcode.jpg"])
        assert rows["phötö ünïcode.jpg"]["lq_path"].endswith(".jpg")  # passthrough JPEG


def test_same_photo_under_two_names_is_one_item(corpus_run):
    _, run, _ = corpus_run
    with Run.open(run) as r:
        dup = r.store.query("SELECT * FROM sources WHERE status = 'duplicate'")
        assert len(dup) == 1
        item = r.store.query("SELECT * FROM items WHERE id = ?", (dup[0]["item_id"],))[0]
        assert {Path(item["source_path"]).name, Path(dup[0]["path"]).name} == {
            "same_a.jpg",
            "same_b_other_name.jpg",
        }
        assert item["id"] == item["sha256"][:16]


def test_rerun_is_idempotent(corpus_run):
    files, run, _ = corpus_run
    root = files["zero_byte.jpg"].parent
    summary = ingest([root], run, category="rain")
    assert summary.new == 0 and summary.duplicates == 0
    assert summary.already_done == 8  # ok + duplicate files are settled; failed ones are retried
    assert run_status(run).items == 7
    assert len(list((run / "lq").iterdir())) == 7


def test_category_from_subfolder_and_invalid_option(tmp_path):
    for folder in ("rain", "Low-Light", "holiday"):
        (tmp_path / "src" / folder).mkdir(parents=True)
    (tmp_path / "src" / "rain" / "a.jpg").write_bytes(bf.jpeg(bf.photo("coffee")))
    (tmp_path / "src" / "Low-Light" / "b.png").write_bytes(bf.save(bf.photo("chelsea"), "PNG"))
    (tmp_path / "src" / "holiday" / "c.jpg").write_bytes(bf.jpeg(bf.photo("rocket")))
    (tmp_path / "src" / "notes.txt").write_text("not a photo")
    summary = ingest([tmp_path / "src"], tmp_path / "run")
    assert summary.ignored == 1 and any("holiday" in n for n in summary.notes)
    assert run_status(tmp_path / "run").categories == {"low_light": 1, "rain": 1, "unknown": 1}
    res = runner.invoke(
        app, ["ingest", str(tmp_path / "src"), "--run", str(tmp_path / "r2"), "--category", "fog2"]
    )
    assert res.exit_code == 2 and "fog2" in res.stderr


def test_near_duplicates_are_flagged_not_dropped(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    img = bf.photo("astronaut", size=(256, 256))
    (src / "a.jpg").write_bytes(bf.jpeg(img, quality=95))
    (src / "b.jpg").write_bytes(bf.jpeg(img, quality=60))  # same photo, other bytes
    (src / "c.jpg").write_bytes(bf.jpeg(bf.photo("coffee", size=(256, 256))))
    # A PNG is hashed from full pixels, a passthrough JPEG from its 1/8 preview: the hashes must agree.
    (src / "d.png").write_bytes(bf.save(img, "PNG"))
    summary = ingest([src], tmp_path / "run")
    assert summary.new == 4 and summary.near_duplicates == 2
    with Run.open(tmp_path / "run") as r:
        flagged = r.store.query(
            "SELECT source_name, near_dup_of, near_dup_distance FROM items WHERE near_dup_of IS NOT NULL"
        )
        assert sorted(f["source_name"] for f in flagged) == ["b.jpg", "d.png"]
        assert all(f["near_dup_distance"] <= 6 for f in flagged)


def test_passthrough_lq_has_no_gps_and_identical_pixels(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "phone.jpg").write_bytes(bf.gps_jpeg())
    ingest([tmp_path / "src"], tmp_path / "run")
    with Run.open(tmp_path / "run") as r:
        row = r.store.query("SELECT * FROM items")[0]
    lq = (tmp_path / "run" / row["lq_path"]).read_bytes()
    assert b"PhoneMaker" not in lq and json.loads(row["exif"])["Make"] == "PhoneMaker"
    assert np.array_equal(
        read_image(tmp_path / "run" / row["lq_path"]), read_image(tmp_path / "src" / "phone.jpg")
    )


def test_unreadable_socket_file_is_recorded(tmp_path):
    (tmp_path / "src").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "src" / "camera.jpg"))
    try:
        out = process_source(str(tmp_path / "src" / "camera.jpg"), "rain", str(tmp_path), IngestConfig())
    finally:
        sock.close()
    assert out.reason == "unreadable" and out.message


def _unreadable_as_nobody(path: str, lq_dir: str, conn) -> None:
    os.setgid(65534)
    os.setuid(65534)
    out = process_source(path, "rain", lq_dir, IngestConfig())
    conn.send((out.reason, out.message))


def test_file_without_read_permission_is_recorded(tmp_path):
    import multiprocessing as mp

    path = tmp_path / "locked.jpg"
    path.write_bytes(bf.jpeg())
    path.chmod(0)
    if os.geteuid() != 0:
        out = process_source(str(path), "rain", str(tmp_path), IngestConfig())
        assert (out.reason, out.message) == ("unreadable", "permission denied")
        return
    # root reads anything, so drop to an unprivileged user in a forked child to meet a real EACCES.
    tmp_path.chmod(0o755)
    parent, child = mp.get_context("fork").Pipe()
    proc = mp.get_context("fork").Process(
        target=_unreadable_as_nobody, args=(str(path), str(tmp_path), child)
    )
    proc.start()
    proc.join(30)
    assert parent.recv() == ("unreadable", "permission denied")


def _make_photos(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    base = bf.photo("astronaut", size=None)
    rng = np.random.default_rng(0)
    for i in range(n):
        y, x = rng.integers(0, 200, size=2)
        crop = base[y : y + 300, x : x + 300].astype(np.float32) / 255
        # A PNG per file makes each worker decode and re-encode (the slow path), widening the kill window.
        write_image(folder / f"p{i:03d}.png", np.clip(crop * (0.6 + 0.4 * i / n), 0, 1))


def test_kill_9_mid_ingest_then_rerun_completes_without_duplicates(tmp_path):
    _make_photos(tmp_path / "src", 120)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "ggt.cli", "ingest", str(tmp_path / "src"), "--run", str(run),
           "--json", "--set", "ingest.batch_size=4"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    committed = 0
    while time.time() < deadline and committed < 8:
        time.sleep(0.05)
        if (run / "ggt.sqlite").exists():
            try:
                committed = run_status(run).items
            except Exception:
                committed = 0
    kill_group(proc)
    assert 0 < committed < 120, "the kill must land mid-run"
    die_mid_write(run / "lq" / "0123456789abcdef.png")  # a kill between a copy's write and its rename
    assert [p for p in (run / "lq").iterdir() if p.name.startswith(".0123456789abcdef.png.")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["already_done"] >= committed
    st = run_status(run)
    assert st.items == 120 and st.sources == {"ok": 120}
    lq_files = sorted((run / "lq").iterdir())
    assert len(lq_files) == 120 and not [p for p in lq_files if p.name.startswith(".")]
    with Run.open(run) as r:
        for row in r.store.query("SELECT lq_path, width, height FROM items"):
            assert read_image(run / row["lq_path"]).shape == (row["height"], row["width"], 3)
