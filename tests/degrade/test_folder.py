from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from fixtures.procs import die_mid_write
from ggt.degrade import apply_preset, degrade_folder
from ggt.degrade.folder import image_seed
from ggt.imaging import read_image


def _save(path: Path, img: np.ndarray) -> None:
    bgr = cv2.cvtColor((img * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), bgr)


def _read(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture
def folder(tmp_path: Path, photos: list[np.ndarray]) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    _save(src / "a_astronaut.png", photos[0])
    _save(src / "b_chelsea.jpg", photos[1])
    _save(src / "c_coffee.png", photos[2])
    (src / "d_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (src / "notes.txt").write_text("not an image, ignored")
    return src


def test_degrade_folder_writes_images_and_labels(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = degrade_folder("old_photo", folder, out, seed=3)
    assert summary.written == 3 and summary.ignored == 1  # notes.txt
    assert [f.file for f in summary.failed] == ["d_broken.jpg"]
    assert summary.failed[0].error  # the reason is kept
    assert sorted(p.name for p in out.iterdir()) == [
        "a_astronaut.png",
        "b_chelsea.png",
        "c_coffee.png",
        "labels.jsonl",
    ]
    lines = [json.loads(x) for x in (out / "labels.jsonl").read_text().splitlines()]
    assert [r["source"] for r in lines] == ["a_astronaut.png", "b_chelsea.jpg", "c_coffee.png"]
    for rec in lines:
        assert set(rec) == {"file", "source", "preset", "seed", "labels", "severity"}
        assert rec["preset"] == "old_photo" and rec["seed"] == image_seed(3, rec["source"])
        assert rec["labels"][0]["type"] and "params" in rec["labels"][0]
        # The recorded seed reproduces the written PNG from the source.
        src = read_image(folder / rec["source"])
        again = apply_preset(src, "old_photo", rec["seed"])
        assert np.array_equal((again.image * 255 + 0.5).astype(np.uint8), _read(out / rec["file"]))
        assert again.severity == rec["severity"]
    json.dumps(summary.model_dump())


def test_degrade_takes_every_suffix_ingest_takes(tmp_path: Path, photos: list[np.ndarray]) -> None:
    # A GIF or a .jfif JPEG that `ingest` accepts must not be skipped here without a word.
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    rgb = (photos[0] * 255 + 0.5).astype(np.uint8)
    Image.fromarray(rgb).convert("P").save(src / "palette.gif")
    Image.fromarray(rgb).save(src / "camera.jfif", format="JPEG")
    summary = degrade_folder("haze", src, tmp_path / "out", seed=0)
    assert (summary.written, summary.ignored, summary.failed) == (2, 0, [])
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["camera.png", "palette.png"]


def test_results_do_not_depend_on_the_other_files(folder: Path, tmp_path: Path) -> None:
    degrade_folder("rain", folder, tmp_path / "all", seed=9)
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "c_coffee.png").write_bytes((folder / "c_coffee.png").read_bytes())
    degrade_folder("rain", alone, tmp_path / "one", seed=9)
    assert (tmp_path / "all" / "c_coffee.png").read_bytes() == (
        tmp_path / "one" / "c_coffee.png"
    ).read_bytes()
    other = degrade_folder("rain", alone, tmp_path / "seed10", seed=10)
    assert other.written == 1
    assert (tmp_path / "seed10" / "c_coffee.png").read_bytes() != (
        tmp_path / "one" / "c_coffee.png"
    ).read_bytes()


def test_skip_existing_reuses_finished_images(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = degrade_folder("haze", folder, out, seed=1)
    labels = (out / "labels.jsonl").read_text()
    (out / "b_chelsea.png").unlink()
    second = degrade_folder("haze", folder, out, seed=1, skip_existing=True)
    assert (second.written, second.reused) == (1, 2)
    assert (out / "labels.jsonl").read_text() == labels
    third = degrade_folder("haze", folder, out, seed=2, skip_existing=True)  # another seed redoes all
    assert (third.written, third.reused) == (first.written, 0)
    # A photo replaced under the same name since is degraded again, the others kept.
    done = (out / "a_astronaut.png").stat().st_mtime_ns
    os.utime(folder / "c_coffee.png", ns=(done + 10**9, done + 10**9))
    fourth = degrade_folder("haze", folder, out, seed=2, skip_existing=True)
    assert (fourth.written, fourth.reused) == (1, 2)


def test_a_rerun_removes_what_a_killed_run_left_half_written(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    degrade_folder("rain", folder, out, seed=1)
    die_mid_write(out / "b_chelsea.png")  # killed between an image's write and its rename
    die_mid_write(out / "labels.jsonl")  # and between the labels' write and theirs
    assert len(list(out.glob(".*"))) == 2
    again = degrade_folder("rain", folder, out, seed=1, skip_existing=True)
    assert again.reused == 3 and not list(out.glob(".*"))


def test_stem_collisions_and_bad_arguments(folder: Path, tmp_path: Path, photos: list[np.ndarray]) -> None:
    _save(folder / "a_astronaut.jpg", photos[0])
    summary = degrade_folder("snow", folder, tmp_path / "out")
    # Sorted by name, a_astronaut.jpg comes first and takes a_astronaut.png's output name.
    assert {f.file for f in summary.failed} == {"a_astronaut.png", "d_broken.jpg"}
    assert "already taken by a_astronaut.jpg" in next(
        f.error for f in summary.failed if f.file == "a_astronaut.png"
    )
    with pytest.raises(ValueError, match="valid presets"):
        degrade_folder("fog", folder, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="differ"):
        degrade_folder("snow", folder, folder)
    with pytest.raises(ValueError, match="does not exist"):
        degrade_folder("snow", tmp_path / "missing", tmp_path / "y")
