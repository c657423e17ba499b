"""A learned detector of enlargement: the analyzer's evidence for social_media where the measures run out.

A photo a platform shrank, re-compressed and that was then shown or saved at its old size carries
the traces of the resize and of the codec rounds at the small size, at every pixel. The measures
read those traces through hand-made statistics (sharpness, spectral fall-off, block grids), and at the
mild end of the social_media preset (shrunk to 0.6-0.8, last saved at JPEG quality 75 and up, or not
re-saved) they cannot tell such a copy from a soft clean photo: the shipped decision model called 30 %
of those renders of its own training photos clean, which is what a leave-photos-out regression on
the measures also manages at the same clean error (docs/analyzer-accuracy.md, twenty-first session).
A small convolutional net on the high-passed pixels separates them (AUC 0.967 on training photos it
never saw, 0.950 on exactly those misses).

Architecture (`ARCH`): the 8-bit RGB image minus its 3x3 box blur, divided by 8; five 3x3
convolutions with ReLU (the second and fourth with stride 2); global mean and max pooling; one linear
unit, the logit of "enlarged". An image is read as a 4x4 grid of 64 px patches of its 512 px centre
crop; the logit is the patches' mean (`enlargement_logit`, reported with the measures). Fitted with
PyTorch by `python -m ggt.analyze.fit_enlargement`; inference here is numpy only, like `patchnet.py`.

How the analyzer uses it (`heuristic.py`): never as a model input (on the fit's renders of its own
training photos it would be trusted far beyond its worth), but as an override, like a recovered
low-quality JPEG table: a photo the decision model calls clean is called social_media when the logit
reaches `analyze.heuristic.enlargement_threshold`, set at the 99th percentile of the shipped net's
logits on clean renders of training photos it never saw.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ggt.analyze.convnet import ConvStack, grid_crops, read_weights
from ggt.analyze.measures import center_crop
from ggt.analyze.patchnet import to_u8

WEIGHTS_PATH = Path(__file__).with_name("enlargement.npz")
PATCH = 64
GRID = 4
CROP = 512
# (in, out, stride) of the convolutions.
ARCH = ((3, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1))


class EnlargementNetError(RuntimeError):
    """The enlargement detector's weights are missing or do not fit `ARCH`."""


def highpass(img_u8: np.ndarray) -> np.ndarray:
    """The net's input: the 8-bit image minus its 3x3 box blur, over 8 (float32, HxWx3). The resize
    and codec traces live in the top of the band; the scene's tones would only teach it the scenes."""
    x = img_u8.astype(np.float32)
    return (x - cv2.blur(x, (3, 3))) * np.float32(1.0 / 8.0)


class EnlargementNet:
    """Numpy inference of the fitted net (weights as `fit_enlargement` saves them)."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        keys = [f"conv{i}" for i in range(len(ARCH))]
        self.stack = ConvStack(weights, keys, ARCH, "head", 1, "enlargement detector", EnlargementNetError)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(N,) logits of (N, PATCH, PATCH, 3) high-passed patches (`highpass`)."""
        return self.stack(batch.astype(np.float32))[:, 0]

    def logit(self, img: np.ndarray) -> float:
        """The mean patch logit of an RGB image (float in [0, 1] or uint8); 0.0 (no opinion) for an
        image under PATCH px on a side, which only an upscale could feed the net."""
        crop = to_u8(center_crop(img, CROP))  # crop first: only the crop is read
        if min(crop.shape[:2]) < PATCH:
            return 0.0
        return float(self.logits(grid_crops(highpass(crop[:, :, :3]), PATCH, GRID)).mean())


@lru_cache(maxsize=4)
def load_enlargement_net(path: str | None = None) -> EnlargementNet:
    """The shipped net, or the one at `path` (an `.npz` written by `fit_enlargement`); parsed once."""
    p = Path(path) if path else WEIGHTS_PATH
    weights = read_weights(p, "enlargement detector", "fit_enlargement", "enlargement", EnlargementNetError)
    return EnlargementNet(weights)


def enlargement_logit(img: np.ndarray, path: str | None = None) -> dict[str, float]:
    """`enlargement_logit`, stored with the measures so that reports and benchmark caches carry it."""
    return {"enlargement_logit": load_enlargement_net(path).logit(img)}
