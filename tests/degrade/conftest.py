"""Small real photos for the degradation tests (scikit-image ships them; no download)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data


def _crop(img: np.ndarray, y: int, x: int, h: int = 96, w: int = 128) -> np.ndarray:
    return np.ascontiguousarray(img[y : y + h, x : x + w], dtype=np.float32) / np.float32(255)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return _crop(data.astronaut(), 40, 150)


@pytest.fixture(scope="session")
def chelsea() -> np.ndarray:
    return _crop(data.chelsea(), 60, 100)


@pytest.fixture(scope="session")
def coffee() -> np.ndarray:
    return _crop(data.coffee(), 100, 200)


@pytest.fixture(scope="session")
def photos(astronaut: np.ndarray, chelsea: np.ndarray, coffee: np.ndarray) -> list[np.ndarray]:
    return [astronaut, chelsea, coffee]


@pytest.fixture
def grey() -> np.ndarray:
    """A flat mid-grey frame: noise measured on it is not distorted by clipping or image texture."""
    return np.full((128, 128, 3), 0.5, np.float32)
