"""Metric base class and registry, in the style of pyiqa's ``create_metric``.

Each metric is a small class that carries its own metadata (full- or no-reference, direction, range)
and typed options (a pydantic model that rejects unknown fields), so QC policies, reports and the
calibration table can treat every metric alike without knowing its internals.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

Kind = Literal["fr", "nr"]
Value = float | dict[str, float]


class MetricUnavailableError(RuntimeError):
    """A metric needs a data file or package that is not installed; the message says which and how."""


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metric:
    """One image-quality measure. Subclasses set the class attributes and implement ``compute``.

    ``kind == "fr"`` metrics are called as ``m(lq, hq)`` (reference first, as ``(ref, img)``);
    ``kind == "nr"`` metrics as ``m(img)``. ``lower_better`` and ``range`` describe the primary value:
    the float a plain metric returns, or ``value[primary]`` for a composite metric returning a dict.
    """

    name: ClassVar[str]
    kind: ClassVar[Kind]
    lower_better: ClassVar[bool]
    range: ClassVar[tuple[float, float] | None]
    description: ClassVar[str] = ""
    # Composite metrics return a dict of floats; ``primary`` names the key the metadata describes.
    primary: ClassVar[str | None] = None
    # Name of the equivalent pyiqa metric, for the calibration test; None where there is none.
    pyiqa_name: ClassVar[str | None] = None
    # False for aliases and slow or optional metrics that ``compute_all`` leaves out unless named.
    default: ClassVar[bool] = True
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, **options: Any) -> None:
        try:
            self.options = self.Options(**options)
        except ValidationError as exc:
            raise ValueError(f"bad options for metric {self.name!r}: {exc}") from exc

    @property
    def composite(self) -> bool:
        return self.primary is not None

    def check_available(self) -> None:
        """Raise MetricUnavailableError when a needed file or package is missing; fine by default."""

    def __call__(self, *images: np.ndarray) -> Value:
        want = 2 if self.kind == "fr" else 1
        if len(images) != want:
            usage = "m(lq, hq)" if want == 2 else "m(img)"
            raise TypeError(f"metric {self.name!r} is {self.kind.upper()}: call it as {usage}")
        return self.compute(*images)

    def compute(self, *images: np.ndarray) -> Value:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"


METRICS: dict[str, type[Metric]] = {}


def register(cls: type[Metric]) -> type[Metric]:
    """Class decorator: add a metric to ``METRICS`` under its ``name``."""
    if cls.name in METRICS:
        raise ValueError(f"metric {cls.name!r} registered twice")
    METRICS[cls.name] = cls
    return cls


def list_metrics(kind: Kind | None = None) -> list[str]:
    """Registered metric names, sorted; only full- or no-reference ones when ``kind`` is given."""
    return sorted(n for n, c in METRICS.items() if kind is None or c.kind == kind)


def create_metric(name: str, **options: Any) -> Metric:
    """Build a metric by registry name with typed options; unknown names list the valid ones."""
    try:
        cls = METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(list_metrics())}") from None
    return cls(**options)
