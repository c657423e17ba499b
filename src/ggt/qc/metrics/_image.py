"""Small image helpers shared by the metric modules (kept private: conversions for the app live in
``ggt.imaging``; these only serve the measures)."""

from __future__ import annotations

import cv2
import numpy as np

# Rec.601 luma weights; pyiqa's default "yiq" Y uses exactly these, so Y-channel metrics match it.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def as_rgb(img: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an HxWx3 RGB image and return it as float (uint8 is scaled to [0, 1])."""
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        shape = getattr(img, "shape", None)
        raise ValueError(f"{name}: expected an RGB image HxWx3, got shape {shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype not in (np.float32, np.float64):
        return img.astype(np.float32)
    return img


def same_shape(a: np.ndarray, b: np.ndarray, metric: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{metric} needs images of the same shape, got {a.shape} and {b.shape}; "
            "resize the HQ to the LQ size first (compute_all does this)"
        )


def luma(img: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Rec.601 luma in [0, 1] (no 16-235 offset, as pyiqa's YIQ Y)."""
    if dtype == np.float32:
        # cv2.transform is one SIMD pass; float32 is also what pyiqa converts in.
        src = np.ascontiguousarray(img, dtype=np.float32)
        return cv2.transform(src, _LUMA32).reshape(img.shape[:2])
    w = LUMA.astype(dtype)
    return (img[..., 0].astype(dtype) * w[0] + img[..., 1] * w[1] + img[..., 2] * w[2]).astype(dtype)


_LUMA32 = LUMA.astype(np.float32).reshape(1, 3)


def resize_to(img: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Resize to (w, h): area averaging when shrinking (anti-aliased), bicubic when enlarging."""
    h, w = img.shape[:2]
    if (w, h) == size_wh:
        return img
    shrink = size_wh[0] * size_wh[1] < w * h
    out = cv2.resize(img, size_wh, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return out


def work_size(shape: tuple[int, ...], long_side: int) -> tuple[int, int]:
    """(w, h) with the long side at most ``long_side`` and the aspect ratio of ``shape``."""
    h, w = shape[:2]
    s = min(1.0, long_side / max(h, w))
    return max(8, round(w * s)), max(8, round(h * s))


def pair_at(lq: np.ndarray, hq: np.ndarray, long_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Both images on the LQ's grid at a working size; HQ of another size is resized onto it.

    Generators often return another resolution (even another aspect) than the LQ; the tolerant
    metrics compare content on the LQ's frame, so the HQ is mapped onto it first.
    """
    size = work_size(lq.shape, long_side)
    return (
        resize_to(lq.astype(np.float32, copy=False), size),
        resize_to(hq.astype(np.float32, copy=False), size),
    )


def gaussian(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
