"""Shared fixtures: small crops of the scikit-image photos (no download), as float32 RGB."""

from __future__ import annotations

import numpy as np
import pytest

from ggt.photos import load_photo


def crop(name: str, size: int = 256, y: float = 0.5, x: float = 0.5) -> np.ndarray:
    img = load_photo(name).astype(np.float32) / 255.0
    h, w = img.shape[:2]
    s = min(size, h, w)
    y0 = int((h - s) * y)
    x0 = int((w - s) * x)
    return np.ascontiguousarray(img[y0 : y0 + s, x0 : x0 + s])


@pytest.fixture(scope="session")
def photo_crop():  # type: ignore[no-untyped-def]
    """The `crop` helper as a fixture (test folders are not packages, so no relative imports)."""
    return crop


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return crop("astronaut", 256, 0.3, 0.3)


@pytest.fixture(scope="session")
def camera() -> np.ndarray:
    return crop("camera", 256, 0.3, 0.5)


@pytest.fixture(scope="session")
def coffee() -> np.ndarray:
    return crop("coffee", 256)
