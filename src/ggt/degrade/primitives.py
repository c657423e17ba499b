"""Capture and transmission primitives: noise, blur, resampling, lossy codecs, sharpening."""

from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from ggt.degrade import severity as sv
from ggt.degrade.base import (
    Primitive,
    child_rng,
    filter_image,
    gaussian_filter,
    kernel_sigma,
    linear_to_srgb,
    odd,
    register,
    srgb_to_linear,
)

Stats = dict[str, float]

# --- noise -------------------------------------------------------------------------------------------


def _noise_field(rng: np.random.Generator, shape: tuple[int, int, int], gray: bool) -> np.ndarray:
    h, w, _ = shape
    if gray:
        # Luminance-only noise (what camera pipelines leave after chroma denoising) is one field
        # repeated on all channels.
        return np.repeat(rng.standard_normal((h, w, 1), dtype=np.float32), 3, axis=2)
    return rng.standard_normal((h, w, 3), dtype=np.float32)


@register
class GaussianNoise(Primitive):
    """Additive white Gaussian noise, ``out = x + sigma * n`` (then clipped to [0, 1]).

    ``sigma`` is in [0, 1] units (sigma 10/255 ~ 0.039). Severity ``noise = sigma / (50/255)``.
    """

    type = "gaussian_noise"
    sigma: float = Field(ge=0.0, le=1.0)
    gray: bool = False
    seed: int | None = None

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        assert self.seed is not None
        n = _noise_field(child_rng(self.seed), img.shape, self.gray)
        return img + np.float32(self.sigma) * n, {}, {"noise": sv.noise_severity(self.sigma)}


@register
class PoissonGaussianNoise(Primitive):
    """Signal-dependent sensor noise: variance ``a * x + b**2`` (Foi et al. 2008 heteroscedastic model).

    With ``linear=True`` the model applies to linear light (sRGB decoded, noised, re-encoded), as a raw
    sensor sees it: shadows get relatively more noise after the tone curve. The shot term uses the normal
    approximation of Poisson noise, accurate from a handful of photo-electrons up. Severity ``noise`` is
    the standard deviation of the noise actually added, measured in the sRGB output, / (50/255).
    """

    type = "poisson_gaussian_noise"
    a: float = Field(ge=0.0, le=1.0, description="shot-noise gain: variance per unit signal")
    b: float = Field(default=0.0, ge=0.0, le=1.0, description="read-noise sigma")
    linear: bool = True
    gray: bool = False
    seed: int | None = None

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        assert self.seed is not None
        signal = srgb_to_linear(img) if self.linear else img
        std = np.sqrt(np.float32(self.a) * signal + np.float32(self.b) ** 2)
        noisy = signal + std * _noise_field(child_rng(self.seed), img.shape, self.gray)
        out = linear_to_srgb(noisy) if self.linear else np.clip(noisy, 0.0, 1.0)
        added = float(np.std(out - img))
        return out, {"added_std": added}, {"noise": sv.noise_severity(added)}


# --- blur --------------------------------------------------------------------------------------------


def _mahalanobis_grid(size: int, sigma_x: float, sigma_y: float, angle_deg: float) -> np.ndarray:
    theta = math.radians(angle_deg)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    cov = rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T
    inv = np.linalg.inv(cov)
    r = (size - 1) / 2.0
    ys, xs = np.mgrid[-r : r + 1, -r : r + 1]
    return inv[0, 0] * xs * xs + 2 * inv[0, 1] * xs * ys + inv[1, 1] * ys * ys


def blur_kernel(
    kind: str, sigma_x: float, sigma_y: float, angle_deg: float, beta: float, size: int
) -> np.ndarray:
    """BasicSR's kernel family: Gaussian, generalized Gaussian exp(-d^beta / 2), plateau 1/(d^beta + 1)."""
    d2 = _mahalanobis_grid(size, sigma_x, sigma_y, angle_deg)
    if kind == "gaussian":
        k = np.exp(-0.5 * d2)
    elif kind == "generalized":
        k = np.exp(-0.5 * np.power(d2, beta))
    else:
        k = 1.0 / (np.power(d2, beta) + 1.0)
    return (k / k.sum()).astype(np.float32)


@register
class GaussianBlur(Primitive):
    """Gaussian-family blur (lens softness, missed focus, resampling in a camera pipeline).

    Isotropic by default; ``sigma_y`` and ``angle_deg`` make it anisotropic; ``kind`` selects BasicSR's
    generalized Gaussian (``beta`` shape, 0.5-4) or plateau (``beta`` 1-2) kernels. ``kernel_size``
    defaults to 6 sigma + 1. Severity ``blur = sigma_eq / 4``, sigma_eq the kernel's measured RMS radius.
    """

    type = "gaussian_blur"
    sigma: float = Field(gt=0.0, le=50.0)
    sigma_y: float | None = Field(default=None, gt=0.0, le=50.0)
    angle_deg: float = 0.0
    kind: Literal["gaussian", "generalized", "plateau"] = "gaussian"
    beta: float = Field(default=1.0, gt=0.0, le=8.0)
    kernel_size: int | None = Field(default=None, ge=3, le=301)

    @model_validator(mode="after")
    def _odd_kernel(self) -> GaussianBlur:
        if self.kernel_size is not None and self.kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd")
        return self

    def _resolve_more(self, image_shape: tuple[int, ...]) -> dict[str, object]:
        update: dict[str, object] = {}
        if self.sigma_y is None:
            update["sigma_y"] = self.sigma
        if self.kernel_size is None:
            update["kernel_size"] = min(301, odd(6 * max(self.sigma, self.sigma_y or self.sigma) + 1))
        return update

    def kernel(self) -> np.ndarray:
        assert self.sigma_y is not None and self.kernel_size is not None
        return blur_kernel(self.kind, self.sigma, self.sigma_y, self.angle_deg, self.beta, self.kernel_size)

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        k = self.kernel()
        s = kernel_sigma(k)
        return filter_image(img, k), {"sigma_eq": s}, {"blur": sv.blur_severity(s)}


def motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A straight, anti-aliased line of `length` pixels through the kernel centre (uniform exposure)."""
    size = odd(length + 2)
    ss = 8  # supersampling makes sub-pixel lengths and arbitrary angles render smoothly
    canvas = np.zeros((size * ss, size * ss), np.float32)
    c = size * ss / 2.0
    dx = math.cos(math.radians(angle_deg)) * length * ss / 2.0
    dy = -math.sin(math.radians(angle_deg)) * length * ss / 2.0
    shift = 4  # cv2 draws integer coordinates; 4 fractional bits keep the centre exact
    p0 = (round((c - dx) * 2**shift), round((c - dy) * 2**shift))
    p1 = (round((c + dx) * 2**shift), round((c + dy) * 2**shift))
    cv2.line(canvas, p0, p1, 1.0, thickness=ss, lineType=cv2.LINE_AA, shift=shift)
    k = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    return k / k.sum()


@register
class MotionBlur(Primitive):
    """Linear camera/subject motion: a line kernel of ``length`` px at ``angle_deg`` (0 = horizontal,
    counter-clockwise). Severity ``motion_blur = length / 30``."""

    type = "motion_blur"
    length: float = Field(ge=1.0, le=200.0)
    angle_deg: float = 0.0

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        k = motion_kernel(self.length, self.angle_deg)
        return filter_image(img, k), {}, {"motion_blur": sv.motion_severity(self.length)}


def disk_kernel(radius: float) -> np.ndarray:
    """Uniform disk (an out-of-focus point through a round aperture), area-weighted at the edge."""
    size = odd(2 * radius + 1)
    ss = 8
    coords = (np.arange(size * ss) + 0.5) / ss - size / 2.0
    inside = (coords[None, :] ** 2 + coords[:, None] ** 2 <= radius**2).astype(np.float32)
    k = inside.reshape(size, ss, size, ss).mean(axis=(1, 3))
    return k / k.sum()


@register
class DefocusBlur(Primitive):
    """Defocus through a round aperture: disk kernel of ``radius`` px. Severity ``blur = (radius/2)/4``
    (a disk's RMS radius per axis is r/2)."""

    type = "defocus_blur"
    radius: float = Field(ge=0.5, le=100.0)

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        k = disk_kernel(self.radius)
        return filter_image(img, k), {}, {"blur": sv.blur_severity(self.radius / 2.0)}


def sinc_kernel(cutoff: float, size: int) -> np.ndarray:
    """BasicSR's circular low-pass (2-D sinc) kernel: ringing and overshoot like a sharp resampler."""
    from scipy import special  # scipy.special costs ~0.2 s to import; only sinc needs it

    r = (size - 1) / 2.0
    ys, xs = np.mgrid[-r : r + 1, -r : r + 1]
    rad = np.hypot(xs, ys)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = cutoff * special.j1(cutoff * rad) / (2 * np.pi * rad)
    k[size // 2, size // 2] = cutoff**2 / (4 * np.pi)
    return (k / k.sum()).astype(np.float32)


@register
class SincBlur(Primitive):
    """Ideal circular low-pass with cutoff ``cutoff`` rad/px (pi = none): blur plus ringing halos.

    Severity ``blur = (1.1774 / cutoff) / 4``: the Gaussian with the same half-power frequency.
    """

    type = "sinc_blur"
    cutoff: float = Field(gt=0.1, le=math.pi)
    kernel_size: int = Field(default=21, ge=3, le=63)

    @model_validator(mode="after")
    def _odd_kernel(self) -> SincBlur:
        if self.kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd")
        return self

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        k = sinc_kernel(self.cutoff, self.kernel_size)
        sigma = math.sqrt(2 * math.log(2)) / self.cutoff
        return filter_image(img, k), {"sigma_eq": sigma}, {"blur": sv.blur_severity(sigma)}


# --- resampling --------------------------------------------------------------------------------------

Interpolation = Literal["nearest", "bilinear", "bicubic", "area", "lanczos"]
_CV_INTERP = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}


def _resize(img: np.ndarray, h: int, w: int, interpolation: str) -> np.ndarray:
    if (h, w) == img.shape[:2]:
        return img
    return cv2.resize(img, (w, h), interpolation=_CV_INTERP[interpolation])


@register
class Resize(Primitive):
    """Rescale by ``scale`` (both axes; output size rounded). OpenCV's bilinear and bicubic do not
    prefilter when shrinking, so they alias like many real apps do; ``area`` is the clean shrink.

    Changes the image size; the pipeline derives ``low_resolution`` from the smallest size reached.
    """

    type = "resize"
    scale: float = Field(gt=0.0, le=8.0)
    interpolation: Interpolation = "bicubic"

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        h, w = img.shape[:2]
        nh, nw = max(1, round(h * self.scale)), max(1, round(w * self.scale))
        return _resize(img, nh, nw, self.interpolation), {}, {}


@register
class ResizeTo(Primitive):
    """Resample to an exact ``height`` x ``width`` (how presets return to the input size)."""

    type = "resize_to"
    height: int = Field(ge=1, le=65536)
    width: int = Field(ge=1, le=65536)
    interpolation: Interpolation = "bicubic"

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        return _resize(img, self.height, self.width, self.interpolation), {}, {}


# --- codecs ------------------------------------------------------------------------------------------

_SAMPLING = {
    "444": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    "422": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
    "420": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
}


def _to_bgr8(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor((np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)


def _codec_round(img: np.ndarray, ext: str, params: list[int]) -> tuple[np.ndarray, int]:
    ok, buf = cv2.imencode(ext, _to_bgr8(img), params)
    if not ok:  # pragma: no cover - libjpeg/libwebp do not fail on valid 8-bit RGB
        raise RuntimeError(f"{ext} encoding failed")
    dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return cv2.cvtColor(dec, cv2.COLOR_BGR2RGB).astype(np.float32) * np.float32(1 / 255), int(buf.size)


def _bits_per_pixel(nbytes: list[int], img: np.ndarray) -> float:
    return 8.0 * nbytes[-1] / (img.shape[0] * img.shape[1]) if nbytes else 0.0


@register
class Jpeg(Primitive):
    """A chain of JPEG encode/decode rounds with the given qualities (libjpeg through OpenCV).

    Re-sharing re-encodes at each hop; the chroma ``subsampling`` 4:2:0 is what phones and platforms
    use. Severity ``jpeg = (95 - min(qualities)) / 85``: the worst round dominates the artefacts.
    """

    type = "jpeg"
    qualities: tuple[int, ...] = Field(min_length=1, max_length=16)
    subsampling: Literal["444", "422", "420"] = "420"

    @model_validator(mode="after")
    def _quality_range(self) -> Jpeg:
        if any(not 1 <= q <= 100 for q in self.qualities):
            raise ValueError("JPEG qualities must be in 1..100")
        return self

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        sizes = []
        for q in self.qualities:
            img, n = _codec_round(
                img,
                ".jpg",
                [cv2.IMWRITE_JPEG_QUALITY, q, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, _SAMPLING[self.subsampling]],
            )
            sizes.append(n)
        stats = {"last_bits_per_pixel": _bits_per_pixel(sizes, img)}
        return img, stats, {"jpeg": sv.jpeg_severity(min(self.qualities))}


@register
class Webp(Primitive):
    """A chain of lossy WebP rounds (libwebp through OpenCV). Severity as JPEG: ``(95 - min q) / 85``."""

    type = "webp"
    qualities: tuple[int, ...] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _quality_range(self) -> Webp:
        if any(not 1 <= q <= 100 for q in self.qualities):
            raise ValueError("WebP qualities must be in 1..100")
        return self

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        sizes = []
        for q in self.qualities:
            img, n = _codec_round(img, ".webp", [cv2.IMWRITE_WEBP_QUALITY, q])
            sizes.append(n)
        stats = {"last_bits_per_pixel": _bits_per_pixel(sizes, img)}
        return img, stats, {"jpeg": sv.jpeg_severity(min(self.qualities))}


# --- sharpening --------------------------------------------------------------------------------------


@register
class Sharpen(Primitive):
    """Unsharp mask ``x + amount * (x - gaussian(x, radius))`` as phone and platform pipelines apply it.

    Overshoot past [0, 1] is clipped, leaving the bright/dark halos along edges that mark an
    oversharpened photo. ``threshold`` skips differences smaller than it (protects flat areas and noise,
    as GIMP/Photoshop do). Severity ``oversharpening = amount / 2``.
    """

    type = "sharpen"
    amount: float = Field(gt=0.0, le=10.0)
    radius: float = Field(default=1.5, gt=0.0, le=20.0)
    threshold: float = Field(default=0.0, ge=0.0, le=1.0)

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        detail = img - gaussian_filter(img, self.radius)
        if self.threshold > 0:
            detail = np.where(np.abs(detail) >= self.threshold, detail, 0.0).astype(np.float32)
        out = img + np.float32(self.amount) * detail
        return out, {}, {"oversharpening": self.amount / sv.SHARPEN_AMOUNT_FULL}
