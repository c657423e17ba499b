"""Geometric misalignment of the HQ against the LQ: shift, scale, rotation and how much is cropped.

Generators sometimes re-frame: a few pixels of shift, a slight zoom, a crop, a tilt. Pixel-wise
metrics and training pairs both suffer, so QC measures it. Translation comes from phase correlation
(robust to large shifts and to degradations, since it uses phase only); an affine ECC fit
(cv2.findTransformECC) started from that translation refines it and adds scale and rotation. Both run
on small blurred luma copies: geometry is a low-frequency property and the small size keeps it fast.
"""

from __future__ import annotations

import math
from typing import ClassVar

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ggt.qc.metrics._image import as_rgb, gaussian, luma, pair_at
from ggt.qc.metrics.base import Metric, register


class MisalignOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    work_side: int = Field(256, ge=32, description="long side for phase correlation and the final ECC level")
    ecc_levels: int = Field(2, ge=1, le=4, description="ECC pyramid levels, coarse to fine (x2 each)")
    ecc_iters: int = Field(60, ge=1)


def _ecc(tpl: np.ndarray, img: np.ndarray, warp: np.ndarray, iters: int) -> tuple[np.ndarray, float]:
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, iters, 1e-6)
    cc, out = cv2.findTransformECC(tpl, img, warp.astype(np.float32), cv2.MOTION_AFFINE, criteria, None, 1)
    return out.astype(np.float64), float(cc)


def _overlap(warp: np.ndarray, w: int, h: int) -> tuple[float, float]:
    # The LQ frame's corners, mapped into HQ coordinates; intersect with the HQ frame.
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    mapped = corners @ warp[:, :2].T + warp[:, 2]
    frame = corners.astype(np.float32)
    area_mapped = abs(cv2.contourArea(mapped.astype(np.float32)))
    inter, _ = cv2.intersectConvexConvex(mapped.astype(np.float32), frame)
    inter = max(0.0, float(inter))
    return min(1.0, inter / max(area_mapped, 1e-9)), min(1.0, inter / float(w * h))


def estimate_misalignment(
    lq: np.ndarray, hq: np.ndarray, work_side: int = 256, ecc_levels: int = 2, ecc_iters: int = 60
) -> dict[str, float]:
    """Affine fit ``hq(A x + t) ~ lq(x)`` reported in LQ pixels; see ``Misalignment``."""
    a, b = pair_at(as_rgb(lq, "lq"), as_rgb(hq, "hq"), work_side)
    h, w = a.shape[:2]
    to_lq = lq.shape[1] / w  # working pixel -> LQ pixel
    ya, yb = gaussian(luma(a), 1.0), gaussian(luma(b), 1.0)

    win = cv2.createHanningWindow((w, h), cv2.CV_32F)
    # cv2.phaseCorrelate multiplies float32 inputs by the window IN PLACE (seen with 5.0.0); ECC below must
    # see the unwindowed images, or an intensity offset (a veil, fog, a lifted black) becomes a
    # window-shaped bump that ECC "explains" with a shift or a zoom. Hence the copies.
    (dx, dy), _ = cv2.phaseCorrelate(ya.copy(), yb.copy(), win)
    warp = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    cc = 0.0  # stays 0 when ECC cannot fit (keeps every value finite for JSON reports)
    converged = 0.0
    try:
        for lev in range(ecc_levels - 1, -1, -1):
            f = 2**lev
            if f > 1:
                sa = cv2.resize(ya, (max(16, w // f), max(16, h // f)), interpolation=cv2.INTER_AREA)
                sb = cv2.resize(yb, sa.shape[::-1], interpolation=cv2.INTER_AREA)
            else:
                sa, sb = ya, yb
            k = sa.shape[1] / w
            warp[:, 2] *= k
            warp, cc = _ecc(sa, sb, warp, ecc_iters)
            warp[:, 2] /= k
        converged = 1.0
    except cv2.error:
        # No convergence (flat or unrelated images): keep the phase-correlation translation only.
        warp = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])

    lin = warp[:, :2]
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    t_centre = lin @ centre + warp[:, 2] - centre
    scale = math.sqrt(max(abs(float(np.linalg.det(lin))), 1e-12))
    rot = math.degrees(math.atan2(lin[0, 1] - lin[1, 0], lin[0, 0] + lin[1, 1]))
    lq_visible, hq_covered = _overlap(warp, w, h)
    dxl, dyl = float(t_centre[0] * to_lq), float(t_centre[1] * to_lq)
    return {
        "shift_px": math.hypot(dxl, dyl),
        "dx": dxl,
        "dy": dyl,
        "scale": scale,
        "rotation_deg": rot,
        "lq_visible": lq_visible,
        "hq_covered": hq_covered,
        "crop": max(0.0, 1.0 - lq_visible),
        "ecc_cc": cc,
        "converged": converged,
    }


@register
class Misalignment(Metric):
    """Keys: ``shift_px`` (displacement of the LQ's centre in the HQ, LQ pixels), ``dx``/``dy``,
    ``scale`` (>1: HQ content is magnified), ``rotation_deg`` (counter-clockwise as displayed, OpenCV's
    getRotationMatrix2D sign), ``lq_visible`` (fraction of the LQ frame still inside the HQ),
    ``hq_covered`` (fraction of the HQ frame showing LQ content), ``crop`` = 1 - lq_visible,
    ``ecc_cc`` (ECC correlation) and ``converged`` (0 when only the translation could be estimated)."""

    name: ClassVar[str] = "misalign"
    kind = "fr"
    lower_better = True
    range = None
    primary = "shift_px"
    description = "shift (px), scale, rotation (deg) and crop of HQ against LQ (phase correlation + ECC)"
    Options = MisalignOptions

    def compute(self, *images: np.ndarray) -> dict[str, float]:
        return estimate_misalignment(images[0], images[1], **self.options.model_dump())
