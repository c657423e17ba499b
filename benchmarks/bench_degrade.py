"""Time every degradation preset on a 1024x1024 photo, one core.

    .venv/bin/python benchmarks/bench_degrade.py [--size 1024] [--seeds 20]

The target is under ~1 s per call at 1024x1024 on one core (presets draw different recipes per seed, so
the worst seed matters as much as the median).
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np
from skimage import data

from ggt.degrade import apply_preset, list_presets


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    img = cv2.resize(data.astronaut(), (args.size, args.size), interpolation=cv2.INTER_AREA)
    img = img.astype(np.float32) / 255
    print(f"{'preset':<14}{'median ms':>10}{'max ms':>10}")
    for preset in list_presets():
        times = []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            apply_preset(img, preset, seed)
            times.append((time.perf_counter() - t0) * 1000)
        print(f"{preset:<14}{statistics.median(times):>10.0f}{max(times):>10.0f}")


if __name__ == "__main__":
    main()
