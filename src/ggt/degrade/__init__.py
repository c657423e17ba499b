"""Synthetic degradation simulator: primitives, category presets and a folder runner.

Images are float32 RGB HxWx3 in [0, 1]; every random choice comes from a seed, so the same input, preset
and seed give the same bytes. Each result carries labels (the exact steps and parameters applied,
replayable) and a severity per degradation key in [0, 1], defined in ``ggt.degrade.severity``.
Outputs are bit-identical for the same seed on one platform and library versions (OpenCV's SIMD paths
may round differently on another CPU).

::

    from ggt.degrade import apply_preset, create_primitive

    res = apply_preset(img, "rain", seed=7)
    res.image, res.severity  # e.g. {"rain": 0.41, "haze": 0.2, "jpeg": 0.18}
    out, params = create_primitive("jpeg", qualities=[60, 40])(img)  # a primitive by registry name
"""

from ggt.degrade import photo, primitives, weather  # noqa: F401  (import registers the primitives)
from ggt.degrade.base import Applied, Primitive, create_primitive, primitive_types
from ggt.degrade.folder import DegradeSummary, FailedItem, degrade_folder
from ggt.degrade.pipeline import DegradeResult, Label, apply_pipeline
from ggt.degrade.presets import PRESETS, Preset, apply_preset, list_presets
from ggt.degrade.severity import SEVERITY_KEYS

__all__ = [
    "PRESETS",
    "SEVERITY_KEYS",
    "Applied",
    "DegradeResult",
    "DegradeSummary",
    "FailedItem",
    "Label",
    "Preset",
    "Primitive",
    "apply_pipeline",
    "apply_preset",
    "create_primitive",
    "degrade_folder",
    "list_presets",
    "primitive_types",
]
