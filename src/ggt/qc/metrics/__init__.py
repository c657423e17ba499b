"""QC metric registry in the style of pyiqa.

::

    from ggt.qc.metrics import create_metric, compute_all, improvement

    ssim = create_metric("ssim")          # ssim.kind == "fr", ssim.lower_better is False, ssim.range
    ssim(lq, hq)                          # float; composite metrics return a dict of floats
    compute_all(lq, hq)                   # {"psnr": ..., "misalign.shift_px": ..., "niqe.gain": ...}
    improvement("niqe", lq, hq)           # > 0 when the HQ is better

Images are float32 RGB HxWx3 in [0, 1]. Full-reference metrics take ``(lq, hq)``, i.e. (reference,
image). See docs/qc-metrics.md for every metric, its conventions and timings.
"""

# Importing the modules registers their metrics.
from ggt.qc.metrics import (  # noqa: F401
    align,
    brisque,
    classic,
    colour,
    niqe,
    nr,
    pyiqa_adapter,
    resolution,
    structure,
)
from ggt.qc.metrics.base import METRICS, Metric, MetricUnavailableError, create_metric, list_metrics
from ggt.qc.metrics.compute import compute_all, default_metric_names, improvement
from ggt.qc.metrics.resolution import detail_scale
from ggt.qc.metrics.structure import MismatchResult, local_mismatch

__all__ = [
    "METRICS",
    "Metric",
    "MetricUnavailableError",
    "MismatchResult",
    "compute_all",
    "create_metric",
    "default_metric_names",
    "detail_scale",
    "improvement",
    "list_metrics",
    "local_mismatch",
]
