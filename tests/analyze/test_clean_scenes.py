"""Clean scenes that look like a degradation to a naive measure: star fields, flat grey scenes, and
the evidence that no clean photo shows (pins the fixes of docs/analyzer-accuracy.md, 2026-11-30)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fixtures.lens import cos4_falloff
from ggt.analyze import measures as M
from ggt.analyze import model as AM
from ggt.analyze.heuristic import HeuristicAnalyzer, severities

AN = HeuristicAnalyzer()


def _specks_on(background: float, n: int = 400, size: int = 384, seed: int = 0) -> np.ndarray:
    """Grey RGB: a smooth background with `n` small bright points (a star field when dark)."""
    rng = np.random.default_rng(seed)
    ramp = 0.01 * np.mgrid[:size, :size][0].astype(np.float32) / size
    pts = np.zeros((size, size), np.float32)
    pts[rng.integers(0, size, n), rng.integers(0, size, n)] = rng.uniform(0.5, 1.0, n)
    img = background + ramp + cv2.GaussianBlur(pts, (0, 0), 0.8) * np.float32(2 * np.pi * 0.64)
    return np.clip(np.repeat(img[..., None], 3, axis=2), 0, 1).astype(np.float32)


def _noisy(img: np.ndarray, sigma255: float) -> np.ndarray:
    noise = np.random.default_rng(1).normal(0, sigma255 / 255, img.shape)
    return np.clip(img + noise, 0, 1).astype(np.float32)


def test_star_field_is_not_dusty_or_noisy() -> None:
    stars = _specks_on(0.02)
    rep = AN.analyze(stars)
    m = rep.measures
    assert m["point_light_density"] > 10  # the stars are seen, as point lights ...
    sev = severities(m)
    assert sev["dust"] == 0.0  # ... not as dust
    assert m["noise_sigma"] < 1 / 255 and sev["noise"] == 0.0
    # Not an old print; (this synthetic frame, 99.8 % black, may read as under-exposed: low_light)
    assert rep.category != "old_photo"
    assert not {"dust", "noise", "film_grain"} & {d.type for d in rep.degradations}


def test_hubble_deep_field_is_clean() -> None:
    from ggt.photos import load_photo

    rep = AN.analyze(load_photo("hubble_deep_field").astype(np.float32) / 255)
    assert rep.measures["point_light_density"] > 10
    assert rep.category == "clean", rep.model_dump(exclude={"measures"})


def test_star_field_with_noise_reads_noisy() -> None:
    m = M.compute_measures(_noisy(_specks_on(0.02), 10))
    assert m["noise_sigma"] > 5 / 255  # clipping at black hides some of sigma 10; most is seen
    assert severities(m)["noise"] >= 0.1


def test_the_same_specks_on_lit_paper_are_dust() -> None:
    m = M.compute_measures(_specks_on(0.45))
    assert m["dust_density"] > 10 and m["point_light_density"] == 0
    assert severities(m)["dust"] == pytest.approx(1.0)


def test_fading_alone_is_not_old_photo_evidence() -> None:
    assert AM.evidence({"fading": 0.9}, "old_photo") == 0.0  # a flat grey scene, fog, a grey page
    assert AM.evidence({"fading": 0.9, "noise": 0.15}, "old_photo") == 0.9  # with grain: a print
    assert AM.evidence({"fading": 0.9, "sepia": 0.3}, "old_photo") == 0.9
    assert AM.evidence({"fading": 0.9, "dust": 0.05}, "old_photo") == 0.05  # below the companion floor


def test_flat_grey_scene_is_clean_and_a_grainy_faded_print_is_not(photo_crop) -> None:  # type: ignore[no-untyped-def]
    grey = photo_crop("camera", 320).mean(axis=2, keepdims=True).repeat(3, axis=2)
    flat = (0.3 + 0.3 * grey).astype(np.float32)  # lifted blacks, little range: what fading leaves
    sev = severities(M.compute_measures(flat))
    assert sev["fading"] > 0.5 and AM.evidence(sev, "old_photo") < 0.1
    assert AN.analyze(flat).category == "clean"
    grainy = _noisy(flat, 8)
    sev = severities(M.compute_measures(grainy))
    assert AM.evidence(sev, "old_photo") > 0.5


def test_strong_evidence_overrules_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    model = AM.load_model()
    monkeypatch.setattr(model, "gates", {**model.gates, "old_photo": 0.3, "social_media": 0.3})
    scores = {"clean": 0.7, "social_media": 0.1, "old_photo": 0.1, "rain": 0.05, "snow": 0.0, "haze": 0.05,
              "low_light": 0.0}  # fmt: skip
    sev = dict.fromkeys(["sepia", "fading", "jpeg", "noise"], 0.0)
    m = {"jpeg_quality": 100.0}
    assert AN._category(scores, sev, m) == "clean"
    assert AN._category(scores, {**sev, "sepia": 0.95}, m) == "old_photo"  # a fully toned print
    assert AN._category(scores, sev, {"jpeg_quality": 30.0}) == "social_media"  # a recovered q 30 table
    assert AN._category(scores, {**sev, "sepia": 0.8}, m) == "clean"  # partial toning: the model decides
    assert AN._category(scores, {**sev, "sepia": 0.95}) == "clean"  # without measures, no override


def test_lens_falloff_next_to_fading_is_old_photo_evidence() -> None:
    # A black-and-white print whose scan lost its grain: faded, and darker in all four corners (an
    # old lens's cos^4 fall-off, not the simulator's vignette primitive). Whole frames: fall-off is
    # read at the corners.
    from ggt.photos import load_photo

    img = load_photo("camera").astype(np.float32) / 255
    img = cv2.resize(img, (320, 320 * img.shape[0] // img.shape[1]), interpolation=cv2.INTER_AREA)
    grey = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
    flat = (0.3 + 0.3 * grey).astype(np.float32)
    print_ = (0.3 + 0.3 * cos4_falloff(grey, 0.7)).astype(np.float32)
    sev = severities(M.compute_measures(flat))
    assert sev["fading"] > 0.5 and AM.evidence(sev, "old_photo") < AM.FADING_COMPANION
    sev = severities(M.compute_measures(print_))
    assert sev["fading"] > 0.5 and sev["vignette"] >= AM.FADING_COMPANION
    assert AM.evidence(sev, "old_photo") > 0.5
