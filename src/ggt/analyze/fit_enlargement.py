"""Fit the enlargement detector (`enlargement.npz`) with PyTorch, and set its threshold.

    python -m ggt.analyze.fit_enlargement [--photos DIR] [--fold 0] [--folds 4] [--draws 24]
                                          [--epochs 3] [--jobs 2] [--calibrate] [--out FILE]

Material: the training photos `PHOTOS` (the eight tune photos, china, flower, grace_hopper) and a
user's clean `--photos` (the shipped net: the 42 `python -m ggt.pypi_photos DIR --fitted` scenes),
indexed in that order. Per photo and draw (`social_pairs`, seeds from `TRAIN_SEED`, never a seed of
the decision model's fit, its benchmark or the measure screen) a random crop gives a clean image (the
crop, or on odd draws a camera-like version of it) and a social_media render of it; eight random
64 px patches of each, high-passed (`enlargement.highpass`), labelled 0 and 1. The photos whose
index is `--fold` modulo `--folds` are left out of training: the threshold is then set on them
(`--calibrate`), where the net's logits are what a photo it never saw gets. Training: Adam 1e-3,
batch 128, binary cross-entropy, torch seed 0, the batch order seeded by the fold. The shipped net is
fold 0 of 4 (39 photos trained on, 14 left for the threshold). Needs torch (the `train` extra);
inference (`enlargement.py`) does not.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ggt.analyze import fit
from ggt.analyze.enlargement import ARCH, PATCH, WEIGHTS_PATH, highpass, load_enlargement_net
from ggt.analyze.patchnet import to_u8

PHOTOS = (*fit.TUNE, "china", "flower", "grace_hopper")
TRAIN_SEED = 8_000_000
# The seeds of `benchmarks/screen_social_measure.py`, whose rows the threshold is set on.
SCREEN_SEED = 7_000_000
PATCHES_PER_IMAGE = 8
CALIBRATION_DRAWS = 32
CLEAN_BUDGET = 0.01  # the share of unseen clean photos the override may call social_media


def social_pairs(photo: np.ndarray, index: int, draws: int, base: int) -> Iterator[tuple[int, np.ndarray]]:
    """Per draw a crop of `photo`, then (0, a clean version of it) and (1, a social_media render)."""
    from ggt.degrade import apply_preset

    for draw in range(draws):
        rng = np.random.default_rng([base, index, draw])
        img = fit._variant(photo, rng, retone=False)
        yield 0, img if draw % 2 == 0 else fit._clean_like(img, rng)
        yield 1, apply_preset(img, "social_media", seed=base + 100 * index + draw).image


def training_photos(user: tuple[str, ...] = ()) -> list[str]:
    """The photos in index order: the built-in ones, then the user's (absolute paths, sorted)."""
    return [*PHOTOS, *sorted(user)]


def render_job(args: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """High-passed patches (N, 3, PATCH, PATCH) float16 and labels (N,) of one photo."""
    cv2.setNumThreads(1)
    name, index, draws = args
    rng = np.random.default_rng([TRAIN_SEED, index, 99])
    xs, ys = [], []
    for y, img in social_pairs(fit._photo(name), index, draws, TRAIN_SEED):
        hp = highpass(to_u8(img))
        h, w = hp.shape[:2]
        if min(h, w) < PATCH:
            continue
        for _ in range(PATCHES_PER_IMAGE):
            r, c = rng.integers(0, h - PATCH + 1), rng.integers(0, w - PATCH + 1)
            xs.append(hp[r : r + PATCH, c : c + PATCH].transpose(2, 0, 1))
            ys.append(y)
    return np.stack(xs).astype(np.float16), np.array(ys, np.int8)


def build_net() -> Any:
    """The torch module whose weights `enlargement.EnlargementNet` reads (`save` names them)."""
    import torch
    from torch import nn

    layers: list[nn.Module] = []
    for cin, cout, stride in ARCH:
        layers += [nn.Conv2d(cin, cout, 3, stride, 1), nn.ReLU()]

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(*layers)
            self.head = nn.Linear(2 * ARCH[-1][1], 1)

        def forward(self, x: Any) -> Any:
            f = self.body(x)
            return self.head(torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)).squeeze(1)

    return Net()


def train(x: np.ndarray, y: np.ndarray, epochs: int, order_seed: int, log: Any = print) -> Any:
    """The fitted torch module, from (N, 3, PATCH, PATCH) patches and 0/1 labels."""
    import torch

    torch.manual_seed(0)
    net = build_net()
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    order = torch.Generator().manual_seed(order_seed)
    for epoch in range(epochs):
        t0, total = time.time(), 0.0
        perm = torch.randperm(len(xt), generator=order)
        for b in range(0, len(xt), 128):
            idx = perm[b : b + 128]
            loss = loss_fn(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        log(f"epoch {epoch + 1}/{epochs}: loss {total / len(xt):.4f} ({time.time() - t0:.0f} s)")
    return net.eval()


def save(net: Any, path: Path) -> None:
    sd = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    arrays = {f"conv{i}.{p}": sd[f"body.{2 * i}.{p}"] for i in range(len(ARCH)) for p in ("weight", "bias")}
    arrays.update({"head.weight": sd["head.weight"], "head.bias": sd["head.bias"]})
    np.savez_compressed(path, **arrays)


def _calibration_job(args: tuple[str, int, int, str]) -> list[float]:
    """The net's logits on the clean screen images of one photo that the analyzer reads clean."""
    from ggt.analyze.heuristic import HeuristicAnalyzer

    cv2.setNumThreads(1)
    name, index, draws, weights = args
    net = load_enlargement_net(weights)
    analyzer = HeuristicAnalyzer(enlargement=False)
    return [
        net.logit(img)
        for y, img in social_pairs(fit._photo(name), index, draws, SCREEN_SEED)
        if y == 0 and analyzer.analyze(img).category == "clean"
    ]


def threshold(
    photos: list[str], fold: int, folds: int, weights: str, jobs: int, draws: int = CALIBRATION_DRAWS
) -> tuple[float, int]:
    """The logit that `CLEAN_BUDGET` of the left-out photos' clean images reach (`draws` crops each,
    those the analyzer reads clean), and how many images there were."""
    work = [(n, i, draws, weights) for i, n in enumerate(photos) if i % folds == fold]
    with fit.render_pool(jobs) as pool:
        logits = [v for chunk in pool.map(_calibration_job, work) for v in chunk]
    return float(np.quantile(logits, 1 - CLEAN_BUDGET)), len(logits)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, nargs="+", default=[], help="more clean training photos")
    ap.add_argument("--fold", type=int, default=0, help="photos left out: index %% folds == fold")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--draws", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument(
        "--calibrate", action="store_true", help="then print the threshold the left-out photos set"
    )
    ap.add_argument("--calibration-draws", type=int, default=CALIBRATION_DRAWS)
    ap.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    args = ap.parse_args(argv)
    if not 0 <= args.fold < args.folds:
        ap.error(f"--fold must be in 0..{args.folds - 1}")
    try:
        photos = training_photos(fit.find_user_photos(args.photos) if args.photos else ())
    except ValueError as exc:
        ap.error(str(exc))
    t0 = time.time()
    with fit.render_pool(args.jobs) as pool:
        parts = list(pool.map(render_job, [(n, i, args.draws) for i, n in enumerate(photos)]))
    keep = [p for i, p in enumerate(parts) if i % args.folds != args.fold]
    x, y = np.concatenate([p[0] for p in keep]), np.concatenate([p[1] for p in keep])
    print(f"rendered {len(y)} training patches in {time.time() - t0:.0f} s", file=sys.stderr)
    import torch

    torch.set_num_threads(args.jobs)
    save(train(x, y, args.epochs, args.fold, log=lambda s: print(s, file=sys.stderr)), args.out)
    print(f"wrote {args.out} ({len(y)} patches of {len(keep)} photos, {args.epochs} epochs)")
    if args.calibrate:
        load_enlargement_net.cache_clear()
        weights = str(args.out.resolve())
        t, n = threshold(photos, args.fold, args.folds, weights, args.jobs, args.calibration_draws)
        print(f"enlargement_threshold: {t:.3f} (the {1 - CLEAN_BUDGET:.2f} quantile of {n} clean images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
