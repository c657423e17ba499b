from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from ggt.degrade import SEVERITY_KEYS, create_primitive, primitive_types
from ggt.degrade.base import linear_to_srgb, primitive_class, srgb_to_linear
from ggt.degrade.primitives import disk_kernel, motion_kernel

RNG = np.random.default_rng

# One reasonable instance of every primitive, used by the generic checks.
EXAMPLES: dict[str, dict] = {
    "gaussian_noise": {"sigma": 0.05},
    "poisson_gaussian_noise": {"a": 0.004, "b": 0.01},
    "gaussian_blur": {"sigma": 1.5},
    "motion_blur": {"length": 9, "angle_deg": 30},
    "defocus_blur": {"radius": 3},
    "sinc_blur": {"cutoff": 1.2, "kernel_size": 15},
    "resize": {"scale": 0.5, "interpolation": "area"},
    "resize_to": {"height": 50, "width": 70},
    "jpeg": {"qualities": [70, 40]},
    "webp": {"qualities": [60, 50]},
    "sharpen": {"amount": 1.2},
    "haze": {"beta": 1.5},
    "rain": {"layers": [{"density": 3, "length": 0.1}], "veil": 0.1},
    "snow": {"layers": [{"density": 2, "radius": 0.01}], "veil": 0.1},
    "low_light": {"stops": 3, "a": 1e-4, "b": 1e-3, "gains": (1.2, 1.0, 0.8)},
    "color_cast": {"gains": (1.2, 1.0, 0.8)},
    "fade": {"contrast_loss": 0.4, "black_lift": 0.1},
    "sepia": {"amount": 0.8},
    "film_grain": {"sigma": 0.04},
    "dust": {"count": 60, "max_radius": 0.02},
    "scratches": {"count": 5},
    "creases": {"count": 2},
    "vignette": {"strength": 0.6},
}


def test_examples_cover_the_registry() -> None:
    assert sorted(EXAMPLES) == primitive_types()


@pytest.mark.parametrize("type_", sorted(EXAMPLES))
def test_primitive_contract(type_: str, astronaut: np.ndarray) -> None:
    prim = create_primitive(type_, **EXAMPLES[type_])
    a = prim.apply(astronaut, RNG(1))
    assert a.type == type_
    assert a.image.dtype == np.float32 and a.image.ndim == 3 and a.image.shape[2] == 3
    assert a.image.min() >= 0.0 and a.image.max() <= 1.0
    if type_ not in ("resize", "resize_to"):
        assert a.image.shape == astronaut.shape
        assert not np.array_equal(a.image, astronaut), "the primitive did nothing"
    assert set(a.severity) <= set(SEVERITY_KEYS)
    # The labels are replayable: the params rebuild a primitive that gives the same bytes, without rng.
    again, params = create_primitive(type_, **a.params)(astronaut)
    assert params == a.params
    assert again.tobytes() == a.image.tobytes()
    # __call__ is the (image, params) form of apply.
    img2, params2 = prim(astronaut, RNG(1))
    assert img2.tobytes() == a.image.tobytes() and params2 == a.params


@pytest.mark.parametrize("type_", [t for t in sorted(EXAMPLES) if "seed" in primitive_class(t).model_fields])
def test_random_primitives_seeded(type_: str, chelsea: np.ndarray) -> None:
    prim = create_primitive(type_, **EXAMPLES[type_])
    a1 = prim.apply(chelsea, RNG(5))
    a2 = prim.apply(chelsea, RNG(5))
    b = prim.apply(chelsea, RNG(6))
    assert a1.image.tobytes() == a2.image.tobytes()
    assert a1.params["seed"] == a2.params["seed"] != b.params["seed"]
    assert a1.image.tobytes() != b.image.tobytes()


def test_unknown_primitive_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown degradation primitive 'blurr'") as err:
        create_primitive("blurr", sigma=1)
    assert "gaussian_blur" in str(err.value) and "jpeg" in str(err.value)


def test_bad_kwargs_are_value_errors() -> None:
    with pytest.raises(ValueError, match="sigmaa"):
        create_primitive("gaussian_blur", sigmaa=1.0)
    with pytest.raises(ValueError):
        create_primitive("jpeg", qualities=[0])
    with pytest.raises(ValueError):
        create_primitive("gaussian_noise", sigma=-0.1)
    with pytest.raises(ValueError, match="odd"):
        create_primitive("gaussian_blur", sigma=1.0, kernel_size=8)


def test_rejects_non_float_or_non_rgb(astronaut: np.ndarray) -> None:
    prim = create_primitive("gaussian_blur", sigma=1.0)
    with pytest.raises(ValueError, match="to_float"):
        prim((astronaut * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="HxWx3"):
        prim(astronaut[..., 0])


# --- noise -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [2 / 255, 10 / 255, 25 / 255])
def test_gaussian_noise_residual_matches_label(sigma: float, grey: np.ndarray) -> None:
    a = create_primitive("gaussian_noise", sigma=sigma).apply(grey, RNG(0))
    assert a.params["sigma"] == sigma
    assert np.std(a.image - grey) == pytest.approx(sigma, rel=0.03)
    assert a.severity["noise"] == pytest.approx(sigma / (50 / 255))


def test_gray_noise_is_the_same_on_every_channel(grey: np.ndarray) -> None:
    out, _ = create_primitive("gaussian_noise", sigma=0.05, gray=True)(grey, RNG(0))
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_poisson_gaussian_variance_follows_the_model() -> None:
    a, b = 0.004, 0.01
    for level in (0.2, 0.7):
        flat = np.full((160, 160, 3), level, np.float32)
        out, _ = create_primitive("poisson_gaussian_noise", a=a, b=b, linear=False)(flat, RNG(3))
        assert np.var(out - flat) == pytest.approx(a * level + b * b, rel=0.05)


def test_poisson_gaussian_linear_hits_shadows_harder(astronaut: np.ndarray) -> None:
    dark = np.full((128, 128, 3), 0.1, np.float32)
    bright = np.full((128, 128, 3), 0.8, np.float32)
    prim = create_primitive("poisson_gaussian_noise", a=0.002, b=0.0, linear=True)
    rel = [np.std(prim(x, RNG(0))[0] - x) / x.mean() for x in (dark, bright)]
    assert rel[0] > 2 * rel[1]
    a = prim.apply(dark, RNG(0))
    assert a.severity["noise"] == pytest.approx(a.stats["added_std"] / (50 / 255))


# --- blur --------------------------------------------------------------------------------------------


def test_gaussian_blur_measured_sigma_and_monotone_severity(astronaut: np.ndarray) -> None:
    sev = []
    for sigma in (0.5, 1.0, 2.0, 4.0):
        a = create_primitive("gaussian_blur", sigma=sigma).apply(astronaut)
        # A sampled Gaussian narrower than a pixel is narrower than its sigma; the label is what ran.
        assert a.stats["sigma_eq"] == pytest.approx(sigma, rel=0.03 if sigma >= 1 else 0.1)
        assert a.params["kernel_size"] % 2 == 1 and a.params["sigma_y"] == sigma
        sev.append(a.severity["blur"])
    assert sev == sorted(sev) and len(set(sev)) == 4


def test_blur_kernels_are_normalised_and_shaped() -> None:
    k = motion_kernel(11, 0)
    assert k.sum() == pytest.approx(1.0, abs=1e-5)
    cols = np.nonzero(k.sum(axis=0) > 1e-3)[0]
    assert 10 <= cols.size <= 13  # a horizontal line ~11 px long
    assert np.nonzero(k.sum(axis=1) > 1e-3)[0].size <= 3
    d = disk_kernel(4)
    assert d.sum() == pytest.approx(1.0, abs=1e-5)
    assert (d / d.max()).sum() == pytest.approx(math.pi * 16, rel=0.03)  # area-weighted disk area


def test_motion_blur_smears_along_its_angle() -> None:
    dot = np.zeros((41, 41, 3), np.float32)
    dot[20, 20] = 1.0
    out, _ = create_primitive("motion_blur", length=15, angle_deg=90)(dot)
    spread = out[..., 0] > 1e-3
    assert np.nonzero(spread.any(axis=1))[0].size >= 14  # vertical extent
    assert np.nonzero(spread.any(axis=0))[0].size <= 3


def test_defocus_and_sinc_severity_monotone(astronaut: np.ndarray) -> None:
    d = [create_primitive("defocus_blur", radius=r).apply(astronaut).severity["blur"] for r in (1, 2, 4)]
    s = [create_primitive("sinc_blur", cutoff=c).apply(astronaut).severity["blur"] for c in (3.0, 2.0, 1.0)]
    assert d == sorted(d) and s == sorted(s)


# --- resampling and codecs ---------------------------------------------------------------------------


def test_resize_and_resize_to(astronaut: np.ndarray) -> None:
    small, p = create_primitive("resize", scale=0.5)(astronaut)
    assert small.shape == (48, 64, 3) and p == {"scale": 0.5, "interpolation": "bicubic"}
    back, _ = create_primitive("resize_to", height=96, width=128, interpolation="lanczos")(small)
    assert back.shape == astronaut.shape


def _cv_jpeg(img: np.ndarray, q: int) -> np.ndarray:
    bgr = cv2.cvtColor((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, q])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255


def test_jpeg_chain_labels_are_the_rounds_applied(coffee: np.ndarray) -> None:
    a = create_primitive("jpeg", qualities=[80, 35, 60]).apply(coffee)
    assert a.params["qualities"] == [80, 35, 60]
    expected = _cv_jpeg(_cv_jpeg(_cv_jpeg(coffee, 80), 35), 60)
    assert np.abs(a.image - expected).max() < 1e-6
    assert a.severity["jpeg"] == pytest.approx((95 - 35) / 85)


def test_codec_severity_monotone_and_error_grows(coffee: np.ndarray) -> None:
    for codec in ("jpeg", "webp"):
        errs, sevs = [], []
        for q in (90, 60, 30, 10):
            a = create_primitive(codec, qualities=[q]).apply(coffee)
            errs.append(float(np.abs(a.image - coffee).mean()))
            sevs.append(a.severity["jpeg"])
        assert sevs == sorted(sevs) and errs == sorted(errs), codec


def test_sharpen_overshoots_at_edges_and_severity_monotone() -> None:
    step = np.full((32, 32, 3), 0.3, np.float32)
    step[:, 16:] = 0.6
    a = create_primitive("sharpen", amount=1.5, radius=1.5).apply(step)
    assert a.image[:, 16:].max() > 0.65 and a.image[:, :16].min() < 0.25  # halos both sides
    s = [
        create_primitive("sharpen", amount=x).apply(step).severity["oversharpening"] for x in (0.3, 1.0, 2.0)
    ]
    assert s == sorted(s)


# --- weather -----------------------------------------------------------------------------------------


def test_haze_follows_the_scattering_model(astronaut: np.ndarray) -> None:
    prim = create_primitive("haze", beta=1.2, airlight=(0.85, 0.88, 0.92), seed=11)
    a = prim.apply(astronaut)
    t = prim.transmission(astronaut)[..., None]
    model = astronaut * t + np.asarray(a.params["airlight"], np.float32) * (1 - t)
    assert np.abs(a.image - model).max() < 1e-5
    assert a.stats["mean_transmission"] == pytest.approx(float(t.mean()), abs=1e-6)
    assert a.severity["haze"] == pytest.approx(1 - float(t.mean()), abs=1e-6)
    # Transmission recovered from the pixels alone agrees with the label where J and A differ enough.
    airlight = np.asarray(a.params["airlight"], np.float32)
    diff = airlight - astronaut
    ok = np.abs(diff) > 0.3
    t_est = (airlight - a.image)[ok] / diff[ok]
    assert float(np.median(t_est)) == pytest.approx(
        float(np.median(np.broadcast_to(t, diff.shape)[ok])), abs=0.02
    )
    depth = prim.depth(astronaut)
    assert depth.min() >= a.params["depth_min"] - 1e-6 and depth.max() <= 1 + 1e-6


def test_haze_severity_monotone_in_beta(astronaut: np.ndarray) -> None:
    s = [
        create_primitive("haze", beta=b, seed=3).apply(astronaut).severity["haze"]
        for b in (0.3, 1.0, 2.0, 4.0)
    ]
    assert s == sorted(s) and s[0] > 0 and s[-1] < 1


def test_rain_and_snow_severity_monotone_and_veil_is_haze(chelsea: np.ndarray) -> None:
    rain = [
        create_primitive("rain", layers=[{"density": d, "length": 0.08}], seed=1)
        .apply(chelsea)
        .severity["rain"]
        for d in (0.5, 2, 6)
    ]
    snow = [
        create_primitive("snow", layers=[{"density": d, "radius": 0.01}], seed=1)
        .apply(chelsea)
        .severity["snow"]
        for d in (0.3, 1, 3)
    ]
    assert rain == sorted(rain) and snow == sorted(snow)
    a = create_primitive("rain", layers=[{"density": 1, "length": 0.08}], veil=0.25, seed=1).apply(chelsea)
    assert a.severity["haze"] == 0.25
    # Rain streaks lighten: screen blending never darkens a pixel.
    b = create_primitive("rain", layers=[{"density": 2, "length": 0.08}], seed=1).apply(chelsea)
    assert (b.image >= chelsea - 1e-6).all()


@pytest.mark.parametrize(
    ("kind", "layer"),
    [("rain", {"density": 0.3, "length": 0.08, "width": 0.01}), ("snow", {"density": 0.5, "radius": 0.006})],
)
def test_rain_and_snow_cover_the_same_share_of_a_photo_at_any_resolution(kind: str, layer: dict) -> None:
    # Drops are sized in fractions of the short side, so a small photo must not get sparse, faint rain
    # and a large one a white-out (counted per pixel, 1280 px got 64 times the drops of 160 px). Rain stays
    # within a factor of two: a streak's clipped core widens a little with its width in pixels.
    prim = create_primitive(kind, layers=[layer], seed=3)
    black = {short: np.zeros((short, short * 3 // 2, 3), np.float32) for short in (160, 512, 1280)}
    cover = {short: prim.apply(img).severity[kind] for short, img in black.items()}
    assert cover[160] > 0
    for short in (512, 1280):
        assert 0.5 < cover[short] / cover[160] < 2.0, cover


# --- exposure, colour, old photo ---------------------------------------------------------------------


@pytest.mark.parametrize("stops", [1.0, 2.5, 4.0])
def test_low_light_mean_drops_by_the_labelled_exposure(stops: float, coffee: np.ndarray) -> None:
    a = create_primitive("low_light", stops=stops).apply(coffee, RNG(0))
    ratio = srgb_to_linear(a.image).mean() / srgb_to_linear(coffee).mean()
    assert ratio == pytest.approx(2.0**-stops, rel=0.03)
    assert a.severity["low_light"] == pytest.approx(stops / 5)
    assert "noise" not in a.severity and "color_cast" not in a.severity


def test_low_light_noise_is_added_after_darkening(coffee: np.ndarray) -> None:
    prim = create_primitive("low_light", stops=3, a=2e-4, b=2e-3)
    a = prim.apply(coffee, RNG(0))
    clean, _ = create_primitive("low_light", stops=3)(coffee)
    assert np.std(a.image - clean) == pytest.approx(a.stats["noise_std"], rel=1e-4)
    # The same sensor noise before darkening would be much weaker relative to what remains.
    assert a.stats["noise_std"] / float(clean.mean()) > 0.05
    louder = create_primitive("low_light", stops=3, a=8e-4, b=2e-3).apply(coffee, RNG(0))
    assert louder.severity["noise"] > a.severity["noise"]


def test_low_light_quantisation_bands_shadows(coffee: np.ndarray) -> None:
    out, _ = create_primitive("low_light", stops=4, quantize_bits=6)(coffee)
    assert len(np.unique(np.round(out * 255))) <= 2**6


def test_srgb_tables_round_trip() -> None:
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    assert np.abs(linear_to_srgb(srgb_to_linear(x)) - x).max() < 2e-3
    assert srgb_to_linear(np.float32([0.5]))[0] == pytest.approx(0.21404, abs=1e-4)


def test_color_cast_and_fade_and_sepia(astronaut: np.ndarray) -> None:
    warm = create_primitive("color_cast", gains=(1.3, 1.0, 0.7)).apply(astronaut)
    assert (
        warm.image[..., 0].mean() > astronaut[..., 0].mean()
        and warm.image[..., 2].mean() < astronaut[..., 2].mean()
    )
    mild = create_primitive("color_cast", gains=(1.1, 1.0, 0.9)).apply(astronaut)
    assert 0 < mild.severity["color_cast"] < warm.severity["color_cast"]
    faded = create_primitive("fade", contrast_loss=0.5, black_lift=0.2).apply(astronaut)
    assert faded.image.std() < astronaut.std() and faded.image.min() >= 0.2 - 1e-6
    assert faded.severity["fading"] == pytest.approx(1 - 0.5 * 0.8)
    bw, _ = create_primitive("sepia", amount=1.0, tone=(1, 1, 1))(astronaut)
    assert np.abs(bw[..., 0] - bw[..., 2]).max() < 1e-6


def test_film_grain_std_at_mid_grey(grey: np.ndarray) -> None:
    for sigma in (0.02, 0.05):
        a = create_primitive("film_grain", sigma=sigma, grain_size=1.0).apply(grey, RNG(0))
        assert np.std(a.image - grey) == pytest.approx(sigma, rel=0.05)
        assert a.severity["film_grain"] == pytest.approx(sigma / (40 / 255))


def test_damage_severity_monotone_in_count(astronaut: np.ndarray) -> None:
    for type_, key, counts in (
        ("dust", "dust", (10, 60, 200)),
        ("scratches", "scratches", (1, 4, 10)),
        ("creases", "scratches", (1, 2, 4)),
    ):
        sev = [create_primitive(type_, count=c, seed=9).apply(astronaut).severity[key] for c in counts]
        assert sev == sorted(sev) and sev[0] > 0, type_


def test_vignette_darkens_corners_not_centre(grey: np.ndarray) -> None:
    out, _ = create_primitive("vignette", strength=0.5, radius=0.3)(grey)
    assert out[0, 0, 0] < 0.3 and out[64, 64, 0] == pytest.approx(0.5)
