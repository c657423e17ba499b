"""BRISQUE through OpenCV's contrib ``quality`` module, with the LIVE model from Debian's opencv-data.

The pip OpenCV wheels carry the code but no model files; Debian's ``opencv-data`` package ships
``brisque_model_live.yml`` and ``brisque_range_live.yml`` under /usr/share/opencv4/quality.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict

from ggt.qc.metrics._image import as_rgb
from ggt.qc.metrics.base import Metric, MetricUnavailableError, register

BRISQUE_MODEL = "brisque_model_live.yml"
BRISQUE_RANGE = "brisque_range_live.yml"
# Searched in order; GGT_BRISQUE_DIR (if set) first.
BRISQUE_DIRS: list[str] = [
    "/usr/share/opencv4/quality",
    "/usr/share/opencv/quality",
    "/usr/local/share/opencv4/quality",
]
BRISQUE_INSTALL_HINT = "install Debian's opencv-data (apt-get install -y opencv-data) or set GGT_BRISQUE_DIR"


def find_model_files() -> tuple[Path, Path]:
    dirs = ([os.environ["GGT_BRISQUE_DIR"]] if os.environ.get("GGT_BRISQUE_DIR") else []) + BRISQUE_DIRS
    for d in dirs:
        m, r = Path(d) / BRISQUE_MODEL, Path(d) / BRISQUE_RANGE
        if m.is_file() and r.is_file():
            return m, r
    raise MetricUnavailableError(
        f"BRISQUE needs {BRISQUE_MODEL} and {BRISQUE_RANGE}; not found in {', '.join(dirs)}; "
        f"{BRISQUE_INSTALL_HINT}"
    )


class BrisqueOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    model_path: str | None = None
    range_path: str | None = None


@register
class BRISQUE(Metric):
    name: ClassVar[str] = "brisque"
    kind = "nr"
    lower_better = True
    range = (0.0, 100.0)
    description = "BRISQUE (Mittal et al. 2012), OpenCV contrib with the LIVE model (0 best, 100 worst)"
    Options = BrisqueOptions

    def _paths(self) -> tuple[Path, Path]:
        o: BrisqueOptions = self.options  # type: ignore[assignment]
        if o.model_path and o.range_path:
            paths = (Path(o.model_path), Path(o.range_path))
            for p in paths:
                if not p.is_file():
                    raise MetricUnavailableError(f"BRISQUE model file not found: {p}; {BRISQUE_INSTALL_HINT}")
            return paths
        return find_model_files()

    def check_available(self) -> None:
        if not hasattr(cv2, "quality"):
            raise MetricUnavailableError("BRISQUE needs cv2.quality: install opencv-contrib-python-headless")
        self._paths()

    def compute(self, *images: np.ndarray) -> float:
        self.check_available()
        model, rng = self._paths()
        img = as_rgb(images[0])
        bgr = cv2.cvtColor(np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
        score = float(cv2.quality.QualityBRISQUE_compute(bgr, str(model), str(rng))[0])
        return score if math.isfinite(score) else math.nan
