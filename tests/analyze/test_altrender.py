"""The fit's Pillow-first renderers and the extra training photos."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ggt.analyze import altrender as A
from ggt.analyze.measures import compute_measures

CATEGORIES = {"clean", "social_media", "old_photo", "rain", "snow", "haze", "low_light"}


@pytest.mark.parametrize("kind", sorted(A.SCENES))
def test_scenes_are_seeded_images_with_a_category(kind: str, photo_crop) -> None:  # type: ignore[no-untyped-def]
    img = photo_crop("astronaut", 160)
    a, cat_a = A.SCENES[kind](img, np.random.default_rng(5))
    b, cat_b = A.SCENES[kind](img, np.random.default_rng(5))
    assert a.dtype == np.float32 and a.ndim == 3 and a.shape[2] == 3
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert np.array_equal(a, b) and cat_a == cat_b  # same seed, same image
    assert cat_a is None or cat_a in CATEGORIES
    assert not np.allclose(a[: img.shape[0], : img.shape[1]], img[: a.shape[0], : a.shape[1]], atol=1e-3)


def test_scenes_move_the_measures_they_should(photo_crop) -> None:  # type: ignore[no-untyped-def]
    img = photo_crop("chelsea", 256)
    base = compute_measures(img)
    dark, _ = A.low_light_scene(img, np.random.default_rng(0))
    assert compute_measures(dark)["linear_mean"] < 0.6 * base["linear_mean"]
    fog, _ = A.haze_scene(img, np.random.default_rng(0))
    assert compute_measures(fog)["haze_dark_channel"] > base["haze_dark_channel"] + 0.1
    old, _ = A.old_photo_scene(img, np.random.default_rng(0))
    m_old = compute_measures(old)
    assert m_old["contrast_rms"] < base["contrast_rms"] and m_old["chroma_mean"] < base["chroma_mean"]


class _Always:
    """An rng whose draws are all their lowest: JPEG with 4:4:4 subsampling and optimised tables."""

    def integers(self, lo: int, hi: int | None = None) -> int:
        return 0 if hi is None else lo

    def uniform(self, lo: float = 0.0, hi: float = 1.0) -> float:
        return lo


def test_optimised_jpeg_of_a_noisy_frame_falls_back_to_the_same_pixels() -> None:
    # Pillow fails an optimised 4:4:4 save whose stream outgrows one byte per pixel; fit renders hit
    # it on dark noisy frames (ihc seed 29, cell seed 30) and the whole fit run died.
    noise = np.random.default_rng(0).integers(0, 256, (320, 320, 3), dtype=np.uint8)
    im = Image.fromarray(noise)
    out = A._encode(im, "JPEG", 95, _Always())  # type: ignore[arg-type]
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95, subsampling=0)
    assert np.array_equal(np.asarray(out), np.asarray(Image.open(buf).convert("RGB")))


def test_clean_variant_stays_close(photo_crop) -> None:  # type: ignore[no-untyped-def]
    img = photo_crop("camera", 200)
    for seed in range(4):
        out = A.clean_variant(img, np.random.default_rng(seed))
        if out.shape == img.shape:
            assert float(np.abs(out - img).mean()) < 0.06


def test_extra_fit_photos_load_and_are_not_held_out() -> None:
    from ggt.analyze import fit

    held_out = {"coffee", "hubble_deep_field", "retina", "moon", "text", "gravel", "motorcycle", "clock"}
    assert not (set(fit.EXTRA) | set(fit.TUNE)) & held_out
    for name in fit.EXTRA:
        img = fit._photo(name)
        assert img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 256, name
        assert img.dtype == np.float32 and img.min() >= 0.0 and img.max() <= 1.0
