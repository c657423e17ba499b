"""Colour drift between LQ and HQ, measured on heavily low-passed copies.

Restoration may remove noise, colour speckle and JPEG chroma bleeding, but should not repaint the
scene; at a 64-pixel working size with an extra blur only the regional colours survive, and their
CIEDE2000 difference is what a viewer would call "the colours changed".
"""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from skimage.color import deltaE_ciede2000, rgb2lab

from ggt.qc.metrics._image import as_rgb, gaussian, pair_at
from ggt.qc.metrics.base import Metric, register


class DriftOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    work_side: int = Field(64, ge=8, description="long side of the working copy")
    sigma: float = Field(1.0, ge=0.0, description="extra blur at the working size, in working pixels")
    percentile: float = Field(95.0, gt=0.0, le=100.0)


@register
class ColourDrift(Metric):
    name: ClassVar[str] = "drift"
    kind = "fr"
    lower_better = True
    range = (0.0, 100.0)
    primary = "de_mean"
    description = (
        "CIEDE2000 between low-passed LQ and HQ: mean, 95th percentile; mean L*, a*, b* shifts (HQ - LQ) "
        "and the chroma shift |(da, db)|"
    )
    Options = DriftOptions

    def compute(self, *images: np.ndarray) -> dict[str, float]:
        o: DriftOptions = self.options  # type: ignore[assignment]
        a, b = pair_at(as_rgb(images[0], "lq"), as_rgb(images[1], "hq"), o.work_side)
        lab_a = rgb2lab(np.clip(gaussian(a, o.sigma), 0.0, 1.0))
        lab_b = rgb2lab(np.clip(gaussian(b, o.sigma), 0.0, 1.0))
        de = deltaE_ciede2000(lab_a, lab_b)
        mean_d = (lab_b - lab_a).reshape(-1, 3).mean(axis=0)
        return {
            "de_mean": float(de.mean()),
            "de_p95": float(np.percentile(de, o.percentile)),
            "dL": float(mean_d[0]),
            "da": float(mean_d[1]),
            "db": float(mean_d[2]),
            "chroma_shift": float(np.hypot(mean_d[1], mean_d[2])),
        }


# -- white balance and hue consistency ---------------------------------------------------------------------


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055).astype(np.float32)


def illuminant(lin: np.ndarray, p: float = 6.0, sigma: float = 1.0) -> np.ndarray:
    """Grey-edge illuminant estimate (van de Weijer et al. 2007): the Minkowski p-mean of each channel's
    gradient magnitude in linear light, normalised to mean 1. Edges, not pixel means, so a scene that is
    mostly one colour (a red retina, an orange cat) biases it less than grey-world, and an additive veil
    (haze, fog) barely moves it."""
    g = cv2.GaussianBlur(lin, (0, 0), sigma)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1)
    mag = np.sqrt(gx * gx + gy * gy).reshape(-1, 3).astype(np.float64)
    e = (mag**p).mean(axis=0) ** (1 / p)
    if not np.all(np.isfinite(e)) or e.max() <= 1e-9:
        return np.ones(3)
    e = np.maximum(e, 1e-6 * e.max())
    return e / e.mean()


def cast_vector(e: np.ndarray) -> np.ndarray:
    """Log-chromaticity of an illuminant: (red - blue, green - magenta); (0, 0) is neutral."""
    le = np.log(e)
    return np.array([le[0] - le[2], le[1] - 0.5 * (le[0] + le[2])])


class WhiteBalanceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    work_side: int = Field(128, ge=16, description="long side of the working copy")
    min_chroma: float = Field(
        5.0,
        gt=0.0,
        description="CIELAB chroma above which a pixel (of both images) has a hue worth comparing",
    )
    min_chromatic: float = Field(
        0.05, ge=0.0, le=1.0, description="fraction of chromatic pixels below which hue measures read 0"
    )
    grid: int = Field(4, ge=1, le=16, description="tiles per side for the local hue measure")


@register
class WhiteBalance(Metric):
    name: ClassVar[str] = "wb"
    kind = "fr"
    lower_better = True
    range = (0.0, 5.0)
    primary = "change"
    description = (
        "white balance and hue consistency: grey-edge illuminant cast of LQ and HQ and its change (log "
        "chromaticity), hue rotation and chroma ratio of the chromatic regions after each image's own "
        "white balance is normalised, and the worst tile's hue deviation"
    )
    Options = WhiteBalanceOptions

    def compute(self, *images: np.ndarray) -> dict[str, float]:
        o: WhiteBalanceOptions = self.options  # type: ignore[assignment]
        a, b = pair_at(as_rgb(images[0], "lq"), as_rgb(images[1], "hq"), o.work_side)
        la, lb = _srgb_to_linear(np.clip(a, 0, 1)), _srgb_to_linear(np.clip(b, 0, 1))
        ea, eb = illuminant(la), illuminant(lb)
        ca, cb = cast_vector(ea), cast_vector(eb)
        out = {
            "cast_lq": float(np.hypot(*ca)),
            "cast_hq": float(np.hypot(*cb)),
            "change": float(np.hypot(*(cb - ca))),
            # > 0: the HQ is further from neutral than the LQ. A restoration removes casts, it does not add
            # them (a scene's own colour, a red retina, stays in both).
            "cast_added": float(np.hypot(*cb) - np.hypot(*ca)),
        }

        # Each image divided by its own illuminant and brought to the same mean brightness: what is left
        # of a global cast, exposure or veil is small, while a hue rotation or a saturation change is not
        # a diagonal transform and survives.
        def normalised(lin: np.ndarray, e: np.ndarray) -> np.ndarray:
            n = lin / e.astype(np.float32)
            n *= np.float32(0.18 / max(float(n.mean()), 1e-6))
            return rgb2lab(_linear_to_srgb(gaussian(n, 1.0)))

        na, nb = normalised(la, ea), normalised(lb, eb)
        cha, chb = np.hypot(na[..., 1], na[..., 2]), np.hypot(nb[..., 1], nb[..., 2])
        out["chroma_lq"] = float(np.percentile(cha, 90))
        out["chroma_hq"] = float(np.percentile(chb, 90))
        out["tint_local"] = _tint_local(na, nb, cha, o)
        mask = (cha > o.min_chroma) & (chb > o.min_chroma)
        w = np.where(mask, np.minimum(cha, chb), 0.0)
        if mask.mean() < o.min_chromatic or w.sum() <= 0:
            # A grey LQ (a black-and-white print, a grey scene) has no hue to keep: no evidence either way.
            out.update(hue_shift=0.0, hue_local=0.0, chroma_ratio=1.0, chromatic=float(mask.mean()))
            return out
        dh = np.angle(np.exp(1j * (np.arctan2(nb[..., 2], nb[..., 1]) - np.arctan2(na[..., 2], na[..., 1]))))
        mean_rot = np.angle((w * np.exp(1j * dh)).sum())
        worst = 0.0
        for sl in _tiles(w.shape, o.grid):
            # Only tiles with a real share of the colour: a few stray chromatic pixels carry no hue.
            if mask[sl].mean() >= 0.25:
                rot = np.angle((w[sl] * np.exp(1j * dh[sl])).sum())
                worst = max(worst, abs(float(np.angle(np.exp(1j * (rot - mean_rot))))))
        out.update(
            hue_shift=float(np.degrees(abs(mean_rot))),
            hue_local=float(np.degrees(worst)),
            chroma_ratio=float(np.exp(np.average(np.log(chb[mask] / cha[mask]), weights=w[mask]))),
            chromatic=float(mask.mean()),
        )
        return out


def _tiles(shape: tuple[int, ...], grid: int) -> list[tuple[slice, slice]]:
    h, w = shape[:2]
    return [
        (slice(ty * h // grid, (ty + 1) * h // grid), slice(tx * w // grid, (tx + 1) * w // grid))
        for ty in range(grid)
        for tx in range(grid)
    ]


def _tint_local(na: np.ndarray, nb: np.ndarray, cha: np.ndarray, o: WhiteBalanceOptions) -> float:
    """The largest a*b* offset (HQ - LQ, white balance normalised) of a tile that is grey in the LQ, beyond
    the median offset of all such tiles: a grey wall or sky that turned a colour in one region only.
    Grey tiles, because a veil or a toning scales the chroma of coloured ones legitimately; 0 when fewer
    than two tiles are grey."""
    offsets = []
    for sl in _tiles(cha.shape, o.grid):
        if np.percentile(cha[sl], 75) < o.min_chroma:
            offsets.append((nb[sl][..., 1:] - na[sl][..., 1:]).reshape(-1, 2).mean(axis=0))
    if len(offsets) < 2:
        return 0.0
    off = np.asarray(offsets)
    return float(np.hypot(*(off - np.median(off, axis=0)).T).max())
