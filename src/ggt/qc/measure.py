"""Every metric for one pair, one metric's failure not costing the others."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ggt.qc.metrics import compute_all, default_metric_names


def measure_pair(
    lq: np.ndarray, hq: np.ndarray, names: Iterable[str] | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """`compute_all` metric by metric: (values, {metric: error}) instead of one exception for the pair.

    A metric that cannot run on this pair (MS-SSIM on a photo under 176 px, NIQE under 96x192) leaves its
    keys out and says why; a policy rule over a missing key then sends the pair to review.
    """
    values: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name in default_metric_names() if names is None else list(names):
        try:
            values.update(compute_all(lq, hq, [name]))
        except Exception as exc:  # a broken metric (or a broken install of it) must not sink the others
            errors[name] = f"{type(exc).__name__}: {exc}"
    return values, errors
