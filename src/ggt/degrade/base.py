"""The primitive registry and the helpers every primitive shares.

A primitive is a small pydantic model: its fields are the typed keyword arguments (unknown ones are
rejected), and a resolved instance is exactly what was applied. Applying one returns the image and the
parameters as a plain dict that rebuilds the same primitive: ``create_primitive(type, **params)`` applied
to the same input gives the same bytes. Random primitives carry a ``seed`` field; left ``None`` it is
drawn from the generator passed at call time and written back into the parameters, which is what makes
the labels replayable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict

_REGISTRY: dict[str, type[Primitive]] = {}
_P = TypeVar("_P", bound="Primitive")
_SEED_HIGH = 2**63 - 1


@dataclass(frozen=True)
class Applied:
    """One applied step: the output image, the replayable parameters and what the step measured.

    ``stats`` holds exact derived quantities (mean transmission, streak opacity, kernel RMS radius, ...)
    that are not inputs; ``severity`` holds the step's raw severity contributions before the pipeline
    corrects them for resolution and combines them (see ``ggt.degrade.severity``).
    """

    type: str
    image: np.ndarray
    params: dict[str, Any]
    stats: dict[str, float] = field(default_factory=dict)
    severity: dict[str, float] = field(default_factory=dict)


class Primitive(BaseModel):
    """Base class: subclasses set ``type`` and implement ``_run``; random ones declare ``seed``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ClassVar[str] = ""

    def resolve(self, image_shape: tuple[int, ...], rng: np.random.Generator | None) -> Primitive:
        """Fill parameters left open (seed, auto kernel size) so the instance says exactly what runs."""
        update: dict[str, Any] = {}
        if "seed" in type(self).model_fields and getattr(self, "seed", 0) is None:
            gen = rng if rng is not None else np.random.default_rng()
            update["seed"] = int(gen.integers(0, _SEED_HIGH))
        update |= self._resolve_more(image_shape)
        return self.model_copy(update=update) if update else self

    def _resolve_more(self, image_shape: tuple[int, ...]) -> dict[str, Any]:
        return {}

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, dict[str, float], dict[str, float]]:
        """Return (image, stats, raw severity) for a resolved instance."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def apply(self, img: np.ndarray, rng: np.random.Generator | None = None) -> Applied:
        img = check_image(img)
        resolved = self.resolve(img.shape, rng)
        out, stats, severity = resolved._run(img)
        out = np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
        return Applied(resolved.type, out, resolved.params(), stats, severity)

    def __call__(
        self, img: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        applied = self.apply(img, rng)
        return applied.image, applied.params


def register(cls: type[_P]) -> type[_P]:
    if not cls.type or cls.type in _REGISTRY:
        raise RuntimeError(f"primitive type {cls.type!r} missing or registered twice")
    _REGISTRY[cls.type] = cls
    return cls


def primitive_types() -> list[str]:
    return sorted(_REGISTRY)


def primitive_class(type: str) -> type[Primitive]:
    try:
        return _REGISTRY[type]
    except KeyError:
        raise ValueError(
            f"unknown degradation primitive {type!r}; valid types: {', '.join(primitive_types())}"
        ) from None


def create_primitive(type: str, **kwargs: Any) -> Primitive:
    """Build a registered primitive by name; bad or unknown keyword arguments raise ValueError."""
    return primitive_class(type)(**kwargs)


def check_image(img: np.ndarray) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        shape = getattr(img, "shape", None)
        raise ValueError(f"expected an RGB image array of shape HxWx3, got shape {shape}")
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(
            f"expected a float image in [0, 1], got dtype {img.dtype}; convert with ggt.imaging.to_float"
        )
    if img.shape[0] < 2 or img.shape[1] < 2:
        raise ValueError(f"image too small to degrade: {img.shape[1]}x{img.shape[0]}")
    return np.ascontiguousarray(img, dtype=np.float32)


def child_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- colour ------------------------------------------------------------------------------------------

_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
# 65536-entry tables: exact to ~1e-4 in either direction (well under one 8-bit level even in the steep
# shadows of the sRGB curve) and several times faster than np.power on megapixel images.
_LUT_N = 65536
_grid = np.linspace(0.0, 1.0, _LUT_N, dtype=np.float64)
_TO_LINEAR = np.where(_grid <= 0.04045, _grid / 12.92, ((_grid + 0.055) / 1.055) ** 2.4).astype(np.float32)
_TO_SRGB = np.where(_grid <= 0.0031308, _grid * 12.92, 1.055 * _grid ** (1 / 2.4) - 0.055).astype(np.float32)
del _grid


def _lookup(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    idx = np.clip(x, 0.0, 1.0) * np.float32(_LUT_N - 1) + np.float32(0.5)
    return table[idx.astype(np.int32)]


def srgb_to_linear(img: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] -> linear light (IEC 61966-2-1), values outside [0, 1] clipped."""
    return _lookup(_TO_LINEAR, img)


def linear_to_srgb(lin: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB-encoded [0, 1], values outside [0, 1] clipped."""
    return _lookup(_TO_SRGB, lin)


def luminance(img: np.ndarray) -> np.ndarray:
    return (img @ _LUMA).astype(np.float32)


# --- filtering ---------------------------------------------------------------------------------------


def odd(n: float) -> int:
    k = max(1, int(np.ceil(n)))
    return k if k % 2 else k + 1


def filter_image(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve every channel with a 2-D kernel (reflect border, as photographed content continues)."""
    k = np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float32)  # filter2D correlates
    return cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT_101)


def gaussian_filter(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


def smooth_field(h: int, w: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """A random smooth field in [0, 1]: a few coarse cells of uniform noise, bicubic-upsampled.

    Drawing only `cells`^2 numbers keeps the field's shape independent of the image size.
    """
    ch = max(2, round(cells * h / max(h, w)))
    cw = max(2, round(cells * w / max(h, w)))
    coarse = rng.random((ch, cw), dtype=np.float32)
    field_ = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    lo, hi = float(field_.min()), float(field_.max())
    return ((field_ - lo) / max(hi - lo, 1e-6)).astype(np.float32)


def kernel_sigma(kernel: np.ndarray) -> float:
    """RMS radius per axis of a non-negative kernel: sqrt((var_x + var_y) / 2)."""
    k = np.clip(kernel.astype(np.float64), 0, None)
    k = k / k.sum()
    ys, xs = np.mgrid[0 : k.shape[0], 0 : k.shape[1]]
    cy, cx = (k * ys).sum(), (k * xs).sum()
    var = (k * ((ys - cy) ** 2 + (xs - cx) ** 2)).sum()
    return float(np.sqrt(var / 2.0))
