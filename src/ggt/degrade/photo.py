"""Exposure, colour and old-photo primitives: low light, colour cast, fading, toning, film grain, dust,
scratches, creases, vignetting."""

from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from ggt.degrade import severity as sv
from ggt.degrade.base import (
    Primitive,
    child_rng,
    gaussian_filter,
    linear_to_srgb,
    luminance,
    register,
    srgb_to_linear,
)

Stats = dict[str, float]
RGB = tuple[float, float, float]


@register
class LowLight(Primitive):
    """Under-exposure as a sensor records it, in linear light.

    ``linear * 2**-stops``, then a white-balance error (``gains``, per channel), then the sensor's
    Poisson-Gaussian noise (shot ``a``, read sigma ``b``) added *after* the light is lost, so the noise
    is large relative to the signal, then an optional ``quantize_bits`` ADC quantisation of the dark
    linear signal (banding in shadows), and last a tone ``gamma`` on the linear values (< 1 lifts shadows
    as a phone's tone curve does). Severities: ``low_light = stops / 5``, ``color_cast`` from ``gains``,
    ``noise`` = the measured std of the noise in the sRGB output / (50/255).
    """

    type = "low_light"
    stops: float = Field(ge=0.0, le=10.0)
    gamma: float = Field(default=1.0, gt=0.2, le=3.0)
    gains: RGB = (1.0, 1.0, 1.0)
    a: float = Field(default=0.0, ge=0.0, le=1.0)
    b: float = Field(default=0.0, ge=0.0, le=1.0)
    quantize_bits: int | None = Field(default=None, ge=4, le=16)
    seed: int | None = None

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        assert self.seed is not None
        lin = srgb_to_linear(img) * np.float32(2.0**-self.stops) * np.asarray(self.gains, np.float32)

        def finish(x: np.ndarray) -> np.ndarray:
            x = np.clip(x, 0.0, 1.0)
            if self.quantize_bits is not None:
                levels = np.float32(2**self.quantize_bits - 1)
                x = np.round(x * levels) / levels
            if self.gamma != 1.0:
                x = np.power(x, np.float32(self.gamma))
            return linear_to_srgb(x)

        clean = finish(lin)
        if self.a > 0 or self.b > 0:
            std = np.sqrt(np.float32(self.a) * np.clip(lin, 0, None) + np.float32(self.b) ** 2)
            out = finish(lin + std * child_rng(self.seed).standard_normal(img.shape, dtype=np.float32))
        else:
            out = clean
        noise_std = float(np.std(out - clean))
        sev: Stats = {"low_light": self.stops / sv.LOW_LIGHT_STOPS_FULL}
        if noise_std > 0:
            sev["noise"] = sv.noise_severity(noise_std)
        if self.gains != (1.0, 1.0, 1.0):
            sev["color_cast"] = sv.color_cast_severity(self.gains)
        stats = {"noise_std": noise_std}
        return out, stats, sev


@register
class ColorCast(Primitive):
    """Per-channel gains in linear light (wrong white balance, tungsten/fluorescent light, aged dyes).

    Severity ``color_cast = max_c |log2(g_c / geomean(g))| / 0.5``.
    """

    type = "color_cast"
    gains: RGB

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        if any(g <= 0 for g in self.gains):
            raise ValueError("color_cast gains must be positive")
        lin = srgb_to_linear(img) * np.asarray(self.gains, np.float32)
        return linear_to_srgb(lin), {}, {"color_cast": sv.color_cast_severity(self.gains)}


@register
class Fade(Primitive):
    """Faded print: contrast pulled toward the image mean by ``contrast_loss``, then blacks lifted to
    ``black_lift`` (shadows turn milky grey). Severity ``fading = 1 - (1 - contrast_loss)(1 - black_lift)``.
    """

    type = "fade"
    contrast_loss: float = Field(ge=0.0, le=1.0)
    black_lift: float = Field(default=0.0, ge=0.0, le=0.8)

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        # Both steps are affine per channel, folded into one multiply-add over the image.
        keep = (1.0 - self.contrast_loss) * (1.0 - self.black_lift)
        mean = img.mean(axis=(0, 1), dtype=np.float64)
        offset = self.black_lift + mean * self.contrast_loss * (1.0 - self.black_lift)
        out = img * np.float32(keep) + offset.astype(np.float32)
        return out, {}, {"fading": 1.0 - (1.0 - self.contrast_loss) * (1.0 - self.black_lift)}


@register
class Sepia(Primitive):
    """Monochrome toning: the luminance tinted by ``tone`` (per-channel multipliers; (1, 1, 1) is plain
    black and white), blended with the original by ``amount``. Severity ``sepia = amount``.
    """

    type = "sepia"
    amount: float = Field(ge=0.0, le=1.0)
    tone: RGB = (1.07, 0.94, 0.72)

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        toned = luminance(img)[..., None] * np.asarray(self.tone, np.float32)
        out = img * np.float32(1.0 - self.amount) + toned * np.float32(self.amount)
        return out, {}, {"sepia": self.amount}


@register
class FilmGrain(Primitive):
    """Film grain: Gaussian noise with a grain size (its blur, px), strongest in the midtones as silver
    grain is, ``sigma`` being its standard deviation at mid-grey. Severity ``film_grain = sigma / (40/255)``.
    """

    type = "film_grain"
    sigma: float = Field(ge=0.0, le=0.5)
    grain_size: float = Field(default=0.8, ge=0.0, le=10.0)
    monochrome: bool = True
    seed: int | None = None

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        assert self.seed is not None
        h, w = img.shape[:2]
        rng = child_rng(self.seed)
        n = rng.standard_normal((h, w, 1 if self.monochrome else 3), dtype=np.float32)
        if self.grain_size > 0:
            n = gaussian_filter(n, self.grain_size)
            n = n.reshape(h, w, -1)
            n /= max(float(n.std()), 1e-6)  # renormalise so sigma is the grain's true std
        x = luminance(img)[..., None]
        weight = 0.6 + 1.6 * x * (1.0 - x)  # 1.0 at mid-grey, 0.6 at black and white
        return img + np.float32(self.sigma) * weight * n, {}, {"film_grain": self.sigma / sv.GRAIN_SIGMA_FULL}


def _composite_marks(img: np.ndarray, light: np.ndarray, dark: np.ndarray) -> np.ndarray:
    """Bright marks (dust on the negative prints white) lighten; dark ones (dirt on the print) darken."""
    out = img + light[..., None] * (np.float32(0.95) - img)
    return out * (1.0 - np.float32(0.85) * dark[..., None])


@register
class Dust(Primitive):
    """Dust specks and short fibres: ``count`` marks with radii up to ``max_radius`` (fraction of the short
    side), ``opacity``, a ``bright_fraction`` of them white. Severity ``dust = covered fraction / 0.008``.
    """

    type = "dust"
    count: int = Field(ge=0, le=5000)
    max_radius: float = Field(default=0.004, gt=0.0, le=0.05)
    opacity: float = Field(default=0.8, gt=0.0, le=1.0)
    bright_fraction: float = Field(default=0.6, ge=0.0, le=1.0)
    fibre_fraction: float = Field(default=0.15, ge=0.0, le=1.0)
    seed: int | None = None

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        assert self.seed is not None
        h, w = img.shape[:2]
        short = min(h, w)
        rng = child_rng(self.seed)
        # Bright and dark marks go on separate masks, drawn in place (anti-aliased): overlaps are rare
        # and per-mark canvases would cost a full-frame pass each.
        light = np.zeros((h, w), np.float32)
        dark = np.zeros((h, w), np.float32)
        shift = 4
        for _ in range(self.count):
            cx, cy = float(rng.uniform(0, w)), float(rng.uniform(0, h))
            r = max(0.6, float(rng.uniform(0.15, 1.0)) ** 2 * self.max_radius * short)
            op = float(rng.uniform(0.5, 1.0)) * self.opacity
            stamp = light if rng.random() < self.bright_fraction else dark
            if rng.random() < self.fibre_fraction:
                # A fibre: a short wandering hair-thin curve.
                n = 6
                ang = rng.uniform(0, 2 * math.pi) + np.cumsum(rng.normal(0, 0.5, n))
                seg = r * 2.5
                xs = cx + np.concatenate([[0.0], np.cumsum(np.cos(ang) * seg)])
                ys = cy + np.concatenate([[0.0], np.cumsum(np.sin(ang) * seg)])
                pts = np.round(np.stack([xs, ys], 1) * 2**shift).astype(np.int32)
                cv2.polylines(stamp, [pts], False, op, 1, cv2.LINE_AA, shift)
            else:
                axes = (round(r * 2**shift), round(r * float(rng.uniform(0.5, 1.0)) * 2**shift))
                centre = (round(cx * 2**shift), round(cy * 2**shift))
                cv2.ellipse(
                    stamp, centre, axes, float(rng.uniform(0, 180)), 0, 360, op, -1, cv2.LINE_AA, shift
                )
        coverage = float((np.maximum(light, dark) > 0.1).mean())
        out = _composite_marks(img, light, dark)
        return out, {"coverage": coverage}, {"dust": coverage / sv.DUST_COVERAGE_FULL}


@register
class Scratches(Primitive):
    """Scratches: ``count`` thin slightly curved lines, ``orientation`` "vertical" (film running through a
    projector or scanner) or "random" (a handled print), lengths ``min_length..max_length`` of the image
    diagonal. Severity ``scratches = sum(opacity * length) / diagonal / 3``.
    """

    type = "scratches"
    count: int = Field(ge=0, le=200)
    opacity: float = Field(default=0.7, gt=0.0, le=1.0)
    width: float = Field(default=1.0, gt=0.0, le=8.0, description="px")
    min_length: float = Field(default=0.1, gt=0.0, le=1.5)
    max_length: float = Field(default=0.6, gt=0.0, le=1.5)
    orientation: Literal["vertical", "random"] = "random"
    bright_fraction: float = Field(default=0.7, ge=0.0, le=1.0)
    seed: int | None = None

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        assert self.seed is not None
        h, w = img.shape[:2]
        diag = math.hypot(h, w)
        rng = child_rng(self.seed)
        light = np.zeros((h, w), np.float32)
        dark = np.zeros((h, w), np.float32)
        shift = 4
        weighted = 0.0
        lo, hi = sorted((self.min_length, self.max_length))
        for _ in range(self.count):
            length = float(rng.uniform(lo, hi)) * diag
            op = float(rng.uniform(0.4, 1.0)) * self.opacity
            if self.orientation == "vertical":
                angle = math.pi / 2 + float(rng.normal(0, 0.05))
            else:
                angle = float(rng.uniform(0, math.pi))
            n = 12
            # Gentle curvature: the heading drifts as a random walk along the stroke.
            heading = angle + np.cumsum(rng.normal(0, 0.03, n))
            seg = length / n
            x0, y0 = float(rng.uniform(0, w)), float(rng.uniform(0, h))
            xs = x0 + np.concatenate([[0.0], np.cumsum(np.cos(heading) * seg)])
            ys = y0 + np.concatenate([[0.0], np.cumsum(np.sin(heading) * seg)])
            xs -= (xs[-1] - xs[0]) / 2  # centre the stroke on the start point
            ys -= (ys[-1] - ys[0]) / 2
            stamp = light if rng.random() < self.bright_fraction else dark
            pts = np.round(np.stack([xs, ys], 1) * 2**shift).astype(np.int32)
            cv2.polylines(stamp, [pts], False, op, max(1, round(self.width)), cv2.LINE_AA, shift)
            weighted += op * length
        out = _composite_marks(img, light, dark)
        total = weighted / diag
        return out, {"opacity_length_diagonals": total}, {"scratches": total / sv.SCRATCH_DIAGONALS_FULL}


@register
class Creases(Primitive):
    """Folds in a print: ``count`` straight creases across the image, each a thin bright crack where the
    emulsion broke plus shading falling off to one side of the fold (``strength``). Reported under the
    ``scratches`` key (opacity * length / diagonal / 3, opacity = strength).
    """

    type = "creases"
    count: int = Field(ge=0, le=20)
    strength: float = Field(default=0.5, gt=0.0, le=1.0)
    seed: int | None = None

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        assert self.seed is not None
        h, w = img.shape[:2]
        diag = math.hypot(h, w)
        rng = child_rng(self.seed)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        out = img
        weighted = 0.0
        for _ in range(self.count):
            # A line through a random point with a random direction; folds run edge to edge.
            px, py = float(rng.uniform(0.15, 0.85)) * w, float(rng.uniform(0.15, 0.85)) * h
            theta = float(rng.uniform(0, math.pi))
            nx, ny = -math.sin(theta), math.cos(theta)
            d = (xs - px) * np.float32(nx) + (ys - py) * np.float32(ny)
            width = max(0.8, 0.0015 * min(h, w))
            # The crack is broken along its length, not a perfect line.
            along = (xs - px) * np.float32(-ny) + (ys - py) * np.float32(nx)
            gaps = 0.5 + 0.5 * np.sin(
                along / np.float32(float(rng.uniform(7, 19))) + np.float32(rng.uniform(0, 6))
            )
            crack = np.exp(-((d / np.float32(width)) ** 2)) * gaps * np.float32(self.strength)
            falloff = np.float32(0.02 * min(h, w))
            # The fold's shadow falls on one side; exp of the clamped distance does not overflow on the other.
            shade = np.where(d > 0, np.exp(-np.maximum(d, 0) / falloff), 0.0).astype(np.float32) * np.float32(
                0.25 * self.strength
            )
            out = out * (1.0 - shade[..., None])
            out = out + crack[..., None] * (np.float32(0.95) - out)
            # Length of the line inside the image frame, for the severity.
            weighted += self.strength * _chord_length(px, py, theta, w, h)
        total = weighted / diag
        return out, {"opacity_length_diagonals": total}, {"scratches": total / sv.SCRATCH_DIAGONALS_FULL}


def _chord_length(px: float, py: float, theta: float, w: int, h: int) -> float:
    """Length of the line through (px, py) at angle theta clipped to the [0, w] x [0, h] frame."""
    dx, dy = math.cos(theta), math.sin(theta)
    ts = []
    for p, dp, lim in ((px, dx, w), (py, dy, h)):
        if abs(dp) > 1e-9:
            ts += [(0 - p) / dp, (lim - p) / dp]
    ts.sort()
    # The two middle parameters bound the segment inside both slabs.
    return abs(ts[2] - ts[1]) if len(ts) == 4 else float(h if abs(dx) < 1e-9 else w)


@register
class Vignette(Primitive):
    """Radial light fall-off of an old or cheap lens: brightness times ``1 - strength * ramp**2``, the
    ramp rising from ``radius`` (fraction of the half-diagonal) to the corners. Has no severity key."""

    type = "vignette"
    strength: float = Field(ge=0.0, le=1.0)
    radius: float = Field(default=0.5, ge=0.0, lt=1.0)

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        h, w = img.shape[:2]
        yy = (np.arange(h, dtype=np.float32) - (h - 1) / 2) / np.float32(h / 2)
        xx = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / np.float32(w / 2)
        r = np.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2) / np.float32(math.sqrt(2))
        ramp = np.clip((r - self.radius) / (1.0 - self.radius), 0.0, 1.0)
        gain = 1.0 - np.float32(self.strength) * ramp**2
        return img * gain[..., None], {}, {}
