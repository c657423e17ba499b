"""Restoration-tolerant structure checks between an LQ photo and its generated HQ.

A faithful restoration removes noise, blur and compression but keeps what is where. Comparing at
full resolution would punish exactly the changes we want, so both images are compared after a
low-pass (Gaussian of ``sigma_px`` LQ pixels, on an area-downscaled working copy): what survives is
the scene's layout, which a faithful HQ must keep and an invented or removed object breaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from skimage.color import rgb2lab

from ggt.qc.metrics._image import as_rgb, gaussian, luma, pair_at
from ggt.qc.metrics.base import Metric, register
from ggt.qc.metrics.resolution import at_detail_scale, comparison_scale, detail_scale

# GMSD's stability constant (Xue et al. 2014: 170 on the 0-255 scale).
GMS_C = 170.0 / 255.0**2


class FidelityOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sigma_px: float = Field(2.5, ge=0.0, description="low-pass sigma in LQ pixels before comparing")
    work_side: int = Field(512, ge=32, description="long side of the working copy")
    adapt_scale: bool = Field(True, description="compare at the LQ's effective resolution (detail_scale)")


def _at_lq_detail(lq: np.ndarray, hq: np.ndarray, adapt: bool) -> tuple[np.ndarray, np.ndarray]:
    # A heavily upscaled or blurred LQ cannot vouch for detail finer than it resolves: shrunk to its
    # effective resolution, "2.5 LQ pixels" and the gradient constants mean what they mean on a sharp
    # LQ, so a faithful super-resolution is not read as another image (see ggt.qc.metrics.resolution).
    if not adapt:
        return lq, hq
    return at_detail_scale(lq, hq, comparison_scale(detail_scale(lq, hq)))


def _lowpass_luma(lq: np.ndarray, hq: np.ndarray, sigma_px: float, work_side: int) -> tuple:
    a, b = pair_at(as_rgb(lq, "lq"), as_rgb(hq, "hq"), work_side)
    s = a.shape[1] / lq.shape[1]
    # The area downscale already averages 1/s pixels; only the rest of the blur is still needed.
    sig = float(np.sqrt(max(0.0, (sigma_px * s) ** 2 - (0.5 if s < 1 else 0.0) ** 2)))
    return gaussian(luma(a), sig), gaussian(luma(b), sig), s


def gms_map(lq: np.ndarray, hq: np.ndarray, sigma_px: float = 2.5, work_side: int = 512) -> np.ndarray:
    """Gradient-magnitude similarity map (1 = same local structure) on low-passed luma."""
    ya, yb, s = _lowpass_luma(lq, hq, sigma_px, work_side)

    def mag(y: np.ndarray) -> np.ndarray:
        # Sobel / 8 is a per-pixel derivative; dividing by s puts it in units per LQ pixel, so the
        # constant means the same at any working size.
        gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3, scale=0.125 / s)
        gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3, scale=0.125 / s)
        return cv2.magnitude(gx, gy)

    ma, mb = mag(ya), mag(yb)
    c = GMS_C / 9.0  # GMSD's Prewitt/3 on half-resolution images is ~3x our per-pixel gradient.
    return (2.0 * ma * mb + c) / (ma * ma + mb * mb + c)


@register
class Fidelity(Metric):
    name: ClassVar[str] = "fidelity"
    kind = "fr"
    lower_better = False
    range = (0.0, 1.0)
    description = "mean gradient-magnitude similarity of low-passed luma (1 = same layout)"
    Options = FidelityOptions

    def compute(self, *images: np.ndarray) -> float:
        o: FidelityOptions = self.options  # type: ignore[assignment]
        a, b = _at_lq_detail(images[0], images[1], o.adapt_scale)
        return float(gms_map(a, b, o.sigma_px, o.work_side).mean())


@register
class GMSDLowpass(Metric):
    name: ClassVar[str] = "gmsd_lp"
    kind = "fr"
    lower_better = True
    range = (0.0, 1.0)
    description = "GMSD (std of gradient-magnitude similarity) on low-passed luma"
    Options = FidelityOptions

    def compute(self, *images: np.ndarray) -> float:
        o: FidelityOptions = self.options  # type: ignore[assignment]
        a, b = _at_lq_detail(images[0], images[1], o.adapt_scale)
        return float(gms_map(a, b, o.sigma_px, o.work_side).std())


# ------------------------------------------------------------------------------------ local mismatch


class MismatchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    grid: int = Field(8, ge=2, le=64, description="the report map is grid x grid tiles")
    sigma_px: float = Field(3.0, ge=0.0, description="low-pass sigma in LQ pixels")
    work_side: int = Field(256, ge=64)
    chroma_scale: float = Field(15.0, gt=0.0, description="a*b* difference that counts as half a mismatch")
    contrast_tolerance: float = Field(3.0, gt=1.0, description="local contrast ratio still taken as faithful")
    adapt_scale: bool = Field(True, description="compare at the LQ's effective resolution (detail_scale)")


@dataclass(frozen=True)
class MismatchResult:
    """Per-tile dissimilarity in [0, 1] for reports; ``worst`` is the worst tile-sized window anywhere."""

    grid: np.ndarray  # (grid, grid) float32, mean dissimilarity per tile
    pixels: np.ndarray  # per-pixel dissimilarity at the working size, for overlays
    worst: float
    worst_tile: tuple[int, int]  # (row, col) in ``grid`` of the worst tile
    mean: float


def _match_histogram(src: np.ndarray, ref: np.ndarray) -> np.ndarray:
    # A monotone tone curve (global brightening, dehazing contrast, gamma) is a legitimate restoration;
    # mapping HQ's luma onto LQ's distribution removes it so only local differences remain.
    order = np.argsort(src, axis=None, kind="stable")
    out = np.empty(src.size, dtype=np.float32)
    out[order] = np.sort(ref, axis=None)
    return out.reshape(src.shape)


def local_mismatch(
    lq: np.ndarray,
    hq: np.ndarray,
    grid: int = 8,
    sigma_px: float = 3.0,
    work_side: int = 256,
    chroma_scale: float = 15.0,
    contrast_tolerance: float = 3.0,
) -> MismatchResult:
    """Where HQ's content differs from LQ's: structure (contrast-structure term of SSIM on low-passed,
    tone-matched luma) OR chroma (a*b* difference after removing the global colour shift)."""
    a, b = pair_at(as_rgb(lq, "lq"), as_rgb(hq, "hq"), work_side)
    s = a.shape[1] / lq.shape[1]
    sig = max(0.5, sigma_px * s)
    a, b = gaussian(a, sig), gaussian(b, sig)
    ya, yb = luma(a), luma(b)
    yb = _match_histogram(yb, ya)

    # Local contrast-structure similarity, window a little wider than the low-pass.
    w = 2.0 * sig
    mu_a, mu_b = gaussian(ya, w), gaussian(yb, w)
    va = np.maximum(gaussian(ya * ya, w) - mu_a * mu_a, 0.0)
    vb = np.maximum(gaussian(yb * yb, w) - mu_b * mu_b, 0.0)
    cov = gaussian(ya * yb, w) - mu_a * mu_b
    sa, sb = np.sqrt(va), np.sqrt(vb)
    # Correlation ignores contrast, which restoration legitimately changes (deblur, dehaze); content
    # that appears or vanishes shows as a large contrast ratio instead, so only ratios beyond
    # ``contrast_tolerance`` count. Both are damped on near-flat areas by the constants.
    c = 0.01**2
    d_corr = np.clip(1.0 - (cov + c) / (sa * sb + c), 0.0, 1.0)
    lr = np.abs(np.log((sb + 0.01) / (sa + 0.01))) / np.log(contrast_tolerance)
    d_struct = np.maximum(d_corr, np.clip(lr - 1.0, 0.0, 1.0))

    lab_a, lab_b = rgb2lab(np.clip(a, 0, 1)), rgb2lab(np.clip(b, 0, 1))
    # Global casts and saturation changes (white balance, re-saturating a faded photo) are the drift
    # metric's business; matching each chroma channel's histogram leaves only local colour changes.
    da = _match_histogram(lab_b[..., 1], lab_a[..., 1]) - lab_a[..., 1]
    db = _match_histogram(lab_b[..., 2], lab_a[..., 2]) - lab_a[..., 2]
    q = (da * da + db * db) / chroma_scale**2
    d_col = q / (1.0 + q)

    d = (1.0 - (1.0 - d_struct) * (1.0 - d_col)).astype(np.float32)
    h, wd = d.shape
    tile = (max(1, round(wd / grid)), max(1, round(h / grid)))
    # Worst tile-sized window at any position, so a patch straddling grid lines is not diluted.
    box = cv2.blur(d, tile, borderType=cv2.BORDER_REFLECT)
    ty, tx = tile[1] // 2, tile[0] // 2
    inner = box[ty : max(ty + 1, h - ty), tx : max(tx + 1, wd - tx)]
    g = cv2.resize(d, (grid, grid), interpolation=cv2.INTER_AREA)
    r, c = np.unravel_index(int(np.argmax(g)), g.shape)
    return MismatchResult(g, d, float(inner.max()), (int(r), int(c)), float(d.mean()))


@register
class LocalMismatch(Metric):
    name: ClassVar[str] = "local_mismatch"
    kind = "fr"
    lower_better = True
    range = (0.0, 1.0)
    primary = "worst"
    description = "worst tile of low-passed structure/chroma dissimilarity (invented/removed objects)"
    Options = MismatchOptions

    def map(self, lq: np.ndarray, hq: np.ndarray) -> MismatchResult:
        """The full result with the tile map, for reports (at the LQ's detail scale when adapted)."""
        opts = self.options.model_dump()
        a, b = _at_lq_detail(lq, hq, opts.pop("adapt_scale"))
        return local_mismatch(a, b, **opts)

    def compute(self, *images: np.ndarray) -> dict[str, float]:
        r = self.map(images[0], images[1])
        return {"worst": r.worst, "mean": r.mean, "worst_vs_mean": r.worst / max(r.mean, 1e-6)}
