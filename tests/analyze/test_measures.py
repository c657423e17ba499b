"""Each measure responds monotonically to its degradation, rendered by independent code
(`ggt.analyze.calibration`, OpenCV and Pillow directly), never only by the simulator."""

from __future__ import annotations

import io
import itertools
import math

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from fixtures.lens import cos4_falloff
from ggt.analyze import calibration as C
from ggt.analyze import measures as M


def _increasing(values: list[float], strict: bool = True) -> bool:
    pairs = list(itertools.pairwise(values))
    return all(b > a for a, b in pairs) if strict else all(b >= a for a, b in pairs)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize("seed", [0, 1, 2])  # the three noise families of calibration.add_noise
def test_noise_sigma_tracks_added_noise(camera: np.ndarray, seed: int) -> None:
    est = [M.noise_sigma(camera)]
    for sev in (0.1, 0.3, 0.6):
        noisy, _ = C.add_noise(camera, _rng(seed), sev)
        est.append(M.noise_sigma(noisy))
    assert _increasing(est), est
    # Gaussian noise of sigma 0.045 must read within a factor of 1.5.
    g = np.clip(camera + _rng(9).normal(0, 0.045, camera.shape), 0, 1).astype(np.float32)
    assert 0.03 < M.noise_sigma(g) < 0.068


def test_noise_sigma_is_low_on_clean_photos(astronaut: np.ndarray, coffee: np.ndarray) -> None:
    assert M.noise_sigma(astronaut) < 0.012
    assert M.noise_sigma(coffee) < 0.012


@pytest.mark.parametrize("kind", ["cv2", "disk", "pil"])
def test_blur_sigma_tracks_blur(astronaut: np.ndarray, kind: str) -> None:
    est = [M.blur_profile(astronaut)["blur_sigma"]]
    for sigma in (1.0, 2.0, 4.0):
        if kind == "cv2":
            out = cv2.GaussianBlur(astronaut, (0, 0), sigma)
        elif kind == "disk":
            out = cv2.filter2D(astronaut, -1, C._disk(2 * sigma), borderType=cv2.BORDER_REFLECT)
        else:
            pil = Image.fromarray((astronaut * 255 + 0.5).astype(np.uint8))
            out = np.asarray(pil.filter(ImageFilter.GaussianBlur(sigma)))
            out = out.astype(np.float32) / 255
        est.append(M.blur_profile(out)["blur_sigma"])
    assert _increasing(est), est


@pytest.mark.parametrize(("angle", "expect"), [(0.0, 0.0), (90.0, 90.0)])
def test_motion_blur_direction(photo_crop, angle: float, expect: float) -> None:  # type: ignore[no-untyped-def]
    img = photo_crop("astronaut", 512)
    out, _ = C.add_motion_blur(img, _rng(), 0.5, angle=angle)
    prof = M.blur_profile(out)
    assert prof["blur_anisotropy"] > 2.0
    assert abs(prof["blur_direction_deg"] - expect) < 1e-6
    # Longer motion reads longer along the motion.
    shorter, _ = C.add_motion_blur(img, _rng(), 0.2, angle=angle)
    assert M.blur_profile(shorter)["blur_sigma_max"] < prof["blur_sigma_max"]


def _pil_jpeg(img: np.ndarray, q: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray((img * 255 + 0.5).astype(np.uint8)).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float32) / 255


def _cv2_jpeg(img: np.ndarray, q: int) -> np.ndarray:
    bgr = cv2.cvtColor((img * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
    _, enc = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, q])
    return cv2.cvtColor(cv2.imdecode(enc, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255


@pytest.mark.parametrize("encode", [_pil_jpeg, _cv2_jpeg])
def test_jpeg_quality_estimate_and_blockiness(camera: np.ndarray, encode) -> None:  # type: ignore[no-untyped-def]
    assert M.jpeg_quality(camera)["jpeg_quality"] == 100.0  # a PNG-born photo: no steps found
    blocks = []
    for q in (75, 50, 30, 15):
        res = M.jpeg_quality(encode(camera, q))
        assert abs(res["jpeg_quality"] - q) <= 6, (q, res)
        blocks.append(res["jpeg_blockiness"])
    assert _increasing(blocks), blocks


def test_jpeg_grid_found_after_crop(camera: np.ndarray) -> None:
    shifted = _pil_jpeg(camera, 30)[3:, 5:]
    assert abs(M.jpeg_quality(shifted)["jpeg_quality"] - 30) <= 6


def test_dark_channel_tracks_haze(astronaut: np.ndarray) -> None:
    for seed in range(3):  # different depth maps
        est = [M.dark_channel(astronaut)["haze_dark_channel"]]
        for sev in (0.2, 0.5, 0.9):
            est.append(M.dark_channel(C.add_haze(astronaut, _rng(seed), sev)[0])["haze_dark_channel"])
        assert _increasing(est), est


def test_exposure_tracks_low_light(coffee: np.ndarray) -> None:
    for seed in range(2):  # linear-light stops and gamma curve
        est = [M.exposure(coffee)["linear_p995"]]
        for sev in (0.3, 0.6, 0.9):
            est.append(M.exposure(C.low_light(coffee, _rng(seed), sev)[0])["linear_p995"])
        assert _increasing(est[::-1]), est


def test_colour_cast_and_sepia(astronaut: np.ndarray, camera: np.ndarray) -> None:
    casts = []
    for gain in (1.0, 1.1, 1.25, 1.5):  # a warmer and warmer white balance on a grey photo
        casts.append(
            M.colour(np.clip(camera * np.array([gain, 1, 1 / gain], np.float32), 0, 1))["color_cast"]
        )
    assert _increasing(casts), casts
    assert M.colour(camera)["sepia"] == 0.0  # greyscale is not sepia
    sep = [M.colour(astronaut)["sepia"]] + [
        M.colour(C.sepia(astronaut, _rng(0), a)[0])["sepia"] for a in (0.8, 1.0)
    ]
    assert sep[0] < 0.1 and sep[-1] > 0.8 and _increasing(sep, strict=False), sep


def test_rain_streak_energy_tracks_rain(photo_crop) -> None:  # type: ignore[no-untyped-def]
    img = photo_crop("coffee", 384)
    clean = M.rain_streaks(img)["rain_streak_energy"]
    for seed in (0, 1, 2):  # drawn lines (0, 2) and motion-blurred drops (1), other angles and lengths
        # Light to moderate rain; in a downpour streaks merge into a veil and the count saturates.
        est = [
            M.rain_streaks(C.add_rain(img, _rng(seed), sev)[0])["rain_streak_energy"]
            for sev in (0.02, 0.1, 0.2)
        ]
        assert est[0] > clean + 2 and _increasing(est), (clean, est)


@pytest.mark.parametrize("angle", [60, 90, 120])
def test_rain_direction(photo_crop, angle: int) -> None:  # type: ignore[no-untyped-def]
    img = photo_crop("coffee", 384).copy()
    rng = _rng(angle)
    t = math.radians(angle)
    for _ in range(300):
        x, y = rng.uniform(0, 384, 2)
        n = rng.uniform(10, 25)
        end = (int(x + n * math.cos(t)), int(y + n * math.sin(t)))
        cv2.line(img, (int(x), int(y)), end, (0.95, 0.95, 0.95), 1, cv2.LINE_AA)
    res = M.rain_streaks(img)
    assert abs(res["rain_direction_deg"] - angle) < 10, res
    assert res["rain_streak_energy"] > 5 and res["rain_coherence"] > 0.6


def test_snow_speckles_track_snow(camera: np.ndarray) -> None:
    est = [M.bright_speckles(camera)["snow_speckle_density"]]
    for sev in (0.3, 0.9):
        est.append(M.bright_speckles(C.add_snow(camera, _rng(3), sev)[0])["snow_speckle_density"])
    assert _increasing(est), est


def test_scratches_and_dust(astronaut: np.ndarray) -> None:
    base = M.lines_and_dust(astronaut)
    scr = M.lines_and_dust(C.scratches(astronaut, _rng(1), 1.0)[0])
    assert scr["scratch_density"] > base["scratch_density"] + 2
    dusty = M.lines_and_dust(C.dust(astronaut, _rng(1), 1.0)[0])
    assert dusty["dust_density"] > base["dust_density"] + 2


def test_compute_measures_is_flat_floats(astronaut: np.ndarray) -> None:
    m = M.compute_measures(astronaut)
    assert all(isinstance(v, float) and np.isfinite(v) for v in m.values())
    for key in (
        "noise_sigma",
        "blur_sigma",
        "jpeg_quality",
        "haze_dark_channel",
        "linear_mean",
        "color_cast",
        "sepia",
        "rain_streak_energy",
        "snow_speckle_density",
        "scratch_density",
    ):
        assert key in m


def test_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match="RGB"):
        M.compute_measures(np.zeros((8, 8), np.float32))


def _screen_rain(
    img: np.ndarray, rng: np.random.Generator, angle_deg: float, n: int, level: float
) -> np.ndarray:
    """Rain by code that shares nothing with the simulator or `calibration`: anti-aliased streaks drawn
    with Pillow on a layer, softened, then screen-blended at opacity `level`."""
    h, w = img.shape[:2]
    layer = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(layer)
    t = math.radians(angle_deg)
    for _ in range(n):
        x, y = rng.uniform(-20, w), rng.uniform(-20, h)
        length = rng.uniform(12, 40)
        draw.line([(x, y), (x + length * math.cos(t), y + length * math.sin(t))], fill=255, width=1)
    streaks = np.asarray(layer.filter(ImageFilter.GaussianBlur(0.7)), np.float32)[..., None] / 255.0
    return (1.0 - (1.0 - img) * (1.0 - level * streaks)).astype(np.float32)


def test_rain_lines_see_faint_streaks_of_another_renderer(photo_crop) -> None:  # type: ignore[no-untyped-def]
    img = photo_crop("coffee", 384)
    clean = M.rain_lines(img)["rain_line_excess"]
    for angle in (70.0, 95.0, 115.0):  # lines in the image's own axes, 0 = horizontal
        faint = [
            M.rain_lines(_screen_rain(img, _rng(int(angle)), angle, 250, level))["rain_line_excess"]
            for level in (0.12, 0.25, 0.5)
        ]
        assert _increasing(faint), (angle, clean, faint)
        assert faint[0] > clean + 2 and faint[1] > clean + 5, (angle, clean, faint)


@pytest.mark.parametrize("name", ["grass", "brick", "gravel", "coffee", "astronaut", "text"])
def test_rain_lines_low_on_clean_photos_and_dense_texture(photo_crop, name: str) -> None:  # type: ignore[no-untyped-def]
    # Grass blades, gravel, mortar and letters make thin lines, but at every orientation or with a
    # perpendicular partner; 4.0 is where the rain severity starts (`heuristic.severities`).
    img = photo_crop(name, 384)
    assert M.rain_lines(img)["rain_line_excess"] < 4.0


def test_rain_lines_keep_rain_streaks_unchanged(astronaut: np.ndarray) -> None:
    # `compute_measures` gets both from one pass; the public functions agree with it.
    m = M.compute_measures(astronaut)
    assert M.rain_streaks(astronaut) == {
        k: m[k] for k in ("rain_streak_energy", "rain_coherence", "rain_direction_deg")
    }
    assert M.rain_lines(astronaut) == {k: m[k] for k in ("rain_line_excess", "rain_line_coherence")}


@pytest.mark.parametrize("name", ["coffee", "chelsea", "astronaut"])
def test_vignetting_tracks_corner_falloff(photo_crop, name: str) -> None:  # type: ignore[no-untyped-def]
    img = photo_crop(name, 384)
    # Content-limited: the brightest corner of the scene must darken below its band before it reads.
    reads = [M.vignetting(cos4_falloff(img, s))["vignette_falloff"] for s in (0.0, 0.5, 0.8, 1.0)]
    assert _increasing(reads, strict=False), reads
    assert reads[-1] > reads[0] + 0.15, reads


@pytest.mark.parametrize("name", ["grass", "brick", "gravel", "coffee", "text", "camera"])
def test_vignetting_low_on_clean_photos(photo_crop, name: str) -> None:  # type: ignore[no-untyped-def]
    # A corner or two darkened by the scene is not fall-off: all four must be darker.
    assert M.vignetting(photo_crop(name, 384))["vignette_falloff"] < 0.1


@pytest.mark.parametrize("backdrop", [0.0, 0.3, 0.5])
def test_vignetting_reads_nothing_where_the_edges_are_at_the_black_level(backdrop: float) -> None:
    # A flat frame, or a subject on a uniform backdrop: the corners and the bands beside them both sit
    # at the black level, so their ratio is noise over noise, not fall-off (it read 1.0 before).
    img = np.full((256, 256, 3), backdrop, np.float32)
    assert M.vignetting(img)["vignette_falloff"] == 0.0
    img[60:200, 60:200] = 0.8
    assert M.vignetting(img)["vignette_falloff"] == 0.0


@pytest.mark.parametrize("name", ["camera", "astronaut", "coffee", "grass"])
def test_jpeg_grid_peak_sees_a_grid_whose_quantisation_steps_are_lost(photo_crop, name: str) -> None:  # type: ignore[no-untyped-def]
    clean = photo_crop(name, 256, 0.3, 0.5)
    # Noise and a tone curve after the JPEG move every coefficient off its quantisation step (the
    # table estimate finds nothing) but leave the block boundaries where they were.
    edited = np.clip(_pil_jpeg(clean, 40) ** 0.9 + _rng(0).normal(0, 2 / 255, clean.shape), 0, 1)
    edited = edited.astype(np.float32)
    assert M.jpeg_quality(edited)["jpeg_quality"] == 100.0
    base = M.jpeg_grid_spectrum(clean)["jpeg_grid_peak"]
    for img in (edited, edited[3:, 5:]):  # any grid offset
        peak = M.jpeg_grid_spectrum(img)["jpeg_grid_peak"]
        assert peak > max(5.0, 3 * base), (base, peak)
    assert base < 3.0
    assert M.jpeg_grid_spectrum(_pil_jpeg(clean, 92))["jpeg_grid_peak"] < 4.0


def test_jpeg_grid_peak_ignores_structure_periodic_along_one_axis(camera: np.ndarray) -> None:
    # Bright lines every 8 rows (text lines, brick courses, a blind) lift one profile only.
    striped = camera.copy()
    striped[::8] = np.clip(striped[::8] + 0.15, 0, 1)
    assert M.jpeg_grid_spectrum(striped)["jpeg_grid_peak"] < 4.0
    assert M.jpeg_grid_spectrum(np.full((40, 300, 3), 0.5, np.float32))["jpeg_grid_peak"] == 1.0


def test_grid_rescaled_peak_sees_a_grid_of_another_period(astronaut: np.ndarray) -> None:
    # Faint lines every 10 px: a period whose harmonics miss JPEG's multiples of 1/8 cycle per pixel.
    grid, rows_only = astronaut.copy(), astronaut.copy()
    grid[::10] += 0.03
    grid[:, ::10] += 0.03
    rows_only[::10] += 0.03
    clean = M.jpeg_grid_spectrum(astronaut)
    seen = M.jpeg_grid_spectrum(np.clip(grid, 0, 1))
    assert seen["grid_rescaled_peak"] > 3 * clean["grid_rescaled_peak"], (clean, seen)
    assert seen["jpeg_grid_peak"] < 4.0
    assert M.jpeg_grid_spectrum(np.clip(rows_only, 0, 1))["grid_rescaled_peak"] < 4.0


@pytest.mark.parametrize("name", ["astronaut", "coffee", "grass"])
def test_grid_rescaled_peak_sees_a_jpeg_that_was_upscaled(photo_crop, name: str) -> None:  # type: ignore[no-untyped-def]
    clean = photo_crop(name, 320, 0.3, 0.5)
    # Shared small, viewed large: a JPEG made at 256 px and shown at 320 has blocks every 10 px.
    small = _pil_jpeg(cv2.resize(clean, (256, 256), interpolation=cv2.INTER_AREA), 30)
    upscaled = cv2.resize(small, (320, 320), interpolation=cv2.INTER_CUBIC)
    before = M.jpeg_grid_spectrum(clean)["grid_rescaled_peak"]
    after = M.jpeg_grid_spectrum(upscaled)["grid_rescaled_peak"]
    assert after > 1.5 * before, (before, after)
