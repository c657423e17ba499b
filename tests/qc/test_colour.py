"""Colour errors: the white-balance/hue metric, the colour corruption, and the policy on colour pairs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from qc_helpers import clean

from ggt.qc.corrupt import COLOUR_MODES, corrupt
from ggt.qc.metrics import create_metric


def _hue_rotate(img: np.ndarray, deg: float) -> np.ndarray:
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2Lab)
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    a, b = lab[..., 1].copy(), lab[..., 2].copy()
    lab[..., 1], lab[..., 2] = c * a - s * b, s * a + c * b
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0, 1)


def test_wb_is_zero_on_identical_images_and_reads_a_hue_rotation() -> None:
    wb = create_metric("wb")
    img = clean("coffee", 256, 256)
    same = wb(img, img)
    assert same["change"] == 0 and same["hue_shift"] == 0 and same["chroma_ratio"] == pytest.approx(1)
    rot = wb(img, _hue_rotate(img, 20.0))
    assert 15 < rot["hue_shift"] < 25 and rot["hue_local"] < 8
    # A per-channel gain is a white-balance change: the illuminant moves, the normalised hues do not.
    gains = np.clip(img * np.float32([1.2, 1.0, 0.8]), 0, 1)
    g = wb(img, gains)
    assert g["change"] > 0.2 and g["hue_shift"] < 5


def test_wb_grey_lq_gives_no_hue_evidence() -> None:
    wb = create_metric("wb")
    grey = clean("camera", 256, 256)
    v = wb(grey, clean("coffee", 256, 256))
    assert v["hue_shift"] == 0 and v["chroma_ratio"] == 1 and v["chromatic"] < 0.05
    assert v["cast_lq"] < 0.01


def test_colour_corruption_is_varied_and_always_visible() -> None:
    colourful, grey = clean("astronaut", 192, 192), clean("camera", 192, 192)
    modes = set()
    for seed in range(40):
        for hq in (colourful, grey):
            bad, params = corrupt("colour", hq, hq, seed, hq)
            modes.add(params["mode"])
            lab0, lab1 = cv2.cvtColor(hq, cv2.COLOR_RGB2Lab), cv2.cvtColor(bad, cv2.COLOR_RGB2Lab)
            de = np.hypot(*(lab1[..., 1:] - lab0[..., 1:]).transpose(2, 0, 1))
            if hq is grey:
                assert params["mode"] in ("gains", "tint", "local"), params
            # A global error moves the mean colour; a local one moves a region (a tenth of the frame or more).
            assert (np.percentile(de, 90) if params["mode"] == "local" else de.mean()) > 1.5, params
    assert modes == set(COLOUR_MODES)


# -- the shipped policy on colour pairs ------------------------------------------------------------------

COLOUR_RULES = {
    "colour_shift", "colour_cast", "colour_suspect", "colour_suspect_social", "white_balance_changed",
    "white_balance_suspect", "cast_added", "grey_scene_tinted", "print_recoloured", "print_colourised",
    "tinted_locally", "tint_local_suspect", "hue_rotated", "hue_suspect", "hue_changed_locally", "desaturated",
    "saturation_suspect_low", "haze_colour_not_restored", "oversaturated",
}  # fmt: skip


def _decide(lq: np.ndarray, hq: np.ndarray, category: str) -> tuple[str, list[str]]:
    from ggt.qc.judge import heuristic_judge
    from ggt.qc.measure import measure_pair
    from ggt.qc.policy import load_policy
    from ggt.qc.stage import decide_pair

    m, _ = measure_pair(lq, hq)
    policy, _ = load_policy().without_unmeasured(m)
    d = decide_pair(policy, m, heuristic_judge(m, category).model_dump(mode="json"), category)
    return d.verdict, d.reasons


def test_shipped_policy_knows_every_colour_rule() -> None:
    from ggt.qc.policy import load_policy

    assert {r.name for r in load_policy().rules} >= COLOUR_RULES


@pytest.mark.parametrize(
    ("photo", "size", "preset", "seed"),
    [
        ("camera", 384, "old_photo", 12),  # a sepia print (toning 0.87) restored to its grey original
        ("astronaut", 384, "old_photo", 18),  # a colour print with aged dyes (cast 0.53) restored
        ("astronaut", 256, "low_light", 2),  # a warm cast (severity 0.59) removed
        ("camera", 256, "low_light", 3),  # the same on a grey scene
    ],
)
def test_correct_restoration_of_a_colour_changing_degradation_is_kept(
    photo: str, size: int, preset: str, seed: int
) -> None:
    from ggt.degrade import apply_preset

    hq = clean(photo, size, size)
    res = apply_preset(hq, preset, seed)
    assert {"sepia", "color_cast"} & set(res.severity)  # the LQ's colours really are off
    verdict, reasons = _decide(res.image, hq, preset)
    assert verdict == "keep", reasons


def _gains(img: np.ndarray, g: tuple[float, float, float]) -> np.ndarray:
    return np.clip(img * np.float32(g), 0, 1)


def _tint(img: np.ndarray, da: float, db: float) -> np.ndarray:
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2Lab)
    lab[..., 1] += da
    lab[..., 2] += db
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0, 1)


def _saturate(img: np.ndarray, f: float) -> np.ndarray:
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2Lab)
    lab[..., 1:] *= f
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0, 1)


@pytest.mark.parametrize(
    ("photo", "preset", "seed", "shift"),
    [
        ("astronaut", "low_light", 2, lambda x: _hue_rotate(x, 20.0)),  # a cast corrected, hues turned
        ("astronaut", "rain", 3, lambda x: _gains(x, (1.15, 1.0, 0.85))),  # a white balance error
        ("camera", "low_light", 3, lambda x: _tint(x, 0.0, 8.0)),  # a grey scene turned yellow
        ("coffee", "snow", 1, lambda x: _saturate(x, 0.6)),  # colours paler than the LQ's
        ("coffee", "social_media", 1, lambda x: _saturate(x, 1.5)),
    ],
)
def test_colour_shifted_pair_is_not_kept(photo: str, preset: str, seed: int, shift) -> None:
    from ggt.degrade import apply_preset

    # The whole coffee photo: on a 256 px crop the social_media JPEG alone moves its colour edges enough
    # to send the good pair to review (white_balance_suspect), see docs/qc-validation.md.
    hq = clean(photo, 400, 600) if photo == "coffee" else clean(photo, 256, 256)
    lq = apply_preset(hq, preset, seed).image
    verdict, reasons = _decide(lq, shift(hq), preset)
    assert verdict != "keep" and COLOUR_RULES & set(reasons), reasons
    # And the same pair with the right colours is kept.
    assert _decide(lq, hq, preset)[0] == "keep"
