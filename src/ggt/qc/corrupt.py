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


_OPP = np.array([[1.0, 0.0, -1.0], [-0.5, 1.0, -0.5]], np.float32)  # log-gain axes: red-blue, green-magenta


def _lab(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(img, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab)


def _rgb(lab: np.ndarray) -> np.ndarray:
    return np.clip(cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_Lab2RGB), 0, 1)


def _blob(h: int, w: int, frac: float, rng: np.random.Generator) -> np.ndarray:
    """A soft-edged ellipse covering about `frac` of the frame: where a local colour error lands."""
    ry = math.sqrt(frac * h * w / math.pi * rng.uniform(0.6, 1.6))
    rx = frac * h * w / math.pi / ry
    ry, rx = min(ry, h / 2 - 2), min(rx, w / 2 - 2)
    cy, cx = rng.uniform(ry, h - ry), rng.uniform(rx, w - rx)
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (round(cx), round(cy)), (round(rx), round(ry)), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.15 * min(rx, ry)))[..., None]


COLOUR_MODES = ("gains", "tint", "hue", "saturation", "local")


def colour(hq: np.ndarray, lq: np.ndarray, rng: np.random.Generator, donor: np.ndarray):
    """A wrong colour, drawn from five kinds a generator produces, each at several magnitudes:

    - `gains`: a white-balance error, per-channel gains in linear light along a random direction of the
      red-blue / green-magenta plane, 8-30 % (log) at full strength, luminance kept;
    - `tint`: a uniform cast, the CIELAB a*b* of every pixel moved by 4-14 units in a random direction;
    - `hue`: every hue rotated by 8-35 degrees (CIELAB LCh);
    - `saturation`: chroma scaled by 0.45-0.75 or 1.35-1.9;
    - `local`: a soft region of 10-35 % of the frame re-coloured (hue by 25-90 degrees, or a 8-20 unit
      tint): a shirt or a car changing colour.

    Hue, saturation and a local hue change do nothing to a grey photo; there the draw falls back to gains
    or tint, so every corrupted pair really has a colour error.
    """
    lab = _lab(hq)
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    grey = float(np.percentile(chroma, 90)) < 6.0
    mode = str(rng.choice(COLOUR_MODES))
    if grey and mode in ("hue", "saturation", "local"):
        mode = str(rng.choice(["gains", "tint", "local"]))
    params: dict[str, Any] = {"mode": mode}
    ang = rng.uniform(0, 2 * math.pi)
    if mode == "gains":
        mag = rng.uniform(0.08, 0.30)
        logg = mag * (
            math.cos(ang) * _OPP[0] / np.linalg.norm(_OPP[0])
            + math.sin(ang) * _OPP[1] / np.linalg.norm(_OPP[1])
        )
        gains = np.exp(logg).astype(np.float32)
        gains /= float(gains @ np.float32([0.2126, 0.7152, 0.0722]))  # keep the luminance of grey
        lin = np.where(hq <= 0.04045, hq / 12.92, ((hq + 0.055) / 1.055) ** 2.4) * gains
        lin = np.clip(lin, 0, 1)
        out = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)
        params["gains"] = [round(float(g), 3) for g in gains]
    elif mode == "tint":
        mag = rng.uniform(4.0, 14.0)
        lab[..., 1] += mag * math.cos(ang)
        lab[..., 2] += mag * math.sin(ang)
        out = _rgb(lab)
        params["tint_ab"] = round(float(mag), 2)
    elif mode == "hue":
        deg = rng.uniform(8.0, 35.0) * rng.choice([-1, 1])
        c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        a, b = lab[..., 1].copy(), lab[..., 2].copy()
        lab[..., 1], lab[..., 2] = c * a - s * b, s * a + c * b
        out = _rgb(lab)
        params["hue_deg"] = round(float(deg), 1)
    elif mode == "saturation":
        f = rng.uniform(0.45, 0.75) if rng.random() < 0.5 else rng.uniform(1.35, 1.9)
        lab[..., 1:] *= f
        out = _rgb(lab)
        params["chroma_factor"] = round(float(f), 3)
    else:
        h, w = hq.shape[:2]
        mask = _blob(h, w, rng.uniform(0.10, 0.35), rng)
        new = lab.copy()
        if grey or rng.random() < 0.4:
            mag = rng.uniform(8.0, 20.0)
            new[..., 1] += mag * math.cos(ang)
            new[..., 2] += mag * math.sin(ang)
            params["tint_ab"] = round(float(mag), 2)
        else:
            deg = rng.uniform(25.0, 90.0) * rng.choice([-1, 1])
            c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
            new[..., 1], new[..., 2] = c * lab[..., 1] - s * lab[..., 2], s * lab[..., 1] + c * lab[..., 2]
            params["hue_deg"] = round(float(deg), 1)
        out = hq * (1 - mask) + _rgb(new) * mask
        params["area"] = round(float(mask.mean()), 3)
    return np.clip(out, 0, 1).astype(np.float32), params


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
