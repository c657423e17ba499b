"""Cheap no-reference measures of the classic artefacts: blur, noise, JPEG blocking.

They are not quality scores on their own; QC uses them through ``improvement(metric, lq, hq)`` to check
that the HQ is better than the LQ on the artefact the LQ was diagnosed with. All work on Rec.601 luma
on the 0-255 scale, so the numbers read like the usual 8-bit ones.
"""

from __future__ import annotations

import math
from typing import ClassVar

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ggt.qc.metrics._image import as_rgb, luma
from ggt.qc.metrics.base import Metric, register


def _y255(img: np.ndarray) -> np.ndarray:
    return luma(as_rgb(img)) * np.float32(255.0)


class SharpnessOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    presmooth: float = Field(0.0, ge=0.0, description="Gaussian sigma before the Laplacian (tames noise)")


@register
class Sharpness(Metric):
    name: ClassVar[str] = "sharpness"
    kind = "nr"
    lower_better = False
    range = (0.0, math.inf)
    description = "variance of the Laplacian of luma (0-255); noise raises it too, read it with 'noise'"
    Options = SharpnessOptions

    def compute(self, *images: np.ndarray) -> float:
        y = _y255(images[0])
        sig = self.options.presmooth  # type: ignore[attr-defined]
        if sig > 0:
            y = cv2.GaussianBlur(y, (0, 0), sig)
        return float(cv2.Laplacian(y, cv2.CV_32F, ksize=1).var())


class NoiseOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    edge_quantile: float = Field(
        0.9, gt=0.0, le=1.0, description="keep pixels whose gradient is below this quantile (1 = all)"
    )


_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


@register
class Noise(Metric):
    name: ClassVar[str] = "noise"
    kind = "nr"
    lower_better = True
    range = (0.0, 255.0)
    description = "noise sigma in 8-bit units, Immerkaer (1996) with the strongest edges left out"
    Options = NoiseOptions

    def compute(self, *images: np.ndarray) -> float:
        y = _y255(images[0])
        # The mask cancels locally linear signal; what is left on smooth areas is noise. Edges leak
        # through, so (as Tai & Yang 2008) the strongest-gradient pixels are not counted.
        r = np.abs(cv2.filter2D(y, cv2.CV_32F, _IMMERKAER, borderType=cv2.BORDER_REFLECT))[1:-1, 1:-1]
        q = self.options.edge_quantile  # type: ignore[attr-defined]
        if q < 1.0:
            gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3)[1:-1, 1:-1]
            gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3)[1:-1, 1:-1]
            g = cv2.magnitude(gx, gy)
            r = r[g <= np.quantile(g, q)]
        return float(math.sqrt(math.pi / 2.0) / 6.0 * r.mean()) if r.size else 0.0


class BlockinessOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    block: int = Field(8, ge=2)


@register
class Blockiness(Metric):
    name: ClassVar[str] = "blockiness"
    kind = "nr"
    lower_better = True
    range = (0.0, math.inf)
    description = "mean |step| across 8x8 block boundaries over that inside blocks (1 = no blocking)"
    Options = BlockinessOptions

    def compute(self, *images: np.ndarray) -> float:
        y = _y255(images[0])
        n = self.options.block  # type: ignore[attr-defined]
        ratios = []
        for d in (np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0)).T):
            # Column j of d is the step between pixels j and j + 1; JPEG's grid puts it at j % n == n-1.
            on = (np.arange(d.shape[1]) % n) == n - 1
            if on.any() and (~on).any():
                ratios.append((float(d[:, on].mean()) + 1e-3) / (float(d[:, ~on].mean()) + 1e-3))
        return float(np.mean(ratios)) if ratios else 1.0
