"""Running a list of primitives and turning what they did into labels and severities."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ggt.degrade import severity as sv
from ggt.degrade.base import Primitive, check_image, create_primitive

StepSpec = Primitive | Mapping[str, Any]


@dataclass(frozen=True)
class Label:
    """One applied step: ``type`` and the exact ``params`` (replayable with ``create_primitive``), plus
    ``stats``: derived exact measurements (mean transmission, kernel RMS radius, ...) that are not inputs,
    and ``scale``: the image size relative to the input (sqrt of the area ratio) when the step ran."""

    type: str
    params: dict[str, Any]
    stats: dict[str, float] = field(default_factory=dict)
    scale: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "params": self.params}
        if self.stats:
            d["stats"] = {k: round(v, 6) for k, v in self.stats.items()}
        if self.scale != 1.0:
            d["scale"] = round(self.scale, 6)
        return d


@dataclass(frozen=True)
class DegradeResult:
    """A degraded image and its ground-truth labels.

    ``seed`` is an int that reproduces the result with the same preset and input; ``labels`` are the
    steps in the order applied; ``severity`` maps keys of ``ggt.degrade.SEVERITY_KEYS`` to [0, 1] as
    defined in ``ggt.degrade.severity`` (keys no step touched are absent).
    """

    image: np.ndarray
    preset: str
    seed: int
    labels: list[Label]
    severity: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """Everything but the pixels, JSON-ready."""
        return {
            "preset": self.preset,
            "seed": self.seed,
            "labels": [lab.to_dict() for lab in self.labels],
            "severity": dict(self.severity),
        }


def _as_primitive(step: StepSpec) -> Primitive:
    if isinstance(step, Primitive):
        return step
    spec = dict(step)
    if "type" not in spec:
        raise ValueError(f"a pipeline step needs a 'type': {spec!r}")
    params = spec.get("params", {k: v for k, v in spec.items() if k != "type"})
    return create_primitive(spec["type"], **params)


def run_steps(
    img: np.ndarray, steps: Iterable[StepSpec], rng: np.random.Generator
) -> tuple[np.ndarray, list[Label], dict[str, float]]:
    """Apply steps in order; return the image, the labels and the combined severity.

    Resolution bookkeeping: blur and motion lengths measured at a reduced size count 1/scale larger in
    input pixels, and ``low_resolution`` follows from the smallest size reached.
    """
    img = check_image(img)
    h0, w0 = img.shape[:2]
    labels: list[Label] = []
    contributions: list[tuple[str, float]] = []
    min_scale = 1.0
    for step in steps:
        prim = _as_primitive(step)
        scale = math.sqrt(img.shape[0] * img.shape[1] / (h0 * w0))
        applied = prim.apply(img, rng)
        img = applied.image
        labels.append(Label(applied.type, applied.params, dict(applied.stats), scale))
        for key, raw in applied.severity.items():
            contributions.append((key, raw / scale if key in sv.SCALE_DEPENDENT else raw))
        min_scale = min(min_scale, math.sqrt(img.shape[0] * img.shape[1] / (h0 * w0)))
    low_res = sv.low_resolution_severity(min_scale)
    if low_res > 0:
        contributions.append(("low_resolution", low_res))
    return img, labels, sv.combine(contributions)


def seed_to_int(seed: int | np.random.Generator) -> int:
    """An int seed from either form: a Generator yields one draw, so results stay reproducible by int."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63 - 1))
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or a numpy Generator, got {seed!r}")
    return int(seed)


def apply_pipeline(
    img: np.ndarray, steps: Sequence[StepSpec], seed: int | np.random.Generator = 0, name: str = "custom"
) -> DegradeResult:
    """Apply an explicit list of steps (primitives or ``{"type", "params"}`` dicts, e.g. a result's labels).

    Replaying ``[lab.to_dict() for lab in result.labels]`` on the same input gives the same bytes, since
    every random step's seed is in its params.
    """
    s = seed_to_int(seed)
    out, labels, severity = run_steps(img, steps, np.random.default_rng(s))
    return DegradeResult(out, name, s, labels, severity)
