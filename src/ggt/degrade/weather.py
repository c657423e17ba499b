"""Weather primitives: haze (atmospheric scattering), rain streaks, snow."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ggt.degrade import severity as sv
from ggt.degrade.base import (
    Primitive,
    child_rng,
    gaussian_filter,
    luminance,
    register,
    smooth_field,
)
from ggt.degrade.primitives import disk_kernel, motion_kernel

Stats = dict[str, float]
RGB = tuple[float, float, float]


def _blurred_luminance(img: np.ndarray, rel_sigma: float) -> np.ndarray:
    """Luminance blurred with sigma = rel_sigma * short side, computed at low resolution for speed."""
    h, w = img.shape[:2]
    f = min(1.0, 128.0 / max(h, w))
    small = cv2.resize(
        luminance(img), (max(2, round(w * f)), max(2, round(h * f))), interpolation=cv2.INTER_AREA
    )
    small = gaussian_filter(small, rel_sigma * min(small.shape))
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _veil(img: np.ndarray, opacity: float, color: RGB) -> np.ndarray:
    """A uniform scattering veil: the haze model with constant transmission t = 1 - opacity."""
    if opacity <= 0:
        return img
    a = np.asarray(color, np.float32)
    return img * np.float32(1.0 - opacity) + a * np.float32(opacity)


@register
class Haze(Primitive):
    """Koschmieder's atmospheric scattering model ``I = J t + A (1 - t)``, ``t = exp(-beta d)``.

    No depth map exists for a single photo, so ``d`` in [depth_min, 1] is a proxy mixed from three
    normalised cues, weighted by ``w_vertical``, ``w_luminance`` and ``w_random``: the vertical position
    (the top of a photo is usually farther), heavily blurred luminance (bright regions are often sky or
    distant haze) and a random smooth field (so the haze is not a pure gradient). ``airlight`` is the
    RGB colour of the scattered light. Severity ``haze = 1 - mean(t)``.
    """

    type = "haze"
    beta: float = Field(ge=0.0, le=10.0)
    airlight: RGB = (0.9, 0.9, 0.9)
    w_vertical: float = Field(default=0.5, ge=0.0)
    w_luminance: float = Field(default=0.3, ge=0.0)
    w_random: float = Field(default=0.2, ge=0.0)
    depth_min: float = Field(default=0.2, ge=0.0, le=1.0)
    seed: int | None = None

    def depth(self, img: np.ndarray) -> np.ndarray:
        """The depth proxy in [depth_min, 1] (exposed so tests and tools can check the transmission)."""
        assert self.seed is not None
        h, w = img.shape[:2]
        total = self.w_vertical + self.w_luminance + self.w_random
        if total <= 0:
            return np.ones((h, w), np.float32)
        vertical = np.repeat(np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None], w, axis=1)
        lum = _blurred_luminance(img, 0.05)
        lum = (lum - lum.min()) / max(float(lum.max() - lum.min()), 1e-6)
        rnd = smooth_field(h, w, 5, child_rng(self.seed))
        d = (self.w_vertical * vertical + self.w_luminance * lum + self.w_random * rnd) / total
        return (self.depth_min + (1.0 - self.depth_min) * d).astype(np.float32)

    def transmission(self, img: np.ndarray) -> np.ndarray:
        return np.exp(-np.float32(self.beta) * self.depth(img)).astype(np.float32)

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        t = self.transmission(img)[..., None]
        a = np.asarray(self.airlight, np.float32)
        out = img * t + a * (1.0 - t)
        mean_t = float(t.mean())
        return out, {"mean_transmission": mean_t, "min_transmission": float(t.min())}, {"haze": 1.0 - mean_t}


class RainLayer(BaseModel):
    """One depth layer of streaks: near layers are sparse, long, wide and soft; far ones dense and thin.

    ``density`` is drops per 1000 pixels of a photo with a 512-pixel short side; ``length`` and
    ``width`` are fractions of the short side. All three scale with the photo (`_sparse_points`), so a
    preset looks the same at any resolution.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    density: float = Field(gt=0.0, le=50.0)
    length: float = Field(gt=0.0, le=0.5)
    width: float = Field(default=0.0015, gt=0.0, le=0.02)
    angle_deg: float = Field(default=0.0, ge=-60.0, le=60.0, description="from vertical")
    opacity: float = Field(default=0.6, gt=0.0, le=1.0)


# The short side at which a layer's density is counted per pixel.
DENSITY_SHORT_SIDE = 512


def _sparse_points(h: int, w: int, per_kpx: float, rng: np.random.Generator) -> np.ndarray:
    # Drops and flakes are sized in fractions of the short side, so their number must follow the area in
    # short sides, not in pixels: counted per pixel, a 172-pixel-high photo got a ninth of the cover of a
    # 512-pixel one (streaks a pixel wide, barely visible) and a 2048-pixel one sixteen times as much.
    scale = (DENSITY_SHORT_SIDE / min(h, w)) ** 2
    n = int(rng.poisson(per_kpx * h * w / 1000.0 * scale))
    canvas = np.zeros((h, w), np.float32)
    ys = rng.integers(0, h, n)
    xs = rng.integers(0, w, n)
    canvas[ys, xs] = rng.uniform(0.5, 1.0, n).astype(np.float32)
    return canvas


def _rain_layer(h: int, w: int, layer: RainLayer, rng: np.random.Generator) -> np.ndarray:
    short = min(h, w)
    pts = _sparse_points(h, w, layer.density, rng)
    width_px = max(0.5, layer.width * short)
    pts = gaussian_filter(pts, width_px / 2.0) * np.float32(2.0 * math.pi * (width_px / 2.0) ** 2)
    length_px = max(1.0, layer.length * short)
    # A streak is a drop moving during the exposure: a motion blur along the fall direction (angle from
    # vertical), rescaled so its opacity does not fall with its length.
    k = motion_kernel(length_px, 90.0 - layer.angle_deg)
    streaks = cv2.filter2D(pts, -1, k[::-1, ::-1].copy(), borderType=cv2.BORDER_CONSTANT) * np.float32(
        length_px
    )
    return np.clip(streaks, 0.0, 1.0) * np.float32(layer.opacity)


def _screen_layers(h: int, w: int, layers: tuple[Any, ...], seed: int | None, render: Any) -> np.ndarray:
    """Opacity of several precipitation layers screened onto each other, drawn from the primitive's seed."""
    assert seed is not None
    rng = child_rng(seed)
    total = np.zeros((h, w), np.float32)
    for layer in layers:
        total = 1.0 - (1.0 - total) * (1.0 - render(h, w, layer, rng))
    return total


@register
class Rain(Primitive):
    """Rain: streak layers screen-blended over the photo, then a fog veil of opacity ``veil``.

    Streaks are bright (they refract sky light) and blend as ``1 - (1 - x)(1 - o * colour)``. Severity
    ``rain = mean streak opacity / 0.25``; the veil reports ``haze = veil``.
    """

    type = "rain"
    layers: tuple[RainLayer, ...] = Field(min_length=1, max_length=8)
    streak_color: RGB = (0.85, 0.87, 0.9)
    veil: float = Field(default=0.0, ge=0.0, le=0.9)
    veil_color: RGB = (0.75, 0.77, 0.8)
    seed: int | None = None

    def opacity_map(self, h: int, w: int) -> np.ndarray:
        return _screen_layers(h, w, self.layers, self.seed, _rain_layer)

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        h, w = img.shape[:2]
        o = self.opacity_map(h, w)[..., None]
        c = np.asarray(self.streak_color, np.float32)
        out = 1.0 - (1.0 - img) * (1.0 - o * c)
        out = _veil(out, self.veil, self.veil_color)
        mean_o = float(o.mean())
        sev: Stats = {"rain": mean_o / sv.RAIN_OPACITY_FULL}
        if self.veil > 0:
            sev["haze"] = self.veil
        return out, {"mean_streak_opacity": mean_o}, sev


class SnowLayer(BaseModel):
    """Flakes of one size: ``density`` per 1000 px at a 512-px short side (`RainLayer`), ``radius`` and
    blur as fractions of the short side.

    Near flakes are large, few and out of focus (``blur``); ``fall`` adds motion along ``angle_deg``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    density: float = Field(gt=0.0, le=20.0)
    radius: float = Field(gt=0.0, le=0.05)
    blur: float = Field(default=0.0, ge=0.0, le=0.05)
    fall: float = Field(default=0.0, ge=0.0, le=0.2)
    angle_deg: float = Field(default=0.0, ge=-80.0, le=80.0, description="from vertical")
    opacity: float = Field(default=0.85, gt=0.0, le=1.0)


def _snow_layer(h: int, w: int, layer: SnowLayer, rng: np.random.Generator) -> np.ndarray:
    short = min(h, w)
    pts = _sparse_points(h, w, layer.density, rng)
    r = max(0.5, layer.radius * short)
    disk = disk_kernel(r)
    flakes = cv2.filter2D(pts, -1, disk / disk.max(), borderType=cv2.BORDER_CONSTANT)
    if layer.blur > 0:
        flakes = gaussian_filter(flakes, layer.blur * short)
    if layer.fall > 0:
        length = max(1.0, layer.fall * short)
        k = motion_kernel(length, 90.0 - layer.angle_deg)
        flakes = cv2.filter2D(flakes, -1, k[::-1, ::-1].copy(), borderType=cv2.BORDER_CONSTANT)
        # Falling flakes smear into streaks; keep some of the opacity a still flake would have.
        flakes = flakes * np.float32(min(length / (2 * r), 3.0) ** 0.5)
    return np.clip(flakes, 0.0, 1.0) * np.float32(layer.opacity)


@register
class Snow(Primitive):
    """Snow: flake layers alpha-composited in ``flake_color``, then a veil of opacity ``veil``.

    Severity ``snow = mean flake opacity / 0.12``; the veil reports ``haze = veil``.
    """

    type = "snow"
    layers: tuple[SnowLayer, ...] = Field(min_length=1, max_length=8)
    flake_color: RGB = (0.95, 0.95, 0.97)
    veil: float = Field(default=0.0, ge=0.0, le=0.9)
    veil_color: RGB = (0.82, 0.84, 0.88)
    seed: int | None = None

    def opacity_map(self, h: int, w: int) -> np.ndarray:
        return _screen_layers(h, w, self.layers, self.seed, _snow_layer)

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, Stats, Stats]:
        h, w = img.shape[:2]
        out = _veil(img, self.veil, self.veil_color)  # flakes in front of the fog, not behind it
        o = self.opacity_map(h, w)[..., None]
        c = np.asarray(self.flake_color, np.float32)
        out = out * (1.0 - o) + c * o
        mean_o = float(o.mean())
        sev: Stats = {"snow": mean_o / sv.SNOW_OPACITY_FULL}
        if self.veil > 0:
            sev["haze"] = self.veil
        return out, {"mean_flake_opacity": mean_o}, sev
