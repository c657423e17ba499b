"""Colour drift between LQ and HQ, measured on heavily low-passed copies.

Restoration may remove noise, colour speckle and JPEG chroma bleeding, but should not repaint the
scene; at a 64-pixel working size with an extra blur only the regional colours survive, and their
CIEDE2000 difference is what a viewer would call "the colours changed".
"""

from __future__ import annotations

from typing import ClassVar

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
