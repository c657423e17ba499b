"""How much real detail the LQ carries: the scale at which LQ and HQ can be compared fairly.

A super-resolution LQ (a photo shrunk to a fifth and blown back up, or blurred hard) holds nothing above
a fraction of its Nyquist frequency. The structure checks (`fidelity`, `local_mismatch`) compare at a
fixed 2.5-3 LQ pixels, which assumes an LQ sharp at its own pixel size; on a heavily upscaled LQ they
compare the HQ's real detail with the LQ's blur and noise and read a faithful restoration as another
image. Comparing both images shrunk to the LQ's effective resolution compares only what the LQ can
vouch for, while anything the LQ does resolve (a pasted patch, a removed object, another photo) still
differs there.

The estimate is spectral, per half-octave band of spatial frequency: the LQ's power divided by the HQ's
(so the content's own spectral slope cancels), normalised by that ratio over the coarse bands (so a
veil or a contrast change, which scales every band alike, cancels too). The LQ's detail ends at the
first band, from coarse to fine, that kept less than ``keep`` of its coarse-scale power: 90 % of the
scene's power there is gone (shrunk away or blurred). Noise added after the upscale lifts the fine bands
again, so a noisy LQ reads as resolving them and is compared at full size, as before: the estimate
only ever moves the comparison to a coarser scale where the LQ plainly lacks the detail.

Not used, though tried: the coherence of the two spectra as a noise criterion. It also marks a hazy LQ
(noise over a faded scene) as coarse, and at a coarse scale haze's lowered local contrast reads as a
local mismatch, so good haze pairs got worse.
"""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ggt.qc.metrics._image import as_rgb, luma, pair_at
from ggt.qc.metrics.base import Metric, register

# Half-octave bands from 1/128 to 1/2 cycles per working pixel; 1/64-1/16 is the reference, the scale of
# objects and layout that any LQ worth restoring still shows.
_EDGES = 0.5 * 2.0 ** (-np.arange(12, -1, -1) / 2.0)
_CENTRES = np.sqrt(_EDGES[:-1] * _EDGES[1:])
_REF = (_CENTRES >= 1 / 64) & (_CENTRES <= 1 / 16)


class DetailScaleOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    work_side: int = Field(512, ge=64, description="long side at which the spectra are taken")
    keep: float = Field(0.1, gt=0.0, lt=1.0, description="relative band power under which detail is gone")
    min_scale: float = Field(0.125, gt=0.0, le=1.0, description="never compare coarser than this")


def _bands(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Power spectrum of a luma image (Hann-windowed, so the borders do not leak) and each coefficient's
    half-octave band (-1: outside)."""
    g = img.astype(np.float32) - np.float32(img.mean())
    h, w = g.shape
    g *= np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    f = cv2.dft(g, flags=cv2.DFT_COMPLEX_OUTPUT)[:, : w // 2 + 1]  # float32 and half the plane: fast
    power = (f[..., 0].astype(np.float64) ** 2 + f[..., 1].astype(np.float64) ** 2).ravel()
    fy = np.abs(np.fft.fftfreq(h))[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    idx = np.searchsorted(_EDGES, np.sqrt(fx * fx + fy * fy).ravel(), side="right") - 1
    idx[idx >= len(_CENTRES)] = -1
    return power, idx


def band_ratio(lq_luma: np.ndarray, hq_luma: np.ndarray) -> np.ndarray:
    """The LQ/HQ power ratio per half-octave band."""
    pa, idx = _bands(lq_luma)
    pb, _ = _bands(hq_luma)
    ok = idx >= 0
    n = len(_CENTRES)
    sa = np.bincount(idx[ok], weights=pa[ok], minlength=n)
    sb = np.bincount(idx[ok], weights=pb[ok], minlength=n)
    return sa / np.maximum(sb, 1e-12)


# fidelity, gmsd_lp, local_mismatch and detail_scale itself all ask for the same pair in a row; the last
# answer is kept, keyed by the arrays' buffers, shapes and a strided checksum of their pixels.
_LAST: dict[tuple, float] = {}


def _key(lq: np.ndarray, hq: np.ndarray, *opts: float) -> tuple:
    def one(x: np.ndarray) -> tuple:
        return (x.__array_interface__["data"][0], x.shape, x.dtype.str, float(x[::29, ::31].sum()))

    return (*one(lq), *one(hq), *opts)


def detail_scale(
    lq: np.ndarray, hq: np.ndarray, work_side: int = 512, keep: float = 0.1, min_scale: float = 0.125
) -> float:
    """The LQ's effective resolution as a fraction of its pixel grid (1 = sharp at its own size)."""
    lq, hq = as_rgb(lq, "lq"), as_rgb(hq, "hq")
    key = _key(lq, hq, work_side, keep, min_scale)
    if key not in _LAST:
        _LAST.clear()
        _LAST[key] = _detail_scale(lq, hq, work_side, keep, min_scale)
    return _LAST[key]


def _detail_scale(lq: np.ndarray, hq: np.ndarray, work_side: int, keep: float, min_scale: float) -> float:
    a, b = pair_at(lq, hq, work_side)
    if min(a.shape[:2]) < 32:
        return 1.0
    ratio = band_ratio(luma(a), luma(b))
    ref = float(np.median(ratio[_REF]))
    if not np.isfinite(ref) or ref <= 0:
        return 1.0  # no structure at layout scale in one of them: nothing to measure a loss against
    rel = ratio / ref
    # The grid of the working copy, in LQ pixels: a 1024 px LQ seen at 512 px is already halved.
    grid = a.shape[1] / lq.shape[1]
    for i in np.nonzero(_CENTRES > 1 / 16)[0]:
        if rel[i] < keep:
            # Detail reaches the band's lower edge: that frequency, as a fraction of Nyquist (0.5).
            return float(max(min_scale, min(1.0, _EDGES[i] / 0.5 * grid)))
    return 1.0


def comparison_scale(scale: float) -> float:
    """The shrink factor for the structure checks: the LQ's ``detail_scale`` once it has lost an octave.

    The bands are half an octave wide and natural spectra differ in slope by about that much, so a
    reading of 0.71 is within the estimate's error of a sharp LQ; those pairs are compared as they always
    were. From 0.5 down (an LQ that is at best a 2x upscale) the comparison moves to the LQ's scale.
    """
    return scale if scale <= 0.5 + 1e-9 else 1.0


def at_detail_scale(
    lq: np.ndarray, hq: np.ndarray, scale: float, min_side: int = 48
) -> tuple[np.ndarray, np.ndarray]:
    """Both images area-shrunk to ``scale`` of the LQ's size (the short side kept at ``min_side`` or
    more), so that metrics sized in LQ pixels measure in pixels the LQ actually resolves."""
    lq, hq = as_rgb(lq, "lq"), as_rgb(hq, "hq")
    h, w = lq.shape[:2]
    s = max(scale, min(1.0, min_side / min(h, w)))
    if s >= 1.0:
        return lq, hq
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return pair_at(lq, hq, max(size))


@register
class DetailScale(Metric):
    name: ClassVar[str] = "detail_scale"
    kind = "fr"
    lower_better = False
    range = (0.0, 1.0)
    description = (
        "the LQ's effective resolution as a fraction of its pixel grid (1 = sharp; 0.25 = a 4x upscale), "
        "from the LQ/HQ power ratio per frequency band; the structure checks compare at this scale"
    )
    Options = DetailScaleOptions

    def compute(self, *images: np.ndarray) -> float:
        return detail_scale(images[0], images[1], **self.options.model_dump())
