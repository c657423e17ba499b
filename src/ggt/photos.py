"""The real photos that scikit-image ships (no download): the offline material for the demo and tests."""

from __future__ import annotations

import numpy as np

# Loaders that read files inside the scikit-image wheel; loaders that need pooch (eagle, lily) are left out.
PHOTO_NAMES: tuple[str, ...] = (
    "astronaut", "camera", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina", "coins", "moon",
    "page", "text", "brick", "grass", "gravel", "motorcycle", "clock",
)  # fmt: skip

GENUINELY_DEGRADED = {"clock": "motion_blur"}
"""Photos that carry a real (not simulated) degradation."""


def load_photo(name: str) -> np.ndarray:
    """A scikit-image photo as uint8 RGB (grey ones stacked to three channels)."""
    from skimage import data

    if name not in PHOTO_NAMES:
        raise ValueError(f"unknown photo {name!r}; choose from {', '.join(PHOTO_NAMES)}")
    img = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])
