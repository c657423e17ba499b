"""Convenience entry points: every metric for one pair as a flat dict, and signed NR improvement."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ggt.qc.metrics._image import as_rgb, resize_to
from ggt.qc.metrics.base import METRICS, Metric, MetricUnavailableError, create_metric


def improvement(metric: Metric | str, lq: np.ndarray, hq: np.ndarray) -> float:
    """Signed gain of an NR metric from LQ to HQ; positive means HQ is better whatever the direction."""
    m = create_metric(metric) if isinstance(metric, str) else metric
    if m.kind != "nr":
        raise ValueError(f"improvement needs a no-reference metric, {m.name!r} is full-reference")
    a, b = m(lq), m(hq)
    if not isinstance(a, float) or not isinstance(b, float):
        raise ValueError(f"improvement needs a metric returning a float, {m.name!r} returns a dict")
    return a - b if m.lower_better else b - a


def default_metric_names() -> list[str]:
    """Metrics ``compute_all`` runs when no names are given: all but aliases and unavailable ones."""
    names = []
    for name, cls in METRICS.items():
        if not cls.default:
            continue
        try:
            cls().check_available()
        except MetricUnavailableError:
            continue
        names.append(name)
    return names


def compute_all(lq: np.ndarray, hq: np.ndarray, names: Iterable[str] | None = None) -> dict[str, float]:
    """Run metrics on one pair and flatten the results into ``{key: float}``.

    Full-reference metrics give ``name`` (or ``name.key`` for composite ones, e.g.
    ``misalign.shift_px``); no-reference metrics give ``name.lq``, ``name.hq`` and ``name.gain`` (the
    signed ``improvement``). An HQ of another size is resized onto the LQ's size once, because the
    pixel-wise metrics need equal shapes (the tolerant ones would resize anyway). With ``names=None``
    metrics whose data files are missing are left out; a named one raises ``MetricUnavailableError``.
    """
    lq, hq = as_rgb(lq, "lq"), as_rgb(hq, "hq")
    if hq.shape != lq.shape:
        hq = resize_to(hq.astype(np.float32, copy=False), (lq.shape[1], lq.shape[0]))
    out: dict[str, float] = {}
    for name in default_metric_names() if names is None else list(names):
        m = create_metric(name)
        if m.kind == "fr":
            v = m(lq, hq)
            if isinstance(v, dict):
                out.update({f"{name}.{k}": float(x) for k, x in v.items()})
            else:
                out[name] = float(v)
        else:
            a, b = m(lq), m(hq)
            if isinstance(a, dict) or isinstance(b, dict):  # pragma: no cover - no composite NR metric yet
                raise ValueError(f"composite no-reference metric {name!r} is not supported here")
            out[f"{name}.lq"], out[f"{name}.hq"] = float(a), float(b)
            gain = (a - b) if m.lower_better else (b - a)
            out[f"{name}.gain"] = gain if math.isfinite(gain) else math.nan
    return out
