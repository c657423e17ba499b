"""The ``classical`` generator: an offline restoration chain of well-known image-processing operators.

It is the honest default when no model is available: every step is a documented classical algorithm
(non-local means, He et al.'s dark channel prior with a guided filter, Richardson-Lucy, CLAHE, Telea
inpainting, morphology), picked and dosed from the degradation report, so its output is a baseline that
better generators have to beat, never a hallucination.

The chain runs in a fixed order, chosen so that each step sees the input it was designed for:

1. ``exposure``: brighten first, because every later threshold (noise level, mark and streak contrast)
   is set for a normally exposed photo, and noise is easier to judge once it has the gain it will have.
2. ``deblock``: on the decoded grid before anything moves pixels, while JPEG block edges are still on
   the 8x8 grid; non-local means would otherwise keep them (they repeat, so they look like structure).
3. ``denoise``: before every step that amplifies differences (dehaze divides by t, contrast stretches,
   deblur and sharpening boost high frequencies), and before steps that measure edges or contrast.
4. ``white_balance``: a per-channel gain in linear light, estimated from edges, which noise would bias.
5. ``desnow``: flakes sit in front of the snow fog in the scene, so they come off before the fog; bright
   flakes would also bias the atmospheric light.
6. ``dehaze``: before any global contrast change, because the scattering model I = J t + A (1 - t) holds
   on the captured values only.
7. ``derain``: streaks are behind the rain fog (the fog veils them), so they come off after dehazing,
   which also raises their contrast for detection.
8. ``contrast``: fading and toning are global affine changes per channel, undone once the local ones are.
9. ``defects``: dust and scratches are found by contrast after grain removal and stretching, and filled
   before deblurring (Richardson-Lucy rings around sharp marks).
10. ``deblur`` then ``clahe`` then ``sharpen``: high-frequency and local-contrast boosts last, on the
    cleanest signal, so they amplify detail rather than noise or artefacts.

``clahe`` and ``desnow`` are implemented but off by default (``DEFAULT_OPERATORS``): on the benchmark
they lower PSNR against the clean photo (see ``docs/classical-generator.md``).

Images are float32 RGB HxWx3 in [0, 1]. Larger images than ``max_side`` are restored at that size and
the change (restored minus input, at the working size) is upsampled and added to the full-size input,
which keeps the input's fine detail and costs time in proportion to the working size only; it also keeps
noise and artefacts finer than the working size, so raise ``max_side`` for large noisy photos.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ggt.analyze.report import DegradationReport

OperatorName = Literal[
    "exposure",
    "white_balance",
    "deblock",
    "denoise",
    "desnow",
    "dehaze",
    "derain",
    "contrast",
    "defects",
    "deblur",
    "clahe",
    "sharpen",
]
OPERATORS: tuple[OperatorName, ...] = (
    "exposure",
    "deblock",
    "denoise",
    "white_balance",
    "desnow",
    "dehaze",
    "derain",
    "contrast",
    "defects",
    "deblur",
    "clahe",
    "sharpen",
)
# Off by default, because they cost fidelity on the benchmark. CLAHE makes dark photos look livelier but
# lowers PSNR and SSIM against the clean photo at every blend tried (it flattens the scene's own
# lighting). Flake removal clears flakes on plain backgrounds but also inpaints highlights, stars and
# lettering that look just like flakes (-0.2 to -0.9 dB per photo). Enable them by name in `operators`
# when looks matter more than fidelity.
DEFAULT_OPERATORS: tuple[OperatorName, ...] = tuple(o for o in OPERATORS if o not in ("clahe", "desnow"))

# The simulator's severity scales (ggt.degrade.severity), restated so a report can be turned back into
# physical amounts without importing the simulator: the generator must work on any report.
_NOISE_SIGMA_FULL = 50.0 / 255.0
_GRAIN_SIGMA_FULL = 40.0 / 255.0
_BLUR_SIGMA_FULL = 4.0
_MOTION_LENGTH_FULL = 30.0
_LOW_LIGHT_STOPS_FULL = 5.0
_CAST_STOPS_FULL = 0.5
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


class ClassicalOptions(BaseModel):
    """Options of the classical generator."""

    model_config = ConfigDict(extra="forbid")

    strength: float = Field(default=1.0, ge=0.0, le=2.0, description="multiplier on every correction")
    operators: list[OperatorName] = Field(
        default_factory=lambda: list(DEFAULT_OPERATORS),
        description="operators allowed to run (the order is fixed, see the module docstring)",
    )
    max_side: int = Field(default=1024, ge=64, le=16384, description="longest side restored at")
    min_severity: float = Field(
        default=0.03, ge=0.0, le=1.0, description="degradations below this severity count as absent"
    )


Sev = dict[str, float]
Params = dict[str, Any]


# --- colour helpers ----------------------------------------------------------------------------------


_LUT_N = 65535
_GRID = np.linspace(0.0, 1.0, _LUT_N + 1, dtype=np.float64)
# Transfer curves as 16-bit lookup tables: two power functions per call over a 1024x1024 image cost
# ~0.2 s, a lookup ~0.02 s; 16 bits keep the error below 0.01/255 in sRGB.
_TO_LINEAR = np.where(_GRID <= 0.04045, _GRID / 12.92, ((_GRID + 0.055) / 1.055) ** 2.4).astype(np.float32)
_TO_SRGB = np.where(_GRID <= 0.0031308, _GRID * 12.92, 1.055 * _GRID ** (1 / 2.4) - 0.055).astype(np.float32)


def _lookup(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    idx = (np.clip(x, 0.0, 1.0) * np.float32(_LUT_N) + np.float32(0.5)).astype(np.int32)
    return table[idx]


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return _lookup(_TO_LINEAR, x)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    return _lookup(_TO_SRGB, x)


def _luma(img: np.ndarray) -> np.ndarray:
    return (img @ _LUMA).astype(np.float32)


def _to_u8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _add_luma_delta(img: np.ndarray, y_old: np.ndarray, y_new: np.ndarray) -> np.ndarray:
    # Changing luminance by the same amount in every channel keeps the chroma differences, so luminance
    # filters (NLM, RL, unsharp) cannot create colour fringes.
    return np.clip(img + (y_new - y_old)[..., None], 0.0, 1.0).astype(np.float32)


def _noise_sigma(y: np.ndarray) -> float:
    """Noise std of a luminance image from the median absolute finest-scale difference (Immerkaer-like).

    The Laplacian-like kernel cancels smooth image content; the median keeps edges from inflating it.
    """
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = cv2.filter2D(y, -1, k, borderType=cv2.BORDER_REFLECT)[2:-2, 2:-2]
    if r.size == 0:
        return 0.0
    # For white noise the kernel's output std is 6 sigma; MAD / 0.6745 estimates the std robustly.
    return float(np.median(np.abs(r)) / 0.6745 / 6.0)


def _line_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A 1-pixel line structuring element; angle measured from vertical, clockwise positive."""
    length = max(3, length | 1)
    k = np.zeros((length, length), np.uint8)
    c = length // 2
    a = math.radians(angle_deg)
    dx, dy = math.sin(a), math.cos(a)
    for t in np.linspace(-c, c, 2 * length):
        k[round(c + t * dy), round(c + t * dx)] = 1
    return k


# --- operators ---------------------------------------------------------------------------------------
# Each takes (image, severities, strength) and returns (image, parameters) or None when it has nothing
# to do on this image; severities are the report's, already thresholded.


_EXPOSURE_TARGET = 0.14


def _exposure(img: np.ndarray, sev: Sev, s: float) -> tuple[np.ndarray, Params] | None:
    lin = _srgb_to_linear(img)
    y = _luma(lin)
    log_avg = float(np.exp(np.log(y + 1e-4).mean()))
    # A normally exposed photo has a log-average linear luminance near 0.14 (about 0.41 in sRGB; tuned
    # on the benchmark photos).
    target = _EXPOSURE_TARGET
    stops_meas = math.log2(target / max(log_avg, 1e-4))
    stops_rep = sev.get("low_light", 0.0) * _LOW_LIGHT_STOPS_FULL
    # The report says how much light was lost; the measure says how dark the picture is now. A phone's
    # tone curve has already lifted part of the loss, so trust the smaller of the two, and never darken.
    stops = max(0.0, min(stops_rep, stops_meas) if stops_rep > 0 else stops_meas) * s
    if stops < 0.05:
        return None
    gain = 2.0**stops
    out = lin * np.float32(gain)
    # Soft shoulder instead of a hard clip: highlights pushed past white keep some gradation.
    out = np.where(out > 0.8, 0.8 + 0.2 * np.tanh((out - 0.8) / 0.2), out)
    return _linear_to_srgb(out), {"stops": round(stops, 3), "log_avg_before": round(log_avg, 4)}


_WB_SHRINK = 0.5
_WB_BOUND = 0.5


def _white_balance(img: np.ndarray, sev: Sev, s: float) -> tuple[np.ndarray, Params] | None:
    cast = sev.get("color_cast", 0.0)
    # The gains are global statistics: estimate them at <= 512 px (4x cheaper at 1024), apply at full size.
    h, w = img.shape[:2]
    f = min(1.0, 512.0 / max(h, w))
    small = img if f >= 1.0 else cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    lin = _srgb_to_linear(small)
    y = _luma(lin)
    # Clipped highlights and near-black pixels carry no colour information.
    sel = (y > 0.01) & (y < 0.9)
    if sel.sum() < 100:
        return None
    # Gray edge (van de Weijer et al. 2007, 1st order, Minkowski p = 6): the average edge is achromatic.
    # On the benchmark photos it beats gray world, which reads a warm scene (a cat, a coffee table) as a
    # warm cast and turns it blue; edges depend less on what the scene's large surfaces are coloured.
    b = cv2.GaussianBlur(lin, (0, 0), 1.0)
    g = np.sqrt(cv2.Sobel(b, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(b, cv2.CV_32F, 0, 1) ** 2)[sel]
    est = (g.astype(np.float64) ** 6).mean(axis=0) ** (1 / 6) + 1e-9
    logs = np.log2(est)
    # Shrink toward no correction: the estimate is noisy, and a half-corrected cast looks (and scores)
    # better than an over-corrected one in the opposite direction.
    corr = (logs.mean() - logs) * _WB_SHRINK
    # The report bounds the cast's size (severity 1 = 0.5 stops between channels): never correct more.
    bound = cast * _CAST_STOPS_FULL * _WB_BOUND
    corr = np.clip(corr, -bound, bound) * s
    if np.abs(corr).max() < 0.01:
        return None
    out = _srgb_to_linear(img) * (2.0**corr).astype(np.float32)
    return _linear_to_srgb(out), {"gains": [round(float(v), 4) for v in 2.0**corr]}


def _deblock(img: np.ndarray, sev: Sev, s: float) -> tuple[np.ndarray, Params] | None:
    jpeg = sev.get("jpeg", 0.0)
    h, w = img.shape[:2]
    if h < 32 or w < 32:
        return None
    y = _luma(img)
    dx = np.abs(np.diff(y, axis=1)).mean(axis=0)  # per column boundary
    dy = np.abs(np.diff(y, axis=0)).mean(axis=1)
    # Blockiness: steps across 8-pixel boundaries versus inside blocks. Only a JPEG saved at this size
    # leaves them on the grid; one saved before a resize is handled by the denoiser instead.
    on = np.concatenate([dx[7::8], dy[7::8]]).mean()
    off = np.concatenate([np.delete(dx, np.s_[7::8]), np.delete(dy, np.s_[7::8])]).mean()
    ratio = float(on / max(off, 1e-6))
    if ratio < 1.03:
        return None
    # Steps larger than alpha are real edges; the JPEG quantiser cannot produce them in flat areas.
    alpha = np.float32((4.0 + 20.0 * jpeg) / 255.0 * min(2.0, (ratio - 1.0) * 10.0) * s)
    out = img.copy()
    for axis in (1, 0):
        x = np.moveaxis(out, axis, 0)  # boundaries between rows 8k-1 and 8k of x
        idx = np.arange(1, (x.shape[0] - 2) // 8 + 1) * 8
        p1, p0, q0, q1 = x[idx - 2], x[idx - 1], x[idx], x[idx + 1]
        d = q0 - p0
        # H.264's weak filter: move the two boundary pixels toward each other, a quarter step each, and
        # their neighbours an eighth, only where the step is small and the sides are flat.
        flat = (np.abs(d) < alpha) & (np.abs(p1 - p0) < alpha / 2) & (np.abs(q1 - q0) < alpha / 2)
        delta = np.where(flat, d, 0.0).astype(np.float32)
        x[idx - 2] = p1 + delta / 8
        x[idx - 1] = p0 + delta * 3 / 8
        x[idx] = q0 - delta * 3 / 8
        x[idx + 1] = q1 - delta / 8
    return np.clip(out, 0, 1), {"blockiness": round(ratio, 4), "alpha": round(float(alpha) * 255, 2)}


def _nlm(img: np.ndarray, sigma: float, h_factor: float) -> np.ndarray:
    """Non-local means on luminance (YCrCb) plus guided-filter chroma smoothing, at noise level sigma."""
    h = float(min(40.0, h_factor * sigma * 255.0))
    ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)
    y8 = _to_u8(ycc[..., 0])
    # NLM on luminance only: the coloured variant costs 3x; chroma is cleaned by a guided filter below.
    y_dn = cv2.fastNlMeansDenoising(y8, None, h, 5, 11).astype(np.float32) / 255.0
    # Keep the sub-8-bit part of the input where NLM left the pixel alone (no banding in flat areas).
    y_dn = y_dn + (ycc[..., 0] - y8.astype(np.float32) / 255.0)
    # Chroma follows luminance edges: a guided filter steered by the denoised luminance smooths chroma
    # noise strongly while keeping colour boundaries where the luminance has edges.
    eps = float((_EPS_FACTOR * sigma) ** 2)
    cr = cv2.ximgproc.guidedFilter(y_dn, ycc[..., 1], 4, eps)
    cb = cv2.ximgproc.guidedFilter(y_dn, ycc[..., 2], 4, eps)
    return cv2.cvtColor(np.dstack([y_dn, cr, cb]).astype(np.float32), cv2.COLOR_YCrCb2RGB)


# NLM's h per unit of noise sigma. 0.9 is best for white noise at full size (5x5 patches). At a reduced
# size, what is left is mostly the compression error of the small image (blocks, ringing):
# structured, repeated across patches, and under-measured by a white-noise estimator, so it needs ~3x
# (benchmark: 2x to 4x trade PSNR against SSIM).
_H_FACTOR = 0.9
_H_FACTOR_LOWRES = 3.0
_H_RAMP = 4.0  # full low-resolution h from a 0.8x scale down (film grain under a scan's resize needs it)
_EPS_FACTOR = 2.0
_JPEG_SIGMA = 4.0 / 255.0


def _denoise(img: np.ndarray, sev: Sev, s: float) -> tuple[np.ndarray, Params] | None:
    hh, ww = img.shape[:2]
    # A photo shrunk by 2^k and enlarged back only holds detail up to the small size's resolution, and
    # whatever noise and compression happened there are now k octaves wide, too coarse for NLM's patches.
    # Denoise at that size and carry the change back up: right scale, and 4^k times cheaper.
    lr = sev.get("low_resolution", 0.0)
    f = float(np.clip(2.0 ** (-3.0 * lr), 0.25, 1.0)) if lr > 0.1 else 1.0
    f = max(f, 64.0 / min(hh, ww)) if f < 1.0 else 1.0
    x = img if f >= 1.0 else cv2.resize(img, (round(ww * f), round(hh * f)), interpolation=cv2.INTER_AREA)
    measured = _noise_sigma(_luma(x))
    reported = math.hypot(
        sev.get("noise", 0.0) * _NOISE_SIGMA_FULL, sev.get("film_grain", 0.0) * _GRAIN_SIGMA_FULL
    )
    # JPEG quantisation error behaves like mild noise for NLM.
    jpeg = sev.get("jpeg", 0.0) * _JPEG_SIGMA
    # The report's sigma is what was added at capture; resizes and compression since then remove part
    # of it, which the measure sees. The geometric mean follows whichever is smaller without collapsing
    # to zero when the measure misses correlated noise (film grain, upscaled noise).
    sigma = math.sqrt(max(reported, 1e-6) * max(measured, 1e-6)) if reported > 0 else measured
    sigma = math.hypot(sigma, jpeg) * s
    if sigma < 1.0 / 255.0:
        return None
    # From full size (white-noise regime) to the low-resolution regime, continuously: a step would make
    # a 0.99 and a 1.0 scale denoise very differently.
    ramp = float(np.clip((1.0 / f - 1.0) * _H_RAMP, 0.0, 1.0))
    y = _nlm(x, sigma, _H_FACTOR + (_H_FACTOR_LOWRES - _H_FACTOR) * ramp)
    if f < 1.0:
        y = img + cv2.resize(y - x, (ww, hh), interpolation=cv2.INTER_CUBIC)
    return np.clip(y, 0, 1).astype(np.float32), {
        "sigma": round(sigma * 255, 2),
        "measured": round(measured * 255, 2),
        "scale": round(f, 3),
    }


def _desnow(img: np.ndarray, sev: Sev, s: float) -> tuple[np.ndarray, Params] | None:
    snow = sev.get("snow", 0.0)
    short = min(img.shape[:2])
    y = _luma(img)
    d = max(5, int(0.03 * short) | 1)
    se = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d))
    tophat = cv2.morphologyEx(y, cv2.MORPH_TOPHAT, se)
    # Flakes are bright, whitish blobs smaller than the element. So are eye whites, highlights and
    # lettering: require low saturation, and cap the masked area at a few times the flake coverage the
    # report implies (severity 1 = 12% mean opacity), raising the threshold until the mask fits, so the
    # strongest (most opaque) flakes go first and image detail last.
    sat = img.max(axis=2) - img.min(axis=2)
    cand = np.where(sat < 0.25, tophat, 0.0)
    cap = float(np.clip(2.0 * 0.12 * snow * s, 0.002, 0.1))
    thr = max(0.06, float(np.quantile(cand, 1.0 - cap)))
    mask = (cand > thr).astype(np.uint8)
    # Keep blobs shaped like flakes: compact (a disk, or a short smear when falling), no larger than
    # the biggest near flake. Specular highlights, stars on a flag and letters are longer or emptier.
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    bw, bh, area = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT], stats[:, cv2.CC_STAT_AREA]
    max_area = math.pi * (0.02 * short) ** 2
    keep = (area <= max_area) & (np.maximum(bw, bh) <= 3 * np.minimum(bw, bh)) & (area >= 0.45 * bw * bh)
    keep[0] = False
    mask = keep[labels].astype(np.uint8)
    if mask.mean() < 1e-4:
        return None
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    filled = cv2.inpaint(_to_u8(img), mask, 3, cv2.INPAINT_TELEA).astype(np.float32) / 255.0
    out = np.where(mask[..., None] > 0, filled, img)
    return out.astype(np.float32), {
        "threshold": round(thr, 4),
        "flakes": int(keep.sum()),
        "coverage": round(float(mask.mean()), 4),
    }


# Share of the dark channel's spatial variation that is trusted. The prior reads bright surfaces (white
# fur, walls, snow) as haze, so its map mixes depth with albedo; keeping half of the deviation from the
# mean haze gained 1.5 (haze) to 2.6 dB (snow fog) on the benchmark over trusting all of it.
_T_SPATIAL = 0.5


def _dehaze(img: np.ndarray, sev: Sev, s: float) -> tuple[np.ndarray, Params] | None:
    haze = sev.get("haze", 0.0)
    h, w = img.shape[:2]
    # The dark channel and transmission are smooth; estimate them at <= 512 px, refine at full size.
    f = min(1.0, 512.0 / max(h, w))
    small = cv2.resize(img, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
    patch = max(3, int(15 * min(small.shape[:2]) / 512) | 1)
    se = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    dark = cv2.erode(small.min(axis=2), se)
    # Atmospheric light: mean colour of the brightest 0.1% dark-channel pixels (the haziest, farthest
    # places), as He et al.; the mean is steadier than the single brightest pixel.
    n = max(1, dark.size // 1000)
    top = np.argpartition(dark.ravel(), -n)[-n:]
    a = np.maximum(small.reshape(-1, 3)[top].mean(axis=0), 0.05).astype(np.float32)
    t = 1.0 - 0.95 * cv2.erode((small / a).min(axis=2), se)
    t = cv2.resize(t.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    # Guided filter on the full-size luminance: transmission edges snap to the image's edges, which
    # removes the dark channel's blocky halos.
    t = cv2.ximgproc.guidedFilter(_luma(img), t, max(4, int(min(h, w) / 40)), 1e-3)
    est = float(1.0 - t.mean())
    # The report gives the haze amount (1 - mean t): rescale the estimated haze to it, which keeps the
    # prior's spatial layout but not its known over-estimation on bright surfaces.
    scale = 1.0 if haze <= 0 else float(np.clip(haze / max(est, 1e-3), 0.3, 1.5))
    haze_map = (1.0 - t) * scale
    # Shrink toward the mean haze (see _T_SPATIAL); the report fixes the mean, the prior only the layout.
    haze_map = np.clip((haze_map.mean() + _T_SPATIAL * (haze_map - haze_map.mean())) * s, 0.0, 1.0)
    # t0 floor: 1/t amplifies noise and compression artefacts; 0.1 is He et al.'s choice, raised for
    # mild haze where a near-zero t can only be an estimation error.
    t0 = 0.1 if haze > 0.5 else 0.2
    t = np.maximum(1.0 - haze_map, t0)[..., None]
    out = (img - a) / t + a
    return np.clip(out, 0, 1).astype(np.float32), {
        "airlight": [round(float(v), 4) for v in a],
        "estimated_haze": round(est, 4),
        "scale": round(scale, 3),
        "spatial": _T_SPATIAL,
        "t0": t0,
    }


def _streak_angle(res: np.ndarray, length: int) -> float:
    """Dominant streak angle (from vertical) of a bright-detail map: the line opening that keeps most."""
    best, best_e = 0.0, -1.0
    for ang in range(-45, 46, 3):
        e = float(cv2.morphologyEx(res, cv2.MORPH_OPEN, _line_kernel(length, ang)).sum())
        if e > best_e:
            best, best_e = float(ang), e
    return best


def _derain(img: np.ndarray, sev: Sev, s: float) -> tuple[np.ndarray, Params] | None:
    h, w = img.shape[:2]
    short = min(h, w)
    y = _luma(img)
    wide = max(5, int(0.008 * short) | 1)
    long_ = max(9, int(0.03 * short) | 1)
    # Streaks are thin, bright and long in one direction; texture is not long in one shared direction.
    # The direction is searched at <= 384 px, where each trial opening is cheap.
    f = min(1.0, 384.0 / max(h, w))
    y_s = y if f >= 1.0 else cv2.resize(y, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    w_s, l_s = max(3, int(wide * f) | 1), max(7, int(long_ * f) | 1)
    tophat = cv2.morphologyEx(y_s, cv2.MORPH_TOPHAT, cv2.getStructuringElement(cv2.MORPH_RECT, (w_s, w_s)))
    angle = _streak_angle(tophat, l_s)
    # Background: opening across the streak direction removes anything thinner than the element.
    bg = cv2.morphologyEx(img, cv2.MORPH_OPEN, _line_kernel(wide, angle + 90.0))
    resid = img - bg
    # Keep only the part of the residual that is long along the streaks: that is rain, the rest detail.
    # Layers fall at slightly different angles, so take the union (max) of openings around the angle.
    streak = np.zeros_like(resid)
    for da in (-4.0, 0.0, 4.0):
        streak = np.maximum(streak, cv2.morphologyEx(resid, cv2.MORPH_OPEN, _line_kernel(long_, angle + da)))
    out = img - streak * np.float32(min(1.0, s))
    return np.clip(out, 0, 1).astype(np.float32), {
        "angle_deg": angle,
        "removed_mean": round(float(streak.mean()), 5),
    }


# Share of the estimated tint removed. Gray world reads a warm scene under a sepia tone as extra tone,
# and removing all of it turns an orange cat grey; 0.7 scored best on the benchmark (+0.4 dB over 1.0).
_TONE_REMOVAL = 0.7


def _contrast(img: np.ndarray, sev: Sev, s: float) -> tuple[np.ndarray, Params] | None:
    fading = sev.get("fading", 0.0)
    sepia = sev.get("sepia", 0.0)
    out = img
    params: Params = {}
    # Toning happens after fading on a print (the image fades, then the silver or dyes tone), so it is
    # undone first. Toning is out = (1 - a) x + a * tone * Y: a tint proportional to luminance plus
    # (1 - a) of the original colour.
    a = float(np.clip(sepia * s, 0.0, 0.95))
    if a > 0:
        y = _luma(out)[..., None]
        # Gray world on the toned print: channel means differ from the luminance mean by the tint.
        # out + a (1 - tone) Y takes the tint away exactly, leaving (1 - a) x + a Y (a partial B&W);
        # only part of it is applied (see _TONE_REMOVAL).
        ratio = out.reshape(-1, 3).mean(axis=0) / max(float(y.mean()), 1e-3)
        tone = np.clip((ratio - (1.0 - a)) / a, 0.5, 1.5).astype(np.float32)
        out = np.clip(out + a * _TONE_REMOVAL * (1.0 - tone) * y, 0, 1)
        # Then the colour left is (1 - a) of the original chroma: boost it back, capped because beyond
        # ~2.5x it mostly amplifies compression colour noise, not colour.
        boost = min(2.5, 1.0 / (1.0 - a))
        y = _luma(out)[..., None]
        out = np.clip(y + (out - y) * np.float32(boost), 0, 1).astype(np.float32)
        params["tone"] = [round(float(t), 3) for t in tone]
        params["saturation"] = round(boost, 3)
    # The stretch also runs on toned prints without fading: its per-channel white and black points are a
    # white-patch estimate, which corrects part of what gray world got wrong on a colourful scene.
    if fading > 0 or sepia > 0:
        lo = np.percentile(out.reshape(-1, 3), 0.5, axis=0).astype(np.float32)
        hi = np.percentile(out.reshape(-1, 3), 99.5, axis=0).astype(np.float32)
        # A faded print keeps (1 - fading) of its range: the stretch may undo that much (and a little
        # more, for the scan's own loss), never more, so a low-key photo is not forced to full range.
        max_gain = 1.0 / max(1.0 - fading, 0.2) * 1.15
        gain = np.clip((0.97 - 0.03) / np.maximum(hi - lo, 1e-3), 1.0, max_gain)
        # A channel with (almost) no range is flat content (a black frame, a blank sky), not a faded one.
        gain = np.where(hi - lo < 0.05, 1.0, gain).astype(np.float32)
        gain = 1.0 + (gain - 1.0) * s
        mid = (lo + hi) / 2
        out = np.clip((out - mid) * gain + mid + (0.5 - mid) * (1 - 1 / gain), 0, 1).astype(np.float32)
        params["gains"] = [round(float(g), 3) for g in gain]
    return (out, params) if params else None


def _defects(img: np.ndarray, sev: Sev, s: float) -> tuple[np.ndarray, Params] | None:
    short = min(img.shape[:2])
    y = _luma(img)
    d = max(5, int(0.012 * short) | 1)
    se = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d))
    # Specks and scratches are thinner than the element and brighter or darker than their surround.
    th = np.maximum(cv2.morphologyEx(y, cv2.MORPH_TOPHAT, se), cv2.morphologyEx(y, cv2.MORPH_BLACKHAT, se))
    noise = _noise_sigma(y)
    thr = max(0.12, 6.0 * noise) / max(s, 0.25)
    mask = (th > thr).astype(np.uint8)
    # Textured regions (hair, foliage, text) are full of thin detail; if a large share passes, raise
    # the threshold rather than inpaint the texture away.
    for _ in range(4):
        if mask.mean() <= 0.03:
            break
        thr *= 1.3
        mask = (th > thr).astype(np.uint8)
    if mask.mean() < 1e-5:
        return None
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    filled = cv2.inpaint(_to_u8(img), mask, 3, cv2.INPAINT_TELEA).astype(np.float32) / 255.0
    out = np.where(mask[..., None] > 0, filled, img).astype(np.float32)
    return out, {"threshold": round(thr, 4), "coverage": round(float(mask.mean()), 5)}


# Richardson-Lucy dosing, tuned on the benchmark: on these presets the blur comes with grain, noise and
# JPEG, and every iteration beyond ~3 amplifies those more than it restores edges.
_RL_ITERS = 3
_RL_BLEND = 0.3
_RL_SIGMA_SCALE = 1.0
_SHARPEN = 0.15


def _deblur(img: np.ndarray, sev: Sev, s: float) -> tuple[np.ndarray, Params] | None:
    sigma_blur = sev.get("blur", 0.0) * _BLUR_SIGMA_FULL
    # A motion blur of length L has an RMS radius of about L / sqrt(12) along its direction; without its
    # direction an isotropic PSF of half that is the safe guess (too wide rings, too narrow does little).
    sigma_motion = sev.get("motion_blur", 0.0) * _MOTION_LENGTH_FULL / math.sqrt(12) / 2
    # Downscaling by 2^k and back blurs like a Gaussian of roughly 0.5 * 2^k px.
    sigma = min(3.0, math.hypot(sigma_blur, sigma_motion) * _RL_SIGMA_SCALE)
    if sigma < 0.4:
        return None
    iters = max(1, round(_RL_ITERS * s))
    y = _luma(img)
    est = y.copy() + 1e-3
    obs = y + 1e-3
    # Richardson-Lucy with a Gaussian PSF on luminance, written with cv2.GaussianBlur (the PSF is
    # symmetric, so the correlation step is the same blur): skimage's version convolves per channel in
    # float64 and costs ~10x more. Few iterations: each adds detail and amplifies noise and ringing.
    for _ in range(iters):
        conv = cv2.GaussianBlur(est, (0, 0), sigma) + 1e-4
        est = est * cv2.GaussianBlur(obs / conv, (0, 0), sigma)
        est = np.clip(est, 0.0, 1.1)
    y_new = est - 1e-3
    # Partial blend: RL at the reported sigma overshoots when the report over-states the blur.
    y_new = y + (y_new - y) * np.float32(_RL_BLEND)
    return _add_luma_delta(img, y, y_new), {"sigma": round(sigma, 3), "iterations": iters}


_CLAHE_BLEND = 0.5


def _clahe(img: np.ndarray, sev: Sev, s: float) -> tuple[np.ndarray, Params] | None:
    low = sev.get("low_light", 0.0)
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2Lab)
    l16 = (np.clip(lab[..., 0] / 100.0, 0, 1) * 65535).astype(np.uint16)
    clahe = cv2.createCLAHE(clipLimit=1.5, tileGridSize=(8, 8))
    l_eq = clahe.apply(l16).astype(np.float32) / 65535 * 100
    # Blend: full CLAHE flattens the photo's own lighting; the darker the capture was, the more local
    # contrast it lost in the shadows and the more of CLAHE it can use.
    alpha = float(np.clip(_CLAHE_BLEND * low * s, 0.0, 0.6))
    if alpha < 0.02:
        return None
    lab[..., 0] = lab[..., 0] + (l_eq - lab[..., 0]) * alpha
    out = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    return np.clip(out, 0, 1).astype(np.float32), {"clip_limit": 1.5, "blend": round(alpha, 3)}


def _sharpen(img: np.ndarray, sev: Sev, s: float) -> tuple[np.ndarray, Params] | None:
    if sev.get("oversharpening", 0.0) > 0:
        return None  # already over-sharpened: more would add halos
    if max(sev.get("noise", 0.0), sev.get("film_grain", 0.0), sev.get("low_light", 0.0)) >= 0.25:
        return None  # strong noise leaves a residue after denoising that sharpening would bring back
    amount = _SHARPEN * s
    if amount < 0.02:
        return None
    y = _luma(img)
    blur = cv2.GaussianBlur(y, (0, 0), 1.0)
    detail = y - blur
    # Coring: leave differences at noise level alone so the last step does not bring grain back.
    core = 3.0 / 255.0
    detail = np.sign(detail) * np.maximum(np.abs(detail) - core, 0.0)
    return _add_luma_delta(img, y, y + amount * detail), {"amount": round(amount, 3), "sigma": 1.0}


Operator = Callable[[np.ndarray, Sev, float], "tuple[np.ndarray, Params] | None"]

# Which report entries wake each operator (exposure also runs for the low_light category: a dark photo
# whose analyzer missed the key is still dark).
_TRIGGERS: dict[OperatorName, tuple[str, ...]] = {
    "exposure": ("low_light",),
    "white_balance": ("color_cast",),
    "deblock": ("jpeg",),
    "denoise": ("noise", "film_grain", "jpeg"),
    "desnow": ("snow",),
    "dehaze": ("haze",),
    "derain": ("rain",),
    "contrast": ("fading", "sepia"),
    "defects": ("scratches", "dust"),
    "deblur": ("blur", "motion_blur"),
    "clahe": ("low_light",),
    "sharpen": (),
}
_IMPL: dict[OperatorName, Operator] = {
    "exposure": _exposure,
    "white_balance": _white_balance,
    "deblock": _deblock,
    "denoise": _denoise,
    "desnow": _desnow,
    "dehaze": _dehaze,
    "derain": _derain,
    "contrast": _contrast,
    "defects": _defects,
    "deblur": _deblur,
    "clahe": _clahe,
    "sharpen": _sharpen,
}
# Operators that smooth: a final gentle sharpening only makes sense after one of them has run.
_SOFTENING: frozenset[str] = frozenset({"deblock", "denoise", "desnow", "derain", "defects", "dehaze"})


_MIN_SIDE = 16


class ClassicalGenerator:
    """Restores an LQ photo with classical operators picked and dosed from its degradation report."""

    name: ClassVar[str] = "classical"
    Options: ClassVar[type[ClassicalOptions]] = ClassicalOptions

    def __init__(self, options: ClassicalOptions | None = None) -> None:
        self.options = options or ClassicalOptions()

    def restore(self, img: np.ndarray, report: DegradationReport) -> tuple[np.ndarray, dict[str, Any]]:
        """Return the restored image (float32, input's shape, [0, 1]) and what was applied.

        The info dict has ``generator``, ``work_size`` ([h, w] the chain ran at) and ``operators``: a list
        of ``{"operator": name, "severity": {key: value}, "params": {...}}`` in the order they ran.
        Images with a side under 16 px are returned unchanged.
        """
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected an RGB image HxWx3, got shape {img.shape}")
        opts = self.options
        src = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        sev: Sev = {}
        for d in report.degradations:
            if d.severity >= opts.min_severity:
                sev[d.type] = max(sev.get(d.type, 0.0), float(d.severity))
        h, w = src.shape[:2]
        if min(h, w) < _MIN_SIDE:
            # Patches, windows and structuring elements need room; a thumbnail this small is returned as is.
            return src, {"generator": self.name, "work_size": [h, w], "operators": []}
        f = min(1.0, opts.max_side / max(h, w))
        work = (
            src
            if f >= 1.0
            else cv2.resize(src, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        )
        x = work
        applied: list[dict[str, Any]] = []
        enabled = set(opts.operators)
        for name in OPERATORS:
            if name not in enabled or opts.strength <= 0:
                continue
            triggers = _TRIGGERS[name]
            if name == "sharpen":
                if not any(a["operator"] in _SOFTENING for a in applied):
                    continue
            elif not any(k in sev for k in triggers) and not (
                name == "exposure" and report.category == "low_light"
            ):
                continue
            res = _IMPL[name](x, sev, opts.strength)
            if res is None:
                continue
            x, params = res
            applied.append(
                {"operator": name, "severity": {k: sev[k] for k in triggers if k in sev}, "params": params}
            )
        if f < 1.0 and applied:
            # Carry the change, not the image: the full-size input keeps its own fine detail.
            delta = cv2.resize(x - work, (w, h), interpolation=cv2.INTER_LINEAR)
            x = np.clip(src + delta, 0.0, 1.0)
        elif f < 1.0:
            x = src
        out = np.ascontiguousarray(x, dtype=np.float32)
        return out, {"generator": self.name, "work_size": list(work.shape[:2]), "operators": applied}
