from __future__ import annotations

import json

import numpy as np
import pytest

from ggt.degrade import (
    PRESETS,
    SEVERITY_KEYS,
    apply_pipeline,
    apply_preset,
    create_primitive,
    list_presets,
)
from ggt.degrade import severity as sv
from ggt.degrade.pipeline import run_steps

ALL = list_presets()
SEEDS = range(6)

# What each category must always show (the part of the look that defines it).
SIGNATURE = {
    "social_media": {"jpeg", "low_resolution"},
    "old_photo": {"fading", "film_grain", "blur"},
    "rain": {"rain"},
    "haze": {"haze"},
    "snow": {"snow", "haze"},
    "low_light": {"low_light", "noise"},
    "realesrgan": {"jpeg", "noise"},
}


def test_the_category_presets_exist() -> None:
    assert set(ALL) == {"social_media", "old_photo", "rain", "haze", "snow", "low_light", "realesrgan"}
    assert list(PRESETS) == ALL
    assert all(PRESETS[name].description for name in ALL)


@pytest.mark.parametrize("preset", ALL)
def test_preset_contract(preset: str, photos: list[np.ndarray]) -> None:
    for i, img in enumerate(photos):
        before = img.copy()
        for seed in SEEDS:
            res = apply_preset(img, preset, seed)
            assert np.array_equal(img, before), "the input was modified"
            assert res.image.shape == img.shape and res.image.dtype == np.float32
            assert res.image.min() >= 0.0 and res.image.max() <= 1.0
            assert res.preset == preset and res.seed == seed and res.labels
            assert set(res.severity) <= set(SEVERITY_KEYS)
            assert all(0.0 <= v <= 1.0 for v in res.severity.values())
            assert SIGNATURE[preset] <= set(res.severity), (preset, i, seed, res.severity)
            assert not np.array_equal(res.image, img)
            json.dumps(res.to_dict())


@pytest.mark.parametrize("preset", ALL)
def test_same_seed_same_bytes_different_seed_differs(preset: str, chelsea: np.ndarray) -> None:
    a = apply_preset(chelsea, preset, 123)
    b = apply_preset(chelsea.copy(), preset, 123)
    c = apply_preset(chelsea, preset, 124)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.to_dict() == b.to_dict()
    assert a.image.tobytes() != c.image.tobytes()


@pytest.mark.parametrize("preset", ALL)
def test_labels_replay_to_the_same_bytes(preset: str, coffee: np.ndarray) -> None:
    res = apply_preset(coffee, preset, 77)
    replay = apply_pipeline(coffee, [lab.to_dict() for lab in res.labels])
    assert replay.image.tobytes() == res.image.tobytes()
    assert replay.severity == res.severity


def test_generator_seed_is_recorded_as_an_int(astronaut: np.ndarray) -> None:
    res = apply_preset(astronaut, "haze", np.random.default_rng(5))
    assert isinstance(res.seed, int)
    assert apply_preset(astronaut, "haze", res.seed).image.tobytes() == res.image.tobytes()
    with pytest.raises(ValueError, match="seed"):
        apply_preset(astronaut, "haze", -1)


def test_unknown_preset_names_the_valid_ones(astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown degradation preset 'fog'") as err:
        apply_preset(astronaut, "fog", 0)
    for name in ALL:
        assert name in str(err.value)


def test_presets_vary_their_recipe(astronaut: np.ndarray) -> None:
    for preset in ("social_media", "old_photo", "realesrgan"):
        recipes = {tuple(lab.type for lab in apply_preset(astronaut, preset, s).labels) for s in range(12)}
        assert len(recipes) > 2, preset


# --- severity bookkeeping ----------------------------------------------------------------------------


def test_severity_mappings_are_monotone() -> None:
    assert sv.noise_severity(5 / 255) < sv.noise_severity(20 / 255)
    assert sv.jpeg_severity(90) < sv.jpeg_severity(50) < sv.jpeg_severity(10) == 1.0
    assert sv.jpeg_severity(95) == 0.0 == sv.jpeg_severity(100)
    assert sv.low_resolution_severity(1.0) == 0.0
    assert sv.low_resolution_severity(0.5) == pytest.approx(1 / 3)
    assert sv.low_resolution_severity(0.125) == pytest.approx(1.0)
    assert sv.color_cast_severity((1, 1, 1)) == 0.0 < sv.color_cast_severity((1.1, 1, 0.9))


def test_combine_rules() -> None:
    # Independent noises add variances; the worst JPEG round dominates; results are clipped and ordered.
    out = sv.combine([("noise", 0.3), ("noise", 0.4), ("jpeg", 0.2), ("jpeg", 0.5), ("haze", 1.7)])
    assert out == {"noise": 0.5, "jpeg": 0.5, "haze": 1.0}
    with pytest.raises(ValueError, match="valid keys"):
        sv.combine([("fog", 0.1)])


def test_blur_at_reduced_resolution_counts_in_input_pixels(astronaut: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    full = run_steps(astronaut, [create_primitive("gaussian_blur", sigma=1.0)], rng)[2]
    half = run_steps(
        astronaut,
        [
            create_primitive("resize", scale=0.5, interpolation="area"),
            create_primitive("gaussian_blur", sigma=1.0),
            create_primitive("resize_to", height=96, width=128),
        ],
        rng,
    )[2]
    assert half["blur"] == pytest.approx(2 * full["blur"], rel=0.01)
    assert half["low_resolution"] == pytest.approx(1 / 3, abs=1e-3)


@pytest.mark.parametrize(
    ("type_", "key", "values", "field"),
    [
        ("gaussian_noise", "noise", (0.01, 0.03, 0.08), "sigma"),
        ("gaussian_blur", "blur", (0.8, 1.6, 3.0), "sigma"),
        ("motion_blur", "motion_blur", (3, 9, 20), "length"),
        ("haze", "haze", (0.4, 1.2, 2.5), "beta"),
        ("low_light", "low_light", (1.0, 2.5, 4.5), "stops"),
        ("fade", "fading", (0.1, 0.3, 0.6), "contrast_loss"),
        ("sepia", "sepia", (0.2, 0.5, 0.9), "amount"),
        ("film_grain", "film_grain", (0.01, 0.03, 0.06), "sigma"),
        ("sharpen", "oversharpening", (0.4, 1.0, 1.8), "amount"),
    ],
)
def test_pipeline_severity_monotone_in_key_parameter(type_, key, values, field, astronaut) -> None:
    sev = [
        apply_pipeline(astronaut, [create_primitive(type_, **{field: v})], seed=1).severity[key]
        for v in values
    ]
    assert sev == sorted(sev) and len(set(sev)) == len(sev)


def test_jpeg_severity_monotone_through_the_pipeline(astronaut: np.ndarray) -> None:
    sev = [
        apply_pipeline(astronaut, [create_primitive("jpeg", qualities=[90, q])]).severity["jpeg"]
        for q in (80, 50, 20)
    ]
    assert sev == sorted(sev)


def test_apply_pipeline_accepts_plain_specs(astronaut: np.ndarray) -> None:
    res = apply_pipeline(
        astronaut, [{"type": "jpeg", "qualities": [50]}, {"type": "vignette", "params": {"strength": 0.3}}]
    )
    assert [lab.type for lab in res.labels] == ["jpeg", "vignette"] and res.preset == "custom"
    assert res.severity == {"jpeg": round((95 - 50) / 85, 4)}  # vignetting has no severity key
    with pytest.raises(ValueError, match="needs a 'type'"):
        apply_pipeline(astronaut, [{"qualities": [50]}])
