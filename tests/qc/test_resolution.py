"""Comparing at the LQ's effective resolution (`detail_scale`): a faithful super-resolution of a heavily
upscaled LQ is not read as another image, while an HQ that moved, or holds a foreign patch, still is."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from ggt.degrade import apply_preset
from ggt.qc.corrupt import corrupt
from ggt.qc.judge import heuristic_judge
from ggt.qc.measure import measure_pair
from ggt.qc.metrics import create_metric
from ggt.qc.metrics.resolution import at_detail_scale, comparison_scale, detail_scale
from ggt.qc.policy import load_policy
from ggt.qc.stage import decide_pair


def _rgb(img: np.ndarray, side: int) -> np.ndarray:
    f = img.astype(np.float32) / 255.0
    if f.ndim == 2:
        f = np.repeat(f[..., None], 3, axis=2)
    h, w = f.shape[:2]
    s = side / max(h, w)
    f = cv2.resize(f, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(f[..., :3])


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(
        ".jpg", (np.clip(img, 0, 1) * 255).round().astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).astype(np.float32) / 255.0


def heavy_sr_lq(hq: np.ndarray, factor: float = 0.2, noise: float = 0.02, seed: int = 0) -> np.ndarray:
    """A 5x super-resolution task: shrink, add sensor noise and JPEG at the small size, blow back up."""
    h, w = hq.shape[:2]
    small = cv2.resize(hq, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
    small = small + np.random.default_rng(seed).normal(0, noise, small.shape).astype(np.float32)
    small = _jpeg(small, 50)
    return np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1).astype(np.float32)


def _shift(img: np.ndarray, dx: float, dy: float = 0.0) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, img.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def _verdict(lq: np.ndarray, hq: np.ndarray, category: str | None) -> tuple[str, list[str], dict[str, float]]:
    metrics, _ = measure_pair(lq, hq)
    answer = heuristic_judge(metrics, category).model_dump(mode="json")
    d = decide_pair(load_policy(None), metrics, answer, category)
    return d.verdict, d.reasons, metrics


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return _rgb(data.astronaut(), 512)


@pytest.fixture(scope="module")
def rocket_sr() -> tuple[np.ndarray, np.ndarray]:
    """(LQ, clean HQ) of the validation's realesrgan draw at seed 5 on `rocket` (640 px): a downscale to
    0.19 with noise and two JPEGs at quality 48-53, then back up, a 5.3x super-resolution task; the
    clean HQ was rejected as `different_image` (fidelity 0.76, half the frame unmatched at 2.5 LQ px)."""
    from ggt.photos import load_photo

    hq = _rgb(load_photo("rocket"), 640)
    return apply_preset(hq, "realesrgan", 5).image, hq


def test_detail_scale_reads_an_upscale_and_ignores_a_veil_and_noise(astronaut: np.ndarray) -> None:
    # A 4x upscale keeps nothing above a quarter of Nyquist: the estimate lands within half an octave.
    h, w = astronaut.shape[:2]
    up4 = cv2.resize(cv2.resize(astronaut, (w // 4, h // 4), interpolation=cv2.INTER_AREA), (w, h),
                     interpolation=cv2.INTER_CUBIC)  # fmt: skip
    assert 0.17 <= detail_scale(up4, astronaut) <= 0.36
    assert comparison_scale(detail_scale(up4, astronaut)) < 1.0
    # A veil scales every band alike (it cancels against the coarse bands), noise fills the fine ones:
    # both are sharp LQs, compared at full size as before.
    veiled = (astronaut * 0.5 + 0.4).astype(np.float32)
    assert detail_scale(veiled, astronaut) == 1.0
    noisy = astronaut + np.random.default_rng(1).normal(0, 0.03, astronaut.shape).astype(np.float32)
    assert detail_scale(np.clip(noisy, 0, 1), astronaut) == 1.0
    assert comparison_scale(0.71) == 1.0  # within the estimate's half-octave error of sharp
    # The shrunk pair keeps the LQ's aspect and never gets smaller than 48 px on its short side.
    a, b = at_detail_scale(up4[:100], astronaut[:100], 0.125)
    assert a.shape == b.shape and min(a.shape[:2]) == 48


def test_structure_checks_compare_at_the_lq_detail_scale(rocket_sr: tuple[np.ndarray, np.ndarray]) -> None:
    lq, hq = rocket_sr
    assert detail_scale(lq, hq) <= 0.5
    fid, lm = create_metric("fidelity"), create_metric("local_mismatch")
    fixed_fid = create_metric("fidelity", adapt_scale=False)
    fixed_lm = create_metric("local_mismatch", adapt_scale=False)
    # At full resolution the clean HQ's real detail against the LQ's blur and noise reads as another
    # image; at the LQ's own resolution it is the same picture.
    assert fixed_fid(lq, hq) < 0.8 < 0.9 < fid(lq, hq)
    assert lm(lq, hq)["mean"] < 0.3 < 0.45 < fixed_lm(lq, hq)["mean"]


def test_heavy_sr_good_pair_is_not_rejected_but_moved_or_pasted_hq_is(
    rocket_sr: tuple[np.ndarray, np.ndarray],
) -> None:
    lq, hq = rocket_sr
    verdict, reasons, m = _verdict(lq, hq, None)
    assert m["detail_scale"] <= 0.5
    assert verdict != "reject", reasons
    assert not {"different_image", "content_replaced"} & set(reasons)
    # Geometry is measured at full resolution as before: an 8 px shift still rejects.
    verdict, reasons, _ = _verdict(lq, _shift(hq, 7.0, -4.0), None)
    assert verdict == "reject" and "shifted" in reasons, reasons
    # A foreign patch is large at any scale the LQ resolves: still rejected as replaced content.
    donor = _rgb(data.coffee(), 640)
    pasted, _ = corrupt("paste", hq, lq, 5, donor)
    verdict, reasons, _ = _verdict(lq, pasted, None)
    assert verdict == "reject" and "content_replaced" in reasons, reasons
    # Another photo altogether.
    other = cv2.resize(_rgb(data.chelsea(), 640), hq.shape[1::-1], interpolation=cv2.INTER_AREA)
    verdict, reasons, _ = _verdict(lq, other, None)
    assert verdict == "reject", reasons


def test_validation_sr_pairs_once_rejected_are_not(astronaut: np.ndarray) -> None:
    # Two pairs of the realesrgan draw of seed 5 (downscale to 0.19, noise, JPEG 48 and 53, back up) that
    # docs/qc-validation.md lists as wrongly rejected: the colour wheel, where ECC cannot fit and phase
    # correlation alone read a 170 px shift, and `ihc`, whose LQ lost the colour edges the grey-edge
    # white balance reads. Neither is kept: both go to a person.
    wheel = _rgb(data.colorwheel(), 371)
    verdict, reasons, m = _verdict(apply_preset(wheel, "realesrgan", 5).image, wheel, None)
    assert verdict == "review", reasons
    assert "shifted" not in reasons and "cropped" not in reasons
    ihc = _rgb(data.immunohistochemistry(), 512)
    verdict, reasons, m = _verdict(apply_preset(ihc, "realesrgan", 5).image, ihc, None)
    assert verdict == "review", reasons
    assert m["detail_scale"] <= 0.5 and "white_balance_changed" not in reasons
