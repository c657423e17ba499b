"""A small convolutional classifier of 96 px patches: the analyzer's second opinion on the category.

The measures (`measures.py`) see each degradation through one hand-made statistic. Rain streaks over
texture are where those statistics overlap most: the simulator's rain preset was called rain 0.42 of
the time on held-out photos by the measures alone. A convolutional net learns the local appearance
of a degradation directly. It is fitted with PyTorch by `python -m ggt.analyze.fit_patchnet` on the
decision model's training photos and seeds (never the benchmark's held-out photos or seeds) and
shipped as `patchnet.npz` (about 60 000 parameters). Inference here is numpy only, like `model.py`,
so the offline analyzer needs no torch.

Architecture (`ARCH`): pixel-unshuffle by 2 (every pixel kept, a quarter of the positions), six 3x3
convolutions with ReLU (the third and fifth with stride 2), global mean and max pooling (sparse
streaks and flakes show in the max), one linear layer to the seven categories. An image is read as a
4x4 grid of 96x96 patches at full resolution (upscaled first where a side is under 96 px); the
patches' log-probabilities are averaged.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ggt.analyze.convnet import ConvStack, grid_crops, read_weights

WEIGHTS_PATH = Path(__file__).with_name("patchnet.npz")
CATEGORIES = ("clean", "social_media", "old_photo", "rain", "snow", "haze", "low_light")
PATCH = 96
GRID = 4
MAX_ASPECT = 16
# (in, out, stride) of the convolutions after the 2x pixel-unshuffle (3 colours -> 12 channels).
ARCH = ((12, 24, 1), (24, 24, 1), (24, 32, 2), (32, 32, 1), (32, 48, 2), (48, 48, 1))


class PatchNetError(RuntimeError):
    """The patch classifier's weights are missing or do not fit `ARCH`."""


def to_u8(img: np.ndarray) -> np.ndarray:
    """The 8-bit image the net was trained on (float [0, 1] input is rounded as a PNG save would)."""
    if img.dtype == np.uint8:
        return img
    return (np.clip(img, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def at_least_patch(img_u8: np.ndarray) -> np.ndarray:
    """The image, upscaled (bilinear) where its short side is under PATCH; as fitted and as read."""
    h, w = img_u8.shape[:2]
    if min(h, w) >= PATCH:
        return img_u8
    # A thin strip would be upscaled to gigabytes (1 x 100000 px -> 96 x 9.6M); its middle, at most
    # MAX_ASPECT times as long as it is wide, is all the patch grid can read of it anyway.
    keep = MAX_ASPECT * min(h, w)
    if h > keep:
        img_u8 = img_u8[(h - keep) // 2 : (h - keep) // 2 + keep]
    if w > keep:
        img_u8 = img_u8[:, (w - keep) // 2 : (w - keep) // 2 + keep]
    h, w = img_u8.shape[:2]
    s = PATCH / min(h, w)
    size = (max(PATCH, round(w * s + 0.5)), max(PATCH, round(h * s + 0.5)))
    return cv2.resize(img_u8, size, interpolation=cv2.INTER_LINEAR)


def patches(img_u8: np.ndarray, grid: int = GRID) -> np.ndarray:
    """`grid` x `grid` PATCH-sized crops spread evenly over the image, as (N, PATCH, PATCH, 3)."""
    if img_u8.ndim == 2:
        img_u8 = np.repeat(img_u8[:, :, None], 3, axis=2)
    return grid_crops(at_least_patch(img_u8)[:, :, :3], PATCH, grid)


class PatchNet:
    """Numpy inference of the fitted net (weights as saved by `fit_patchnet`: torch's state-dict names)."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        keys = [f"f.{2 * i + 1}" for i in range(len(ARCH))]
        self.stack = ConvStack(weights, keys, ARCH, "h", len(CATEGORIES), "patch classifier", PatchNetError)

    def logits(self, batch_u8: np.ndarray) -> np.ndarray:
        """(N, 7) logits of (N, H, W, 3) uint8 patches (H, W multiples of 8)."""
        n, h, w, _ = batch_u8.shape
        x = batch_u8.astype(np.float32) / 255.0 - 0.5
        # Pixel-unshuffle as torch orders it: channel = colour * 4 + row offset * 2 + column offset.
        x = x.reshape(n, h // 2, 2, w // 2, 2, 3).transpose(0, 1, 3, 5, 2, 4).reshape(n, h // 2, w // 2, 12)
        return self.stack(x)

    def log_probs(self, img: np.ndarray, grid: int = GRID) -> np.ndarray:
        """Mean over the image's patches of the per-patch log-probabilities, in CATEGORIES order."""
        z = self.logits(patches(to_u8(img), grid)).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        lp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return lp.mean(axis=0)


@lru_cache(maxsize=4)
def load_patchnet(path: str | None = None) -> PatchNet:
    """The shipped net, or the one at `path` (an `.npz` written by `fit_patchnet`); parsed once."""
    p = Path(path) if path else WEIGHTS_PATH
    weights = read_weights(p, "patch classifier", "fit_patchnet", "patchnet", PatchNetError)
    return PatchNet(weights)


def patch_probabilities(img: np.ndarray, path: str | None = None) -> dict[str, float]:
    """`patchnet_<category>`: the net's probabilities for the image (normalised geometric mean over
    its patches), stored with the measures so that reports and benchmark caches carry them."""
    lp = load_patchnet(path).log_probs(img)
    p = np.exp(lp - lp.max())
    p /= p.sum()
    return {f"patchnet_{c}": float(v) for c, v in zip(CATEGORIES, p, strict=True)}
