"""PSNR, SSIM and MS-SSIM with pyiqa's conventions, on numpy + OpenCV.

Conventions copied from pyiqa (chaofengc/IQA-PyTorch, ``psnr_arch.py``, ``ssim_arch.py``) so that a
calibration test can compare the numbers within 1e-3:

- PSNR: no rounding; ``10 log10(1 / (mse + eps))`` with ``eps = 1e-8`` on [0, 1] data, so identical
  images give 80 dB (a cap, not infinity: QC tables and JSON stay finite). ``psnr`` averages the MSE over
  R, G, B; ``psnr_y`` uses Rec.601 luma (pyiqa's YIQ Y) in [0, 1].
- SSIM: Y = 0.299 R + 0.587 G + 0.114 B computed in float32 (as pyiqa), scaled to [0, 255] and rounded
  (pyiqa mimics MATLAB's uint8 input), 11x11 Gaussian window of sigma 1.5, "valid" filtering,
  C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, the contrast-structure map clamped at 0. MATLAB's
  ``downsample`` rule (average-pool by ``round(min(H, W) / 256)``) is an option, off as in pyiqa.
- MS-SSIM: the same SSIM at 5 scales, weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), product
  form, 2x2 average pooling with pyiqa's odd-size padding (zeros counted in the average).

The Gaussian window is separable, so each local moment is two 1-D passes (cv2.sepFilter2D) instead of
an 11x11 convolution, in float32 on centred data instead of float64: 70-200x faster than pyiqa on one
CPU thread, within 4e-6 of its values (docs/qc-metrics.md).
"""

from __future__ import annotations

import math
from typing import ClassVar

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ggt.qc.metrics._image import as_rgb, luma, same_shape
from ggt.qc.metrics.base import Metric, register

PSNR_EPS = 1e-8
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WIN_SIZE = 11
_WIN_SIGMA = 1.5


def _gauss_1d(size: int = _WIN_SIZE, sigma: float = _WIN_SIGMA) -> np.ndarray:
    # MATLAB fspecial('gaussian') is the outer product of this normalised 1-D kernel with itself.
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


_G32 = _gauss_1d().astype(np.float32)
_HALF = _WIN_SIZE // 2


def _filter_valid(x: np.ndarray) -> np.ndarray:
    # A 'same' filter cropped by the half window equals MATLAB's filter2(..., 'valid').
    out = cv2.sepFilter2D(x, cv2.CV_32F, _G32, _G32, borderType=cv2.BORDER_CONSTANT)
    return out[_HALF:-_HALF, _HALF:-_HALF]


def ssim_maps(x: np.ndarray, y: np.ndarray, data_range: float = 255.0) -> tuple[float, float]:
    """Mean SSIM and mean contrast-structure of two single-channel images (pyiqa's ``ssim``).

    Works in float32 on data centred at half the range: the moments then stay below 2^14, so float32
    keeps the variances to about 1e-3 of an 8-bit level (the result to ~1e-6), at half float64's cost.
    """
    if min(x.shape) < _WIN_SIZE:
        raise ValueError(f"SSIM needs images of at least {_WIN_SIZE}x{_WIN_SIZE}, got {x.shape}")
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    off = np.float32(data_range / 2.0)
    xc = x.astype(np.float32) - off
    yc = y.astype(np.float32) - off
    m1 = _filter_valid(xc)
    m2 = _filter_valid(yc)
    s1 = _filter_valid(xc * xc) - m1 * m1
    s2 = _filter_valid(yc * yc) - m2 * m2
    s12 = _filter_valid(xc * yc) - m1 * m2
    cs = (2.0 * s12 + c2) / (s1 + s2 + c2)
    np.maximum(cs, 0.0, out=cs)
    m1 += off
    m2 += off
    lum = (2.0 * m1 * m2 + c1) / (m1 * m1 + m2 * m2 + c1)
    return float(np.mean(lum * cs, dtype=np.float64)), float(np.mean(cs, dtype=np.float64))


def _to_planes(img: np.ndarray, y_channel: bool) -> list[np.ndarray]:
    # pyiqa's preprocess_rgb: float32 conversion, 255 scale, rounded to the integer grid like MATLAB's
    # uint8 input. Integers (and their 2x2 means) are exact in float32, so the planes stay float32.
    if y_channel:
        return [np.round(luma(img) * np.float32(255.0))]
    x = np.round(img.astype(np.float32) * np.float32(255.0))
    return [np.ascontiguousarray(x[..., c]) for c in range(3)]


def _avg_pool(x: np.ndarray, f: int) -> np.ndarray:
    h, w = (x.shape[0] // f) * f, (x.shape[1] // f) * f
    return x[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def _pool2_pyiqa(x: np.ndarray) -> np.ndarray:
    # torch avg_pool2d(kernel 2, padding=(H % 2, W % 2)), count_include_pad=True: odd sides get a zero
    # row/column on both ends and the partial windows are still divided by 4.
    ph, pw = x.shape[0] % 2, x.shape[1] % 2
    if ph or pw:
        x = np.pad(x, ((ph, ph), (pw, pw)))
    oh, ow = x.shape[0] // 2, x.shape[1] // 2
    x = x[: 2 * oh, : 2 * ow]
    return (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]) * x.dtype.type(0.25)


class PsnrOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    eps: float = Field(PSNR_EPS, ge=0.0, description="added to the MSE (pyiqa: 1e-8); 0 gives inf")
    crop_border: int = Field(0, ge=0)


def _crop(img: np.ndarray, b: int) -> np.ndarray:
    return img[b:-b, b:-b] if b else img


@register
class PSNR(Metric):
    name: ClassVar[str] = "psnr"
    kind = "fr"
    lower_better = False
    range = (0.0, 80.0)
    description = "PSNR in dB over R, G, B on [0, 1] data; identical images give 80 (eps 1e-8)"
    pyiqa_name = "psnr"
    Options = PsnrOptions
    _y: ClassVar[bool] = False

    def compute(self, *images: np.ndarray) -> float:
        ref, img = (as_rgb(i) for i in images)
        same_shape(ref, img, self.name)
        b = self.options.crop_border  # type: ignore[attr-defined]
        ref, img = _crop(ref, b), _crop(img, b)
        if self._y:
            ref, img = luma(ref), luma(img)
        # cv2.norm accumulates in double, so float32 inputs lose nothing and skip a float64 copy.
        ref = np.ascontiguousarray(ref, dtype=np.float32)
        img = np.ascontiguousarray(img, dtype=np.float32)
        mse = cv2.norm(ref, img, cv2.NORM_L2SQR) / ref.size + self.options.eps  # type: ignore[attr-defined]
        return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


@register
class PSNRY(PSNR):
    name: ClassVar[str] = "psnr_y"
    description = "PSNR in dB on Rec.601 luma in [0, 1]; identical images give 80 (eps 1e-8)"
    pyiqa_name = "psnry"
    _y = True


class SsimOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    test_y_channel: bool = True
    downsample: bool = False
    crop_border: int = Field(0, ge=0)


@register
class SSIM(Metric):
    name: ClassVar[str] = "ssim"
    kind = "fr"
    lower_better = False
    range = (0.0, 1.0)
    description = "SSIM (Wang et al. 2004) on 8-bit-rounded luma, pyiqa's 'ssim'"
    pyiqa_name = "ssim"
    Options = SsimOptions

    def compute(self, *images: np.ndarray) -> float:
        o: SsimOptions = self.options  # type: ignore[assignment]
        ref, img = (as_rgb(i) for i in images)
        same_shape(ref, img, self.name)
        ref, img = _crop(ref, o.crop_border), _crop(img, o.crop_border)
        vals = []
        for x, y in zip(_to_planes(ref, o.test_y_channel), _to_planes(img, o.test_y_channel), strict=True):
            f = max(1, round(min(x.shape) / 256))
            if o.downsample and f > 1:
                x, y = _avg_pool(x, f), _avg_pool(y, f)
            vals.append(ssim_maps(x, y)[0])
        return float(np.mean(vals))


@register
class SSIMY(SSIM):
    """Alias of ``ssim`` with the luma choice fixed, named in parallel to ``psnr_y``."""

    name: ClassVar[str] = "ssim_y"
    description = "SSIM on 8-bit-rounded luma (same numbers as 'ssim')"
    default = False

    def __init__(self, **options: object) -> None:
        super().__init__(**{"test_y_channel": True, **options})


@register
class SSIMRGB(SSIM):
    name: ClassVar[str] = "ssim_rgb"
    description = "SSIM averaged over R, G, B, pyiqa's 'ssimc'"
    pyiqa_name = "ssimc"
    default = False

    def __init__(self, **options: object) -> None:
        super().__init__(**{"test_y_channel": False, **options})


class MsSsimOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    test_y_channel: bool = True
    downsample: bool = False
    is_prod: bool = True


@register
class MSSSIM(Metric):
    name: ClassVar[str] = "ms_ssim"
    kind = "fr"
    lower_better = False
    range = (0.0, 1.0)
    description = "MS-SSIM (Wang et al. 2003), 5 scales, pyiqa's 'ms_ssim'; needs a short side >= 176"
    pyiqa_name = "ms_ssim"
    Options = MsSsimOptions

    def compute(self, *images: np.ndarray) -> float:
        o: MsSsimOptions = self.options  # type: ignore[assignment]
        ref, img = (as_rgb(i) for i in images)
        same_shape(ref, img, self.name)
        need = _WIN_SIZE * 2 ** (len(MS_SSIM_WEIGHTS) - 1)
        if min(ref.shape[:2]) < need:
            raise ValueError(f"ms_ssim needs a short side of at least {need} px, got {ref.shape[:2]}")
        w = np.asarray(MS_SSIM_WEIGHTS)
        xs, ys = _to_planes(ref, o.test_y_channel), _to_planes(img, o.test_y_channel)
        mcs = []
        ssim_val = 0.0
        for _ in range(len(w)):
            # pyiqa averages over channels at each scale before the weighted product.
            per = []
            for x, y in zip(xs, ys, strict=True):
                f = max(1, round(min(x.shape) / 256))
                per.append(
                    ssim_maps(*((_avg_pool(x, f), _avg_pool(y, f)) if o.downsample and f > 1 else (x, y)))
                )
            ssim_val = float(np.mean([p[0] for p in per]))
            mcs.append(float(np.mean([p[1] for p in per])))
            xs, ys = [_pool2_pyiqa(x) for x in xs], [_pool2_pyiqa(y) for y in ys]
        m = np.asarray(mcs)
        if o.is_prod:
            return float(np.prod(m[:-1] ** w[:-1]) * ssim_val ** w[-1])
        wn = w / w.sum()
        return float(np.sum(m[:-1] * wn[:-1]) + ssim_val * wn[-1])
