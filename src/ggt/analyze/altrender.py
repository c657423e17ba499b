"""A third family of degradation renderers, Pillow-first, used only to widen the fit's training material.

`ggt.degrade` (the simulator) and `ggt.analyze.calibration` (OpenCV/numpy renderers) already feed the
fit; a model that has seen two renderers per degradation can still learn their shared habits (both
draw rain with straight streaks, both fog with a grey airlight). These renderers use other building
blocks on purpose: Pillow's encoders (JPEG with its own subsampling, WebP), `ImageFilter` kernels,
`ImageEnhance`, `ImageOps.colorize` toning, `ImageDraw` strokes and ellipses, scikit-image's
`random_noise` models (Gaussian, Poisson, speckle, salt-and-pepper), and parameter ranges of their own.

Each `*_scene(img, rng)` takes a float32 RGB image in [0, 1] and returns `(image, category)`, where the
category is `None` when the draw was too mild to call (those samples are left out of the category fit).
`clean_variant` returns what a clean photo from a camera or an editor plausibly looks like.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

Rng = np.random.Generator


def _pil(img: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))


def _arr(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def _encode(im: Image.Image, fmt: str, q: int, rng: Rng) -> Image.Image:
    buf = io.BytesIO()
    if fmt == "WEBP":
        im.save(buf, "WEBP", quality=q, method=int(rng.integers(0, 7)))
    else:
        subsampling, optimize = int(rng.integers(3)), bool(rng.uniform() < 0.5)
        try:
            im.save(buf, "JPEG", quality=q, subsampling=subsampling, optimize=optimize)
        except OSError:
            # Pillow gives an optimised save a buffer of one byte per pixel, which a noisy 4:4:4 frame
            # at high quality outgrows ("broken data stream"). Huffman optimisation changes no pixel,
            # so the plain save decodes to the same image.
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=q, subsampling=subsampling)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _skimage_noise(img: np.ndarray, rng: Rng, strength: float) -> np.ndarray:
    from skimage.util import random_noise

    mode = ["gaussian", "poisson", "speckle", "s&p"][int(rng.integers(4))]
    seed = int(rng.integers(2**31))
    if mode == "gaussian":
        return random_noise(img, mode=mode, var=(0.12 * strength) ** 2, rng=seed).astype(np.float32)
    if mode == "speckle":
        return random_noise(img, mode=mode, var=(0.3 * strength) ** 2, rng=seed).astype(np.float32)
    if mode == "poisson":  # photon counts at a reduced exposure: fewer photons, more noise
        scale = 10 ** (3.5 - 2.5 * strength)
        return np.clip(rng.poisson(img * scale) / scale, 0, 1).astype(np.float32)
    return random_noise(img, mode="s&p", amount=0.002 + 0.05 * strength, rng=seed).astype(np.float32)


def social_scene(img: np.ndarray, rng: Rng) -> tuple[np.ndarray, str | None]:
    """A re-shared photo: Pillow resize (various filters), noise, sharpening, JPEG or WebP rounds."""
    im = _pil(img)
    w, h = im.size
    strong = False
    if rng.uniform() < 0.6:
        f = float(rng.uniform(0.25, 0.8))
        filt = [Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS,
                Image.Resampling.BOX, Image.Resampling.NEAREST][int(rng.integers(5))]  # fmt: skip
        im = im.resize((max(48, round(w * f)), max(48, round(h * f))), filt)
        strong = strong or f < 0.45
        if rng.uniform() < 0.5:  # viewed back at the original size
            im = im.resize((w, h), Image.Resampling.BICUBIC)
    if rng.uniform() < 0.35:
        s = float(rng.uniform(0.2, 1.0))
        im = _pil(_skimage_noise(_arr(im), rng, s))
        strong = strong or s > 0.35
    if rng.uniform() < 0.3:
        im = im.filter(
            ImageFilter.UnsharpMask(radius=float(rng.uniform(1, 3)), percent=int(rng.integers(80, 300)))
        )
    for _ in range(int(rng.integers(1, 4))):
        q = int(rng.integers(5, 60))
        im = _encode(im, "WEBP" if rng.uniform() < 0.35 else "JPEG", q, rng)
        strong = strong or q < 40
    return _arr(im), ("social_media" if strong else None)


def blur_scene(img: np.ndarray, rng: Rng) -> tuple[np.ndarray, str | None]:
    """Out of focus or shaken: Pillow Gaussian or box blur, or a rank (median) filter, then a mild JPEG."""
    im = _pil(img)
    r = float(rng.uniform(0.3, 5.0))
    kind = int(rng.integers(3))
    if kind == 0:
        im = im.filter(ImageFilter.GaussianBlur(r))
    elif kind == 1:
        im = im.filter(ImageFilter.BoxBlur(r))
    else:
        im = im.filter(ImageFilter.MedianFilter(2 * max(1, round(r)) + 1))
    im = _encode(im, "JPEG", int(rng.integers(75, 96)), rng)
    return _arr(im), ("social_media" if r > 1.6 else ("clean" if r < 0.6 and kind != 2 else None))


def old_photo_scene(img: np.ndarray, rng: Rng) -> tuple[np.ndarray, str | None]:
    """A print: `ImageOps.colorize` toning or desaturation, contrast loss, grain, drawn spots and hairlines."""
    im = _pil(img)
    grey = ImageOps.grayscale(im)
    if rng.uniform() < 0.65:
        dark = tuple(int(v) for v in rng.integers([20, 10, 0], [90, 60, 40]))
        light = tuple(int(v) for v in rng.integers([225, 200, 150], [256, 245, 215]))
        toned = ImageOps.colorize(grey, black=dark, white=light)  # type: ignore[arg-type]
    else:
        toned = grey.convert("RGB")
    im = Image.blend(im, toned, float(rng.uniform(0.6, 1.0)))
    im = ImageEnhance.Contrast(im).enhance(float(rng.uniform(0.45, 0.85)))
    im = ImageEnhance.Brightness(im).enhance(float(rng.uniform(0.9, 1.15)))
    if rng.uniform() < 0.5:
        im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.5))))
    out = _arr(im)
    if rng.uniform() < 0.7:
        g = rng.normal(0, float(rng.uniform(0.015, 0.06)), out.shape[:2]).astype(np.float32)
        out = out + g[..., None]
    im = _pil(out)
    draw = ImageDraw.Draw(im)
    w, h = im.size
    for _ in range(int(rng.integers(0, 120))):  # dust: small dark or light blots
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), float(rng.uniform(0.5, 2.5))
        c = int(rng.choice([rng.integers(0, 60), rng.integers(200, 256)]))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(c, c, c))
    for _ in range(int(rng.integers(0, 8))):  # scratches: long, near-vertical hairlines
        x = rng.uniform(0, w)
        dx = rng.uniform(-0.1, 0.1) * h
        c = int(rng.integers(180, 256))
        draw.line([(x, 0), (x + dx, h)], fill=(c, c, c), width=1)
    return _arr(im), "old_photo"


def rain_scene(img: np.ndarray, rng: Rng) -> tuple[np.ndarray, str | None]:
    """Rain drawn with `ImageDraw` strokes of varied width and length on a layer blurred by Pillow,
    screened over a slightly darkened, veiled scene."""
    h, w = img.shape[:2]
    layer = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(layer)
    angle = math.radians(90 + float(rng.uniform(-35, 35)))
    s = float(rng.uniform(0.2, 1.0))
    n = int((200 + 2500 * s) * (h * w) / 512**2)
    base_len = max(h, w) * float(rng.uniform(0.02, 0.1))
    for _ in range(n):
        x, y = rng.uniform(-0.1 * w, w), rng.uniform(-0.1 * h, h)
        ln = base_len * float(rng.uniform(0.5, 1.5))
        v = int(rng.integers(90, 256))
        draw.line(
            [(x, y), (x + ln * math.cos(angle), y + ln * math.sin(angle))],
            fill=v,
            width=int(rng.integers(1, 3)),
        )
    layer = layer.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    rl = np.asarray(layer, dtype=np.float32)[..., None] / 255 * float(rng.uniform(0.4, 0.9))
    base = img * float(rng.uniform(0.75, 1.0)) + float(rng.uniform(0.0, 0.12))
    out = 1 - (1 - base) * (1 - rl)  # screen blend
    return np.clip(out, 0, 1).astype(np.float32), ("rain" if s > 0.3 else None)


def snow_scene(img: np.ndarray, rng: Rng) -> tuple[np.ndarray, str | None]:
    """Snow drawn with `ImageDraw` ellipses in two depth layers (small sharp, large soft), over a veil."""
    h, w = img.shape[:2]
    s = float(rng.uniform(0.2, 1.0))
    out = img * (1 - 0.2 * s) + 0.2 * s * float(rng.uniform(0.75, 0.95))
    for depth in range(2):
        layer = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(layer)
        n = int((300 + 2000 * s) * (h * w) / 512**2 / (1 + 3 * depth))
        rmax = (1.5 + 3.5 * depth) * max(1.0, max(h, w) / 700)
        for _ in range(n):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            rx = float(rng.uniform(0.6, rmax))
            ry = rx * float(rng.uniform(0.6, 1.4))
            draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=int(rng.integers(170, 256)))
        layer = layer.filter(ImageFilter.GaussianBlur(0.4 + 1.2 * depth * float(rng.uniform(0.5, 1.0))))
        a = np.asarray(layer, dtype=np.float32)[..., None] / 255
        out = out * (1 - a) + a * float(rng.uniform(0.9, 1.0))
    return np.clip(out, 0, 1).astype(np.float32), ("snow" if s > 0.3 else None)


def haze_scene(img: np.ndarray, rng: Rng) -> tuple[np.ndarray, str | None]:
    """Fog as a blend towards a bright, slightly coloured airlight, stronger far away (a radial or
    horizon depth), with Pillow's contrast and colour enhancers taking the rest of the contrast."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.uniform() < 0.5:  # horizon at a random height: nearer at the bottom
        horizon = float(rng.uniform(0.2, 0.6)) * h
        d = np.clip(1 - (yy - horizon) / (h - horizon + 1), 0.3, 1.0)
    else:  # vanishing point: farther towards a random point
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / math.hypot(h, w)
        d = np.clip(1 - 1.5 * r, 0.25, 1.0)
    s = float(rng.uniform(0.15, 1.0))
    veil = np.clip(0.25 + 0.7 * s, 0, 0.95) * d[..., None]
    a = np.clip(float(rng.uniform(0.7, 0.98)) + rng.uniform(-0.04, 0.04, 3), 0, 1).astype(np.float32)
    out = img * (1 - veil) + a * veil
    im = ImageEnhance.Color(_pil(out)).enhance(float(rng.uniform(0.6, 1.0)))
    im = ImageEnhance.Contrast(im).enhance(float(rng.uniform(0.8, 1.0)))
    return _arr(im), ("haze" if s > 0.3 else None)


def low_light_scene(img: np.ndarray, rng: Rng) -> tuple[np.ndarray, str | None]:
    """A dark capture: Pillow brightness scaling or a steep tone curve, scikit-image noise, often a
    warm (tungsten) or cold (sodium, LED) white balance and a JPEG save."""
    im = _pil(img)
    f = float(rng.uniform(0.04, 0.45))
    if rng.uniform() < 0.5:
        im = ImageEnhance.Brightness(im).enhance(f)
    else:
        g = 1.0 / f**0.6
        lut = [round(255 * (i / 255) ** g * (0.4 + f)) for i in range(256)]
        im = im.point(lut * 3)
    out = _arr(im)
    if rng.uniform() < 0.6:
        out = (
            out * np.array([1.0, 1.0, 1.0], np.float32) + rng.uniform(-0.08, 0.08, 3).astype(np.float32) * out
        )
    if rng.uniform() < 0.8:
        out = _skimage_noise(np.clip(out, 0, 1), rng, float(rng.uniform(0.05, 0.4)))
    im = _encode(_pil(out), "JPEG", int(rng.integers(60, 95)), rng)
    return _arr(im), ("low_light" if f < 0.3 else None)


def clean_variant(img: np.ndarray, rng: Rng) -> np.ndarray:
    """What clean photos carry: a high-quality JPEG or WebP from Pillow, an editor's mild sharpening,
    a Lanczos resize, a mild tone or colour edit."""
    im = _pil(img)
    kind = int(rng.integers(4))
    if kind == 0:
        im = _encode(im, "WEBP" if rng.uniform() < 0.4 else "JPEG", int(rng.integers(88, 99)), rng)
    elif kind == 1:
        im = im.filter(
            ImageFilter.UnsharpMask(radius=float(rng.uniform(0.5, 1.5)), percent=int(rng.integers(30, 90)))
        )
    elif kind == 2:
        w, h = im.size
        f = float(rng.uniform(0.5, 0.9))
        im = im.resize((max(64, round(w * f)), max(64, round(h * f))), Image.Resampling.LANCZOS)
    else:
        im = ImageEnhance.Contrast(im).enhance(float(rng.uniform(0.9, 1.25)))
        im = ImageEnhance.Color(im).enhance(float(rng.uniform(0.7, 1.3)))
    return _arr(im)


SCENES: dict[str, Callable[[np.ndarray, Rng], tuple[np.ndarray, str | None]]] = {
    "social_media": social_scene,
    "blur": blur_scene,
    "old_photo": old_photo_scene,
    "rain": rain_scene,
    "snow": snow_scene,
    "haze": haze_scene,
    "low_light": low_light_scene,
}
