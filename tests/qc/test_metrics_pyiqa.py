"""Calibration against pyiqa (the ``iqa`` extra): same definitions, numbers within 1e-4.

Skipped when pyiqa is not installed. Small images keep pyiqa's float64 convolutions quick.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from skimage import data

from ggt.degrade import apply_preset
from ggt.qc.metrics import create_metric

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# `make test` installs the iqa extra; the calibration must run, not skip, wherever the suite runs.
import pyiqa
import torch


def _pairs(large: bool) -> list[tuple[str, np.ndarray, np.ndarray]]:
    # MATLAB's downsample rule only acts from a short side of 384 up; other cases stay small and quick.
    sizes = (("chelsea", (451, 390)),) if large else (("astronaut", (256, 256)), ("coffee", (301, 200)))
    out = []
    for name, size in sizes:
        hq = cv2.resize(getattr(data, name)(), size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        for preset in ("social_media", "haze"):
            out.append((f"{name}-{preset}", apply_preset(hq, preset, seed=4).image, hq))
    return out


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("psnr", {}),
        ("psnr_y", {}),
        ("ssim", {}),
        ("ssim_rgb", {}),
        ("ms_ssim", {}),
        ("ssim", {"downsample": True}),
        ("ms_ssim", {"test_y_channel": False}),
        ("ms_ssim", {"is_prod": False}),
    ],
)
def test_matches_pyiqa(name, options):
    ours = create_metric(name, **options)
    ref = pyiqa.create_metric(ours.pyiqa_name, device="cpu", **options)
    for label, lq, hq in _pairs(large=bool(options.get("downsample"))):
        x, y = (torch.from_numpy(np.ascontiguousarray(i.transpose(2, 0, 1)))[None] for i in (lq, hq))
        with torch.no_grad():
            want = float(ref(x, y).item())
        assert ours(lq, hq) == pytest.approx(want, abs=1e-4), label
