"""Good pairs the shipped policy once rejected (docs/qc-validation.md, "Good pairs rejected"), each next to
the bad pair of the same kind that must still not be kept."""

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
from ggt.qc.policy import load_policy
from ggt.qc.stage import decide_pair


def _rgb(img: np.ndarray, side: int | None = None) -> np.ndarray:
    f = img.astype(np.float32) / 255.0
    if f.ndim == 2:
        f = np.repeat(f[..., None], 3, axis=2)
    if side is not None:
        f = cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(f[..., :3])


def _veil(img: np.ndarray, amount: float) -> np.ndarray:
    # Snow fog / haze as the simulator adds it: a blend towards a light grey, no geometry at all.
    return (img * (1.0 - amount) + np.float32(0.84 * amount)).astype(np.float32)


def _shift(img: np.ndarray, dx: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, 0]])
    return cv2.warpAffine(img, m, img.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _verdict(lq: np.ndarray, hq: np.ndarray, category: str | None) -> tuple[str, list[str]]:
    metrics, _ = measure_pair(lq, hq)
    answer = heuristic_judge(metrics, category).model_dump(mode="json")
    d = decide_pair(load_policy(None), metrics, answer, category)
    return d.verdict, d.reasons


@pytest.fixture(scope="module")
def retina() -> np.ndarray:
    return _rgb(data.retina(), 512)


def test_a_veil_is_not_read_as_a_shift(retina: np.ndarray) -> None:
    # cv2.phaseCorrelate windowed its inputs in place, so ECC fitted the Hanning-weighted images: a veil
    # (an intensity offset) became a window-shaped bump, read as a 2.9 px shift on this 512 px retina.
    m = create_metric("misalign")
    r = m(_veil(retina, 0.35), retina)
    assert r["shift_px"] < 0.3
    assert r["scale"] == pytest.approx(1.0, abs=0.003)
    assert r["crop"] < 0.01
    # A real shift through the same veil is still measured.
    moved = m(_veil(retina, 0.35), _shift(retina, 6.0))
    assert moved["dx"] == pytest.approx(6.0, abs=0.5)


def test_snow_fog_good_pair_kept_out_of_reject_but_shifted_hq_rejected(retina: np.ndarray) -> None:
    lq = _veil(retina, 0.35)
    verdict, reasons = _verdict(lq, retina, "snow")
    assert verdict != "reject", reasons
    assert "shifted" not in reasons and "shift_suspect" not in reasons
    verdict, reasons = _verdict(lq, _shift(retina, 6.0), "snow")
    assert verdict == "reject" and "shifted" in reasons


def _long_side(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = side / max(h, w)
    return cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def test_barely_degraded_lq_restored_is_not_rejected_but_a_copy_is() -> None:
    # The validation's social_media draw 4 on the smooth `cell` image: downscale, JPEG 65, resize back,
    # JPEG 80 leaves the LQ within 0.4 % RMS (47.6 dB) of the clean photo. `psnr > 40` rejected the
    # correct HQ as "unchanged"; only a copy is certain to have restored nothing.
    hq = _long_side(_rgb(data.cell()), 640)
    lq = apply_preset(hq, "social_media", 4).image
    verdict, reasons = _verdict(lq, hq, "social_media")
    assert verdict != "reject", reasons
    assert "barely_changed" in reasons  # a person still looks
    verdict, reasons = _verdict(lq, lq.copy(), "social_media")
    assert verdict == "reject" and "unchanged" in reasons


def test_scratched_print_restored_is_not_rejected_but_pasted_content_is_not_kept() -> None:
    # The validation's old_photo draw 4 on `text`: blur, fading and nine bright scratches over thin
    # handwriting. Removing the scratches changes local structure (local_mismatch.worst 0.88), which
    # `content_replaced` rejected; on old prints it now sends to review.
    from ggt.photos import load_photo

    hq = load_photo("text").astype(np.float32) / 255
    lq = apply_preset(hq, "old_photo", 4).image
    verdict, reasons = _verdict(lq, hq, "old_photo")
    assert verdict != "reject", reasons
    donor = load_photo("coffee").astype(np.float32) / 255
    pasted, _ = corrupt("paste", hq, lq, 11, donor)
    verdict, reasons = _verdict(lq, pasted, "old_photo")
    assert verdict != "keep", reasons
    # Elsewhere the same evidence still rejects.
    rain_lq = apply_preset(hq, "rain", 4).image
    verdict, reasons = _verdict(rain_lq, corrupt("paste", hq, rain_lq, 11, donor)[0], "rain")
    assert verdict == "reject", reasons


def test_denoised_but_still_dark_hq_is_not_kept() -> None:
    # A strong low-light draw: the bilateral-denoised LQ (the left_in corruption) reads 32-34 dB from the
    # noisy LQ, below `barely_changed`; only its unchanged darkness shows that nothing was restored.
    hq = _rgb(data.chelsea())
    lq = apply_preset(hq, "low_light", 4).image
    dark, params = corrupt("left_in", hq, lq, 0, hq)
    assert params["mode"] == "bilateral"  # this draw; the other mode is the LQ itself (a copy)
    verdict, reasons = _verdict(lq, dark, "low_light")
    assert verdict != "keep" and "still_dark" in reasons, reasons
    verdict, reasons = _verdict(lq, hq, "low_light")
    assert "still_dark" not in reasons
