"""The classical generator: each operator on its own simple degradation, the chain's contract, options."""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from pydantic import ValidationError
from skimage.metrics import peak_signal_noise_ratio

from ggt.analyze.report import Degradation, DegradationReport
from ggt.generate import GENERATORS, ClassicalGenerator, ClassicalOptions, create_generator
from ggt.generate.classical import DEFAULT_OPERATORS, OPERATORS
from ggt.photos import load_photo


def _photo(name: str, size: int) -> np.ndarray:
    img = load_photo(name)
    h, w = img.shape[:2]
    f = size / max(h, w)
    img = cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    return img.astype(np.float32) / 255


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return _photo("astronaut", 256)


def _report(category: str = "social_media", **sev: float) -> DegradationReport:
    degs = [Degradation(type=k, severity=v) for k, v in sev.items()]  # type: ignore[arg-type]
    return DegradationReport(category=category, degradations=degs)  # type: ignore[arg-type]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    if np.array_equal(a, b):
        return math.inf
    return float(peak_signal_noise_ratio(a, b, data_range=1.0))


def _lin(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055)


# --- simple degradations, independent of the simulator ------------------------------------------------


def _noise(img: np.ndarray) -> np.ndarray:
    return img + np.random.default_rng(0).normal(0, 15 / 255, img.shape)


def _jpeg(img: np.ndarray) -> np.ndarray:
    bgr = cv2.cvtColor((img * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 20])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) / 255.0


def _haze(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    t = np.repeat(np.linspace(0.35, 0.75, h)[:, None], w, axis=1)[..., None]
    return img * t + 0.9 * (1 - t)


def _dark(img: np.ndarray) -> np.ndarray:
    return _srgb(_lin(img) * 2.0**-3)


def _cast(img: np.ndarray) -> np.ndarray:
    return _srgb(_lin(img) * np.array([1.25, 1.0, 0.75]))


def _fade(img: np.ndarray) -> np.ndarray:
    return img * 0.55 + img.mean(axis=(0, 1)) * 0.3 + 0.12


def _sepia(img: np.ndarray) -> np.ndarray:
    y = (img @ np.array([0.2126, 0.7152, 0.0722]))[..., None]
    return img * 0.3 + y * np.array([1.07, 0.94, 0.72]) * 0.7


def _marks(img: np.ndarray) -> np.ndarray:
    out = img.copy()
    rng = np.random.default_rng(1)
    h, w = img.shape[:2]
    for _ in range(60):  # dust: specks of 1-2 px, dark or light
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(out, c, int(rng.integers(1, 3)), (0.05,) * 3 if rng.random() < 0.5 else (0.95,) * 3, -1)
    for _ in range(4):  # scratches: thin near-vertical lines
        x = int(rng.integers(10, w - 10))
        cv2.line(out, (x, 0), (x + int(rng.integers(-8, 8)), h - 1), (0.92,) * 3, 1)
    return out


def _streaks(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    rng = np.random.default_rng(2)
    o = np.zeros((h, w), np.float32)
    dx, dy = math.sin(math.radians(12)), math.cos(math.radians(12))
    for _ in range(150):
        x, y, n = float(rng.uniform(0, w)), float(rng.uniform(0, h)), float(rng.uniform(15, 35))
        cv2.line(o, (round(x), round(y)), (round(x + n * dx), round(y + n * dy)), 0.6, 1, cv2.LINE_AA)
    return 1 - (1 - img) * (1 - o[..., None] * 0.9)


def _flakes(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    rng = np.random.default_rng(3)
    o = np.zeros((h, w), np.float32)
    for _ in range(120):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(o, c, int(rng.integers(1, 4)), 0.85, -1, cv2.LINE_AA)
    return img * (1 - o[..., None]) + 0.95 * o[..., None]


def _blur(img: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(img.astype(np.float32), (0, 0), 1.5)


Case = tuple[str, Callable[[np.ndarray], np.ndarray], dict[str, float], str, float]
CASES: list[Case] = [
    # operator, degradation, report severities, category, minimum PSNR gain (dB)
    ("denoise", _noise, {"noise": 0.3}, "social_media", 3.0),
    ("deblock", _jpeg, {"jpeg": 0.88}, "social_media", 0.05),
    ("denoise", _jpeg, {"jpeg": 0.88}, "social_media", 0.1),
    ("dehaze", _haze, {"haze": 0.45}, "haze", 5.0),
    ("exposure", _dark, {"low_light": 0.6}, "low_light", 5.0),
    ("white_balance", _cast, {"color_cast": 0.9}, "low_light", 2.0),
    ("contrast", _fade, {"fading": 0.45}, "old_photo", 3.0),
    ("contrast", _sepia, {"sepia": 0.7}, "old_photo", 1.5),
    ("defects", _marks, {"scratches": 0.3, "dust": 0.5}, "old_photo", 1.0),
    ("derain", _streaks, {"rain": 0.3}, "rain", 1.0),
    ("desnow", _flakes, {"snow": 0.4}, "snow", 1.0),
    ("deblur", _blur, {"blur": 0.375}, "old_photo", 0.2),
]


@pytest.mark.parametrize(
    ("op", "degrade", "sev", "category", "gain"), CASES, ids=[f"{c[0]}-{c[1].__name__}" for c in CASES]
)
def test_operator_improves_its_degradation(
    clean: np.ndarray,
    op: str,
    degrade: Callable[[np.ndarray], np.ndarray],
    sev: dict[str, float],
    category: str,
    gain: float,
) -> None:
    lq = np.clip(degrade(clean), 0, 1).astype(np.float32)
    gen = ClassicalGenerator(ClassicalOptions(operators=[op]))  # type: ignore[list-item]
    out, info = gen.restore(lq, _report(category, **sev))
    assert [a["operator"] for a in info["operators"]] == [op]
    before, after = _psnr(clean, lq), _psnr(clean, out)
    assert after >= before + gain, f"{op}: {before:.2f} -> {after:.2f} dB"


def test_default_chain_improves_a_mixture(clean: np.ndarray) -> None:
    lq = np.clip(_noise(_haze(clean)), 0, 1).astype(np.float32)
    out, info = ClassicalGenerator().restore(lq, _report("haze", haze=0.45, noise=0.3))
    names = [a["operator"] for a in info["operators"]]
    assert names[:2] == ["denoise", "dehaze"]  # order: denoise before dehaze amplifies noise by 1/t
    assert _psnr(clean, out) > _psnr(clean, lq) + 5.0


def test_clean_report_returns_image_nearly_unchanged(clean: np.ndarray) -> None:
    out, info = ClassicalGenerator().restore(clean, _report("clean"))
    assert info["operators"] == []
    assert _psnr(clean, out) > 40.0


def test_severity_below_threshold_is_ignored(clean: np.ndarray) -> None:
    out, info = ClassicalGenerator().restore(clean, _report("social_media", noise=0.01))
    assert info["operators"] == []
    assert _psnr(clean, out) > 40.0


@pytest.mark.parametrize("shape", [(97, 131), (300, 200)])
def test_shape_dtype_range_preserved(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(5)
    h, w = shape
    base = cv2.resize(_photo("chelsea", 256), (w, h), interpolation=cv2.INTER_AREA)
    lq = np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1).astype(np.float32)
    report = _report("old_photo", noise=0.3, haze=0.3, fading=0.3, sepia=0.5, dust=0.3, blur=0.2, jpeg=0.4)
    # max_side below the image size exercises the restore-small, upsample-the-change path.
    gen = ClassicalGenerator(ClassicalOptions(max_side=128, operators=list(OPERATORS)))
    out, info = gen.restore(lq, report)
    assert out.shape == lq.shape
    assert out.dtype == np.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert info["work_size"] == [round(h * 128 / max(h, w)), round(w * 128 / max(h, w))]


# Every degradation the report can name, at a mid severity: every operator's trigger fires.
ALL_SEVERITIES = dict.fromkeys(
    (
        "noise", "blur", "motion_blur", "jpeg", "low_resolution", "haze", "rain", "snow", "low_light",
        "color_cast", "fading", "sepia", "film_grain", "scratches", "dust",
    ),
    0.5,
)  # fmt: skip


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (16, 16), (15, 300)])
def test_tiny_images_do_not_fail(shape: tuple[int, int]) -> None:
    img = np.random.default_rng(0).random((*shape, 3), dtype=np.float32)
    gen = ClassicalGenerator(ClassicalOptions(operators=list(OPERATORS)))
    out, _ = gen.restore(img, _report("low_light", **ALL_SEVERITIES))
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.isfinite(out).all()


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_flat_frames_stay_flat(value: float) -> None:
    # No content to stretch, dehaze or brighten: a black or white frame must not drift to grey.
    img = np.full((64, 48, 3), value, np.float32)
    out, _ = ClassicalGenerator().restore(img, _report("low_light", **ALL_SEVERITIES))
    assert float(np.abs(out - value).max()) < 2 / 255


def test_operators_are_listed_with_parameters_in_order(clean: np.ndarray) -> None:
    lq = np.clip(_noise(_dark(clean)), 0, 1).astype(np.float32)
    _, info = ClassicalGenerator().restore(lq, _report("low_light", low_light=0.6, noise=0.3))
    assert info["generator"] == "classical"
    names = [a["operator"] for a in info["operators"]]
    assert names[0] == "exposure" and "denoise" in names
    assert names == [o for o in OPERATORS if o in names]  # the documented fixed order
    for entry in info["operators"]:
        assert isinstance(entry["params"], dict) and entry["params"]
    assert info["operators"][0]["severity"] == {"low_light": 0.6}
    assert info["operators"][0]["params"]["stops"] > 1.0


def test_disabled_operators_do_not_run(clean: np.ndarray) -> None:
    lq = np.clip(_noise(_haze(clean)), 0, 1).astype(np.float32)
    gen = ClassicalGenerator(ClassicalOptions(operators=["dehaze"]))
    _, info = gen.restore(lq, _report("haze", haze=0.45, noise=0.3))
    assert [a["operator"] for a in info["operators"]] == ["dehaze"]
    assert "clahe" not in DEFAULT_OPERATORS and "desnow" not in DEFAULT_OPERATORS


def test_strength_zero_is_identity(clean: np.ndarray) -> None:
    lq = np.clip(_noise(clean), 0, 1).astype(np.float32)
    out, info = ClassicalGenerator(ClassicalOptions(strength=0.0)).restore(lq, _report(noise=0.3))
    assert info["operators"] == []
    np.testing.assert_array_equal(out, lq)


def test_unknown_options_rejected() -> None:
    with pytest.raises(ValidationError):
        ClassicalOptions(sharpness=2.0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ClassicalOptions(operators=["denoise", "magic"])  # type: ignore[list-item]
    with pytest.raises(ValidationError):
        ClassicalOptions(strength=-1)
    with pytest.raises(ValidationError):
        create_generator("classical", sharpness=2.0)


def test_registry() -> None:
    assert "classical" in GENERATORS
    gen = create_generator("classical", strength=0.5, max_side=512)
    assert isinstance(gen, ClassicalGenerator)
    assert gen.options.strength == 0.5
    with pytest.raises(ValueError, match="unknown generator"):
        create_generator("nonexistent")


def test_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match="RGB"):
        ClassicalGenerator().restore(np.zeros((16, 16), np.float32), _report())
