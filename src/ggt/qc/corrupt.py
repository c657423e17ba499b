"""Ways a generated HQ goes wrong, applied to a clean HQ: the bad pairs QC must catch.

Used by the validation benchmark and the tests. Each corruption takes the clean HQ (float32 RGB in
[0, 1]), the LQ it pairs with, a random generator and a donor photo (for pasted patches and the
different-photo case), and returns the corrupted HQ plus the parameters it drew.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

Corruption = Callable[
    [np.ndarray, np.ndarray, np.random.Generator, np.ndarray], tuple[np.ndarray, dict[str, Any]]
]


def _warp(img: np.ndarray, m: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    # Reflected borders: a black wedge would be an easier give-away than real generator drift.
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return np.clip(out, 0, 1).astype(np.float32)


def shift(hq: np.ndarray, lq: np.ndarray, rng: np.random.Generator, donor: np.ndarray):
    mag = rng.uniform(4, 16)
    ang = rng.uniform(0, 2 * math.pi)
    dx, dy = mag * math.cos(ang), mag * math.sin(ang)
    return _warp(hq, np.float32([[1, 0, dx], [0, 1, dy]])), {"dx": round(dx, 2), "dy": round(dy, 2)}


def crop(hq: np.ndarray, lq: np.ndarray, rng: np.random.Generator, donor: np.ndarray):
    """Cut away 3-10 % of the frame (area) at one side and corner, then scale back to full size."""
    frac = rng.uniform(0.03, 0.10)
    h, w = hq.shape[:2]
    keep = math.sqrt(1 - frac)
    ch, cw = round(h * keep), round(w * keep)
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = cv2.resize(hq[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(out, 0, 1).astype(np.float32), {"area_cut": round(frac, 3)}


def rotate(hq: np.ndarray, lq: np.ndarray, rng: np.random.Generator, donor: np.ndarray):
    deg = rng.uniform(1, 3) * rng.choice([-1, 1])
    h, w = hq.shape[:2]
    return _warp(hq, cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)), {"deg": round(float(deg), 2)}


def scale(hq: np.ndarray, lq: np.ndarray, rng: np.random.Generator, donor: np.ndarray):
    s = 1 + rng.uniform(0.03, 0.08) * rng.choice([-1, 1])
    h, w = hq.shape[:2]
    return _warp(hq, cv2.getRotationMatrix2D((w / 2, h / 2), 0, s)), {"scale": round(float(s), 3)}


def colour(hq: np.ndarray, lq: np.ndarray, rng: np.random.Generator, donor: np.ndarray):
    """A white-balance error: per-channel gains 10-25 % apart, as a wrong colour cast looks."""
    gains = 1 + rng.uniform(0.10, 0.25, 3) * rng.choice([-1, 1], 3)
    out = np.clip(hq * gains.astype(np.float32), 0, 1)
    return out.astype(np.float32), {"gains": [round(float(g), 3) for g in gains]}


def _detail_location(img: np.ndarray, ph: int, pw: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left of a patch-sized window with above-median detail: invented or removed content that
    lands on a blank wall is harmless, so the test puts it where there is something to change."""
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    energy = cv2.blur(np.abs(cv2.Laplacian(grey, cv2.CV_32F)), (pw, ph))
    h, w = grey.shape
    ys, xs = np.mgrid[ph // 2 : h - ph // 2 : 4, pw // 2 : w - pw // 2 : 4]
    vals = energy[ys, xs]
    ok = vals >= np.quantile(vals, 0.5)
    idx = rng.choice(np.flatnonzero(ok))
    return int(ys.flat[idx] - ph // 2), int(xs.flat[idx] - pw // 2)


def paste(hq: np.ndarray, lq: np.ndarray, rng: np.random.Generator, donor: np.ndarray):
    """A foreign patch (from another photo) covering 5-15 % of the area: an invented object."""
    frac = rng.uniform(0.05, 0.15)
    h, w = hq.shape[:2]
    aspect = rng.uniform(0.6, 1.6)
    ph = min(h - 2, round(math.sqrt(frac * h * w / aspect)))
    pw = min(w - 2, round(frac * h * w / ph))
    src = cv2.resize(donor, (max(w, pw), max(h, ph)), interpolation=cv2.INTER_AREA)
    sy, sx = int(rng.integers(0, src.shape[0] - ph + 1)), int(rng.integers(0, src.shape[1] - pw + 1))
    y0, x0 = _detail_location(hq, ph, pw, rng)
    out = hq.copy()
    out[y0 : y0 + ph, x0 : x0 + pw] = src[sy : sy + ph, sx : sx + pw]
    return out, {"area": round(ph * pw / (h * w), 3)}


def remove(hq: np.ndarray, lq: np.ndarray, rng: np.random.Generator, donor: np.ndarray):
    """An object removed: an ellipse of 3-10 % of the area over detail, filled by cv2.inpaint (Telea)."""
    frac = rng.uniform(0.03, 0.10)
    h, w = hq.shape[:2]
    ry = round(math.sqrt(frac * h * w / math.pi * rng.uniform(0.7, 1.4)))
    rx = round(frac * h * w / math.pi / max(ry, 1))
    ry, rx = min(ry, h // 2 - 2), min(rx, w // 2 - 2)
    y0, x0 = _detail_location(hq, 2 * ry, 2 * rx, rng)
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (x0 + rx, y0 + ry), (rx, ry), 0, 0, 360, 255, -1)
    u8 = (np.clip(hq, 0, 1) * 255 + 0.5).astype(np.uint8)
    out = cv2.inpaint(u8, mask, 5, cv2.INPAINT_TELEA).astype(np.float32) / 255
    return out, {"area": round(float((mask > 0).mean()), 3)}


def left_in(hq: np.ndarray, lq: np.ndarray, rng: np.random.Generator, donor: np.ndarray):
    """The degradation is still there: the HQ is the LQ itself, or the LQ mildly denoised."""
    if rng.random() < 0.5:
        return lq.copy(), {"mode": "identity"}
    u8 = (np.clip(lq, 0, 1) * 255 + 0.5).astype(np.uint8)
    out = cv2.bilateralFilter(u8, 5, 25, 3).astype(np.float32) / 255
    return out, {"mode": "bilateral"}


def blur(hq: np.ndarray, lq: np.ndarray, rng: np.random.Generator, donor: np.ndarray):
    sigma = rng.uniform(2.5, 5.0) * max(hq.shape[:2]) / 512
    return cv2.GaussianBlur(hq, (0, 0), sigma), {"sigma": round(float(sigma), 2)}


def oversharpen(hq: np.ndarray, lq: np.ndarray, rng: np.random.Generator, donor: np.ndarray):
    """An unsharp mask far past taste: bright and dark halos along every edge."""
    amount, radius = rng.uniform(2.5, 5.0), rng.uniform(2.0, 4.0)
    soft = cv2.GaussianBlur(hq, (0, 0), radius)
    out = np.clip(hq + amount * (hq - soft), 0, 1).astype(np.float32)
    return out, {"amount": round(float(amount), 2), "radius": round(float(radius), 2)}


def jpeg(hq: np.ndarray, lq: np.ndarray, rng: np.random.Generator, donor: np.ndarray):
    q = int(rng.integers(5, 16))
    u8 = cv2.cvtColor((np.clip(hq, 0, 1) * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
    _ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, q])
    out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out.astype(np.float32) / 255, {"quality": q}


def different(hq: np.ndarray, lq: np.ndarray, rng: np.random.Generator, donor: np.ndarray):
    h, w = hq.shape[:2]
    return cv2.resize(donor, (w, h), interpolation=cv2.INTER_AREA), {}


CORRUPTIONS: dict[str, Corruption] = {
    "shift": shift,
    "crop": crop,
    "rotate": rotate,
    "scale": scale,
    "colour": colour,
    "paste": paste,
    "remove": remove,
    "left_in": left_in,
    "blur": blur,
    "oversharpen": oversharpen,
    "jpeg": jpeg,
    "different": different,
}


def corrupt(
    name: str, hq: np.ndarray, lq: np.ndarray, seed: int, donor: np.ndarray
) -> tuple[np.ndarray, dict]:
    """Apply corruption `name` with a reproducible draw; the donor is resized as needed."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    donor = donor.astype(np.float32)
    if donor.shape[:2] != hq.shape[:2] and name != "paste":
        donor = cv2.resize(donor, (hq.shape[1], hq.shape[0]), interpolation=cv2.INTER_AREA)
    out, params = CORRUPTIONS[name](
        hq.astype(np.float32), lq.astype(np.float32), np.random.default_rng(seed), donor
    )
    return np.ascontiguousarray(out, dtype=np.float32), params
