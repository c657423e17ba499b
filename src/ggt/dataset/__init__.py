"""Exported datasets: writers (folder/BasicSR, webdataset, parquet, HF), splits, card, verify, loaders.

`PairedDataset` and `webdataset_pipeline` need torch; they load on first use so `import ggt.dataset`
stays light for the core install.
"""

from __future__ import annotations

from typing import Any

from ggt.dataset.exporter import FORMATS, ExportError, ExportSummary, ExportUsageError, SkippedPair, export
from ggt.dataset.manifest import VerifyReport, verify
from ggt.dataset.split import SplitError, SplitSpec

__all__ = [
    "FORMATS", "ExportError", "ExportSummary", "ExportUsageError", "PairedDataset", "SkippedPair", "SplitError", "SplitSpec",
    "VerifyReport", "export", "verify", "webdataset_pipeline",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in ("PairedDataset", "webdataset_pipeline", "paired_crop"):
        from ggt.dataset import loaders

        return getattr(loaders, name)
    raise AttributeError(f"module 'ggt.dataset' has no attribute {name!r}")
