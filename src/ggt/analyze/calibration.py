"""Independent degradation renderers, used to test and benchmark the analyzer.

These are deliberately *not* `ggt.degrade`: an analyzer checked only against the simulator it was
tuned next to learns that simulator's rendering. Every degradation here is drawn from a family of
implementations (different kernels, encoders, depth maps, streak renderers) with widely varying
parameters, and each returns the severity it applied on its own [0, 1] scale, so tests can check
that a measure *ranks* severities correctly without sharing any constant with the simulator.

Each function takes a float32 RGB image in [0, 1] and a `numpy.random.Generator` and returns
`(image, severity)`; `scene(img, category, rng)` composes them into one of the scene categories.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageFilter

Rng = np.random.Generator


def _clip(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


# ---------------------------------------------------------------------------------------- noise


def add_noise(img: np.ndarray, rng: Rng, severity: float | None = None) -> tuple[np.ndarray, float]:
    """Gaussian (per-channel or luminance) or Poisson-Gaussian noise; sigma up to 0.15."""
    s = float(rng.uniform(0.05, 1.0)) if severity is None else severity
    sigma = 0.15 * s
    kind = rng.integers(3)
    if kind == 0:
        out = img + rng.normal(0, sigma, img.shape)
    elif kind == 1:
        out = img + rng.normal(0, sigma, img.shape[:2])[..., None]
    else:
        # Shot noise: variance grows with signal; scaled so mid-grey gets ~sigma.
        photons = 0.5 / max(sigma, 1e-4) ** 2
        out = rng.poisson(np.clip(img, 0, 1) * photons) / photons
    return _clip(out), s


# ----------------------------------------------------------------------------------------- blur


def _disk(radius: float) -> np.ndarray:
    r = max(radius, 0.5)
    n = math.ceil(r) * 2 + 1
    y, x = np.mgrid[:n, :n] - n // 2
    k = np.clip(r + 0.5 - np.hypot(x, y), 0, 1).astype(np.float32)
    return k / k.sum()


def add_blur(img: np.ndarray, rng: Rng, severity: float | None = None) -> tuple[np.ndarray, float]:
    """Gaussian (cv2 or PIL), defocus disk or box blur; sigma-equivalent up to 6 px."""
    s = float(rng.uniform(0.1, 1.0)) if severity is None else severity
    sigma = 0.4 + 5.6 * s
    kind = rng.integers(3)
    if kind == 0:
        out = cv2.GaussianBlur(img, (0, 0), sigma)
    elif kind == 1:
        # A disk of radius r has sigma ~ r / 2.
        out = cv2.filter2D(img, -1, _disk(2 * sigma), borderType=cv2.BORDER_REFLECT)
    else:
        pil = Image.fromarray(_u8(img)).filter(ImageFilter.GaussianBlur(radius=sigma))
        out = np.asarray(pil, dtype=np.float32) / 255
    return _clip(out), s


def motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    n = math.ceil(length) | 1
    k = np.zeros((n, n), np.float32)
    c = n // 2
    t = math.radians(angle_deg)
    for u in np.linspace(-length / 2, length / 2, 4 * n):
        k[round(c - u * math.sin(t)), round(c + u * math.cos(t))] += 1
    return k / k.sum()


def add_motion_blur(
    img: np.ndarray, rng: Rng, severity: float | None = None, angle: float | None = None
) -> tuple[np.ndarray, float]:
    """Linear camera-shake blur at any angle, 3 to 30 px long."""
    s = float(rng.uniform(0.1, 1.0)) if severity is None else severity
    ang = float(rng.uniform(0, 180)) if angle is None else angle
    k = motion_kernel(3 + 27 * s, ang)
    return _clip(cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT)), s


# ----------------------------------------------------------------------------------------- jpeg


def jpeg(img: np.ndarray, rng: Rng, severity: float | None = None) -> tuple[np.ndarray, float]:
    """JPEG through Pillow (random chroma subsampling) or OpenCV; quality 95 down to 5."""
    s = float(rng.uniform(0.05, 1.0)) if severity is None else severity
    q = round(95 - 90 * s)
    if rng.integers(2) == 0:
        buf = io.BytesIO()
        Image.fromarray(_u8(img)).save(buf, "JPEG", quality=q, subsampling=int(rng.integers(3)))
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float32) / 255
    else:
        _, enc = cv2.imencode(
            ".jpg", cv2.cvtColor(_u8(img), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q]
        )
        out = cv2.cvtColor(cv2.imdecode(enc, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    return out, s


# ----------------------------------------------------------------------------------------- haze


def _depth(shape: tuple[int, int], img: np.ndarray, rng: Rng) -> np.ndarray:
    h, w = shape
    kind = rng.integers(4)
    if kind == 0:  # far at the top (landscape)
        d = np.linspace(1.0, 0.2, h, dtype=np.float32)[:, None].repeat(w, 1)
    elif kind == 1:  # smooth random field
        small = rng.uniform(0, 1, (4, 4)).astype(np.float32)
        d = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        d = (d - d.min()) / (np.ptp(d) + 1e-6) * 0.8 + 0.2
    elif kind == 2:  # constant (uniform fog)
        d = np.full((h, w), 0.7, np.float32)
    else:  # brighter, smoother regions taken as farther (a crude monocular cue)
        g = cv2.GaussianBlur(img.mean(axis=2), (0, 0), max(h, w) / 20)
        d = 0.3 + 0.7 * (g - g.min()) / (np.ptp(g) + 1e-6)
    return d.astype(np.float32)


def add_haze(img: np.ndarray, rng: Rng, severity: float | None = None) -> tuple[np.ndarray, float]:
    """Koschmieder's model I = J t + A (1 - t), t = exp(-beta d), with varied depth maps and airlight."""
    s = float(rng.uniform(0.15, 1.0)) if severity is None else severity
    beta = 0.3 + 2.7 * s
    d = _depth(img.shape[:2], img, rng)
    t = np.exp(-beta * d)[..., None]
    a = float(rng.uniform(0.75, 1.0))
    tint = np.array([1.0, 1.0, 1.0]) + rng.uniform(-0.06, 0.06, 3)
    airlight = np.clip(a * tint, 0, 1).astype(np.float32)
    return _clip(img * t + airlight * (1 - t)), s


# ------------------------------------------------------------------------------------ low light


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(np.clip(x, 0, None), 1 / 2.4) - 0.055)


def low_light(img: np.ndarray, rng: Rng, severity: float | None = None) -> tuple[np.ndarray, float]:
    """Under-exposure in linear light (1 to 6 stops) or a gamma curve, with sensor noise."""
    s = float(rng.uniform(0.15, 1.0)) if severity is None else severity
    if rng.integers(2) == 0:
        stops = 1 + 5 * s
        out = _linear_to_srgb(_srgb_to_linear(img) * 2.0**-stops)
    else:
        out = np.power(img, 1.5 + 3.5 * s) * (1 - 0.5 * s)
    noise = 0.005 + 0.02 * s * float(rng.uniform(0, 1))
    out = out + rng.normal(0, noise, img.shape)
    return _clip(out), s


# ---------------------------------------------------------------------------------- rain, snow


def add_rain(img: np.ndarray, rng: Rng, severity: float | None = None) -> tuple[np.ndarray, float]:
    """Rain streaks: either motion-blurred random drops or anti-aliased drawn lines, one wind angle."""
    s = float(rng.uniform(0.15, 1.0)) if severity is None else severity
    h, w = img.shape[:2]
    angle = 90 + float(rng.uniform(-30, 30))
    length = max(h, w) * float(rng.uniform(0.03, 0.09))
    layer = np.zeros((h, w), np.float32)
    if rng.integers(2) == 0:
        drops = rng.uniform(0, 1, (h, w)) < 0.002 + 0.02 * s
        layer[drops] = 1.0
        layer = cv2.filter2D(layer, -1, motion_kernel(length, angle)) * length * 0.6
        layer = cv2.GaussianBlur(layer, (0, 0), 0.6)
    else:
        n = int((0.0005 + 0.004 * s) * h * w / (length / 10))
        t = math.radians(angle)
        for _ in range(n):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            ln = length * rng.uniform(0.6, 1.4)
            p2 = (int(x + ln * math.cos(t)), int(y + ln * math.sin(t)))
            cv2.line(layer, (int(x), int(y)), p2, float(rng.uniform(0.5, 1.0)), 1, cv2.LINE_AA)
    strength = 0.35 + 0.5 * s
    out = img + strength * np.clip(layer, 0, 1)[..., None] * (1 - img * 0.3)
    # Rain also veils the scene slightly.
    out = out * (1 - 0.1 * s) + 0.1 * s * 0.8
    return _clip(out), s


def add_snow(img: np.ndarray, rng: Rng, severity: float | None = None) -> tuple[np.ndarray, float]:
    """Snowflakes: white discs of several sizes, some blurred, plus a light veil."""
    s = float(rng.uniform(0.15, 1.0)) if severity is None else severity
    h, w = img.shape[:2]
    layer = np.zeros((h, w), np.float32)
    scale = max(h, w) / 512
    n = int((0.0004 + 0.004 * s) * h * w / max(scale, 1) ** 2)
    for _ in range(n):
        r = max(1, round(rng.gamma(1.5, 1.0) * scale))
        cv2.circle(
            layer,
            (int(rng.uniform(0, w)), int(rng.uniform(0, h))),
            r,
            float(rng.uniform(0.7, 1)),
            -1,
            cv2.LINE_AA,
        )
    layer = cv2.GaussianBlur(layer, (0, 0), float(rng.uniform(0.5, 1.2)) * scale)
    out = img * (1 - 0.15 * s) + 0.15 * s * 0.85
    out = out + (1 - out) * np.clip(layer * 1.3, 0, 1)[..., None]
    return _clip(out), s


# ---------------------------------------------------------------------------------- old photos


def sepia(img: np.ndarray, rng: Rng, severity: float | None = None) -> tuple[np.ndarray, float]:
    """Sepia toning by the classic matrix or by tinting luminance with a random warm tone."""
    s = float(rng.uniform(0.3, 1.0)) if severity is None else severity
    if rng.integers(2) == 0:
        m = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)
        toned = img @ m.T
    else:
        lum = img @ np.array([0.3, 0.59, 0.11], np.float32)
        tone = np.array([1.0, float(rng.uniform(0.75, 0.9)), float(rng.uniform(0.5, 0.7))], np.float32)
        toned = lum[..., None] * tone * 1.1
    return _clip(img * (1 - s) + toned * s), s


def fade(img: np.ndarray, rng: Rng, severity: float | None = None) -> tuple[np.ndarray, float]:
    """Faded print: contrast compressed towards a lifted, slightly warm paper tone, desaturated."""
    s = float(rng.uniform(0.2, 1.0)) if severity is None else severity
    grey = img.mean(axis=2, keepdims=True)
    out = img * (1 - 0.6 * s) + grey * 0.6 * s
    paper = np.array([0.85, 0.8, 0.7], np.float32)
    out = out * (1 - 0.45 * s) + paper * 0.45 * s
    return _clip(out), s


def scratches(img: np.ndarray, rng: Rng, severity: float | None = None) -> tuple[np.ndarray, float]:
    """Film scratches: long thin bright or dark lines, mostly near vertical, some wavering."""
    s = float(rng.uniform(0.2, 1.0)) if severity is None else severity
    h, w = img.shape[:2]
    out = img.copy()
    for _ in range(int(2 + 14 * s)):
        x = rng.uniform(0, w)
        y0, y1 = rng.uniform(0, 0.4 * h), rng.uniform(0.6 * h, h)
        dx = rng.uniform(-0.08, 0.08) * h
        val = (float(rng.uniform(0.85, 1.0)),) * 3 if rng.integers(3) else (float(rng.uniform(0, 0.15)),) * 3
        pts = np.array([[x + dx * t + rng.normal(0, 0.5), y0 + (y1 - y0) * t] for t in np.linspace(0, 1, 12)])
        cv2.polylines(out, [pts.astype(np.int32)], False, val, 1, cv2.LINE_AA)
    return _clip(out), s


def dust(img: np.ndarray, rng: Rng, severity: float | None = None) -> tuple[np.ndarray, float]:
    """Dust and specks: small dark and bright blots and hairs."""
    s = float(rng.uniform(0.2, 1.0)) if severity is None else severity
    h, w = img.shape[:2]
    out = img.copy()
    for _ in range(int((20 + 200 * s) * h * w / 512**2)):
        val = (float(rng.uniform(0.0, 0.2)),) * 3 if rng.integers(2) else (float(rng.uniform(0.85, 1)),) * 3
        cv2.circle(out, (int(rng.uniform(0, w)), int(rng.uniform(0, h))), int(rng.integers(1, 3)), val, -1)
    return _clip(out), s


def film_grain(img: np.ndarray, rng: Rng, severity: float | None = None) -> tuple[np.ndarray, float]:
    """Luminance grain with a little spatial correlation (grain clumps are larger than a pixel)."""
    s = float(rng.uniform(0.2, 1.0)) if severity is None else severity
    g = cv2.GaussianBlur(rng.normal(0, 1, img.shape[:2]).astype(np.float32), (0, 0), 0.7)
    return _clip(img + (0.02 + 0.08 * s) * g[..., None] / g.std()), s


def resize_down(img: np.ndarray, rng: Rng, severity: float | None = None) -> tuple[np.ndarray, float]:
    """Downscale by 1.5x to 4x with a random interpolation (social networks resize on upload)."""
    s = float(rng.uniform(0.1, 1.0)) if severity is None else severity
    f = 1 / (1.5 + 2.5 * s)
    h, w = img.shape[:2]
    interp = [cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC][int(rng.integers(3))]
    return cv2.resize(img, (max(16, round(w * f)), max(16, round(h * f))), interpolation=interp), s


def sharpen(img: np.ndarray, rng: Rng, severity: float | None = None) -> tuple[np.ndarray, float]:
    """Unsharp mask as phone cameras and apps apply it."""
    s = float(rng.uniform(0.1, 1.0)) if severity is None else severity
    b = cv2.GaussianBlur(img, (0, 0), 1.5)
    return _clip(img + (0.3 + 1.5 * s) * (img - b)), s


DEGRADATIONS: dict[str, Callable[..., tuple[np.ndarray, float]]] = {
    "noise": add_noise,
    "blur": add_blur,
    "motion_blur": add_motion_blur,
    "jpeg": jpeg,
    "haze": add_haze,
    "low_light": low_light,
    "rain": add_rain,
    "snow": add_snow,
    "sepia": sepia,
    "fading": fade,
    "scratches": scratches,
    "dust": dust,
    "film_grain": film_grain,
}


def scene(img: np.ndarray, category: str, rng: Rng) -> tuple[np.ndarray, dict[str, float]]:
    """Render one scene category with its typical companions, returning the applied severities."""
    applied: dict[str, float] = {}

    def do(name: str, fn: Callable[..., tuple[np.ndarray, float]], p: float = 1.0) -> None:
        nonlocal img
        if rng.uniform() < p:
            img, applied[name] = fn(img, rng)

    if category == "clean":
        return img, applied
    if category == "social_media":
        do("low_resolution", resize_down, 0.6)
        do("oversharpening", sharpen, 0.3)
        do("noise", add_noise, 0.3)
        do("jpeg", jpeg)
        if applied["jpeg"] < 0.3:  # social media compress hard enough to be seen
            img, applied["jpeg"] = jpeg(img, rng, float(rng.uniform(0.3, 1.0)))
    elif category == "old_photo":
        do("blur", add_blur, 0.4)
        if rng.uniform() < 0.5:
            do("sepia", sepia)
            do("fading", fade, 0.5)
        else:
            do("fading", fade)
        do("scratches", scratches, 0.6)
        do("dust", dust, 0.6)
        do("film_grain", film_grain, 0.6)
    elif category == "rain":
        do("blur", add_blur, 0.2)  # a soft background; the streaks themselves stay crisp
        do("rain", add_rain)
    elif category == "snow":
        do("snow", add_snow)
    elif category == "haze":
        do("haze", add_haze)
        do("noise", add_noise, 0.2)
    elif category == "low_light":
        do("low_light", low_light)
    else:
        raise ValueError(f"unknown category {category!r}")
    return img, applied
