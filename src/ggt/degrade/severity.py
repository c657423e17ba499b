"""How the simulator turns applied parameters into severities in [0, 1].

Each severity is a fixed, documented function of what was applied, so that a degradation analyzer
(heuristic or VLM) can be scored against it. The scales were chosen so that 1.0 is "as bad as it gets in
real photos of that category"; values beyond are clipped.

=================  ===================================================================================
key                definition (clipped to [0, 1])
=================  ===================================================================================
noise              sigma / (50/255), sigma the noise standard deviation in output units ([0, 1]
                   scale). Gaussian noise: its sigma. Poisson-Gaussian and low-light sensor noise:
                   the standard deviation of the noise actually added, measured in sRGB output.
                   Several noise steps add in quadrature (independent noises add variances).
blur               sigma_eq / 4 px, sigma_eq the kernel's RMS radius per axis, in input-resolution
                   pixels: Gaussian sigma; disk radius r -> r / 2; sinc with cutoff w -> 1.1774 / w
                   (the Gaussian with the same half-power frequency). A blur applied at a reduced
                   resolution s counts sigma_eq / s. Several blurs add in quadrature.
motion_blur        length / 30 px (input-resolution pixels; a length at reduced resolution s counts
                   length / s). Several add in quadrature.
low_resolution     log2(1 / s_min) / 3, s_min the smallest size reached relative to the input
                   (sqrt of the area ratio): x2 down -> 0.33, x4 -> 0.67, x8 -> 1.
jpeg               (95 - q) / 85 for the worst (lowest-quality) round of a JPEG or WebP chain:
                   q 95 -> 0, q 10 -> 1. WebP quality is taken on the same scale.
oversharpening     amount / 2 for an unsharp mask out = x + amount * (x - blur(x)).
haze               1 - mean transmission t over the image (I = J t + A (1 - t)); a uniform veil of
                   opacity v (rain and snow fog) is t = 1 - v.
rain               mean streak opacity over the image / 0.25 (0.25 is a downpour).
snow               mean flake opacity over the image / 0.12 (0.12 is a blizzard).
low_light          exposure drop in stops / 5 (5 stops = 1/32 of the light).
color_cast         max over channels of |log2(g_c / geometric mean of g)| / 0.5, g the linear
                   per-channel gains (0.5 stops of imbalance between channels = 1).
fading             1 - remaining dynamic range = 1 - (1 - contrast_loss) (1 - black_lift).
sepia              toning amount (0 = original colours, 1 = fully toned / monochrome).
film_grain         grain sigma at mid-grey / (40/255); several add in quadrature.
scratches          sum over scratches and creases of opacity * length / image diagonal, / 3.
dust               fraction of the image covered by specks / 0.008.
=================  ===================================================================================

Keys that no step touched are absent (not 0) from a result's severity. Vignetting has no key.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import get_args

import numpy as np

from ggt.analyze.report import DegradationType

# The simulator labels with the same names the analyzers report, so labels and reports compare directly.
SEVERITY_KEYS: tuple[str, ...] = get_args(DegradationType)

# Physical scales behind the table above.
NOISE_SIGMA_FULL = 50.0 / 255.0
BLUR_SIGMA_FULL = 4.0
MOTION_LENGTH_FULL = 30.0
LOW_RES_OCTAVES_FULL = 3.0
JPEG_Q_CLEAN = 95.0
JPEG_Q_WORST = 10.0
SHARPEN_AMOUNT_FULL = 2.0
RAIN_OPACITY_FULL = 0.25
SNOW_OPACITY_FULL = 0.12
LOW_LIGHT_STOPS_FULL = 5.0
COLOR_CAST_STOPS_FULL = 0.5
GRAIN_SIGMA_FULL = 40.0 / 255.0
SCRATCH_DIAGONALS_FULL = 3.0
DUST_COVERAGE_FULL = 0.008

# Keys whose raw value is linear in a length measured in pixels: a step applied at a reduced resolution
# s acts on a 1/s larger footprint of the input, so the pipeline divides their raw value by s.
SCALE_DEPENDENT: frozenset[str] = frozenset({"blur", "motion_blur"})
# Keys whose raw value is linear in a standard deviation of independent contributions: they combine in
# quadrature. All other keys combine by maximum (the worst step dominates what one sees).
QUADRATURE: frozenset[str] = frozenset({"noise", "blur", "motion_blur", "film_grain"})


def clip01(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def noise_severity(sigma: float) -> float:
    """Raw (unclipped) noise severity for a standard deviation in [0, 1] units."""
    return sigma / NOISE_SIGMA_FULL


def blur_severity(sigma_eq_px: float) -> float:
    return sigma_eq_px / BLUR_SIGMA_FULL


def motion_severity(length_px: float) -> float:
    return length_px / MOTION_LENGTH_FULL


def low_resolution_severity(min_scale: float) -> float:
    if min_scale >= 1.0:
        return 0.0
    return clip01(math.log2(1.0 / min_scale) / LOW_RES_OCTAVES_FULL)


def jpeg_severity(quality: float) -> float:
    return clip01((JPEG_Q_CLEAN - quality) / (JPEG_Q_CLEAN - JPEG_Q_WORST))


def color_cast_severity(gains: Iterable[float]) -> float:
    g = np.asarray(list(gains), dtype=np.float64)
    logs = np.log2(g)
    return clip01(float(np.max(np.abs(logs - logs.mean()))) / COLOR_CAST_STOPS_FULL)


def combine(contributions: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Fold per-step raw contributions (already resolution-corrected) into one clipped severity dict.

    Values are rounded to 4 decimals so labels are stable text; the ordering follows SEVERITY_KEYS.
    """
    quad: dict[str, float] = {}
    peak: dict[str, float] = {}
    for key, value in contributions:
        if key not in SEVERITY_KEYS:
            raise ValueError(f"unknown severity key {key!r}; valid keys: {', '.join(SEVERITY_KEYS)}")
        if key in QUADRATURE:
            quad[key] = quad.get(key, 0.0) + float(value) ** 2
        else:
            peak[key] = max(peak.get(key, 0.0), float(value))
    merged = {k: math.sqrt(v) for k, v in quad.items()} | peak
    return {k: round(clip01(merged[k]), 4) for k in SEVERITY_KEYS if k in merged}
