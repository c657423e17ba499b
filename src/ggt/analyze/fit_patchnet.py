"""Fit the patch classifier (`patchnet.npz`) with PyTorch on rendered training patches.

    python -m ggt.analyze.fit_patchnet [--seeds 120] [--epochs 2] [--jobs 2] [--cache FILE]
                                       [--photos DIR ...] [--exclude PHOTO ...] [--out FILE]

Renders, per training photo (`fit.TUNE` and `fit.EXTRA`, plus a user's clean `--photos` as
`ggt.analyze.fit` takes them) and training seed (below 1000, as `ggt.analyze.fit`), the same
material as the decision model's fit: clean variants (as is, camera JPEG, mild denoise, resize,
Pillow JPEG/WebP, sharpening), the simulator's six category presets, the independent renderers of
`calibration` and `altrender`; four random 96 px patches of each image are kept (uint8; about 1250
patches per seed of the 13 built-in photos, 2.3 s of two cores). `--cache` keeps the rendered
patches (an `.npz`) and reuses them. Training: AdamW with a one-cycle schedule, batch 128,
class-balanced cross-entropy with label smoothing 0.05, random horizontal flips (not turns: rain
falls near vertical). `--exclude` leaves photos out (the fold models used to choose how the analyzer
weighs the net; docs/analyzer-accuracy.md). Needs torch (the `train` extra); inference
(`patchnet.py`) does not.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ggt.analyze import altrender, calibration, fit
from ggt.analyze.patchnet import ARCH, CATEGORIES, PATCH, WEIGHTS_PATH, at_least_patch, to_u8

PATCHES_PER_IMAGE = 4
PHOTOS = (*fit.TUNE, *fit.EXTRA)


def _random_patches(img: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    u8 = at_least_patch(to_u8(img))
    h, w = u8.shape[:2]
    out = []
    for _ in range(PATCHES_PER_IMAGE):
        y, x = int(rng.integers(0, h - PATCH + 1)), int(rng.integers(0, w - PATCH + 1))
        out.append(u8[y : y + PATCH, x : x + PATCH])
    return out


def render_job(args: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Patches (N, 96, 96, 3) uint8 and category indices (N,) of one photo and one training seed."""
    from ggt.degrade import apply_preset

    cv2.setNumThreads(1)
    name, index, seed = args
    photo = fit._photo(name)
    rng = np.random.default_rng([seed, index, 11])
    prng = np.random.default_rng([seed, index, 77])
    retone = seed >= fit.PLAIN_SEEDS
    xs: list[np.ndarray] = []
    ys: list[int] = []

    def add(cat: str, out: np.ndarray) -> None:
        for p in _random_patches(out, prng):
            xs.append(p)
            ys.append(CATEGORIES.index(cat))

    for _ in range(2):
        img = fit._variant(photo, rng, retone)
        add("clean", img)
        add("clean", fit._clean_like(img, rng))
    img = fit._variant(photo, rng, retone)
    for preset in CATEGORIES[1:]:
        add(preset, apply_preset(img, preset, seed=seed * 1000 + index).image)
    img = fit._variant(photo, rng, retone)
    for c, cat in enumerate(CATEGORIES[1:]):
        add(cat, calibration.scene(img, cat, np.random.default_rng([seed, index, c, 11]))[0])
    arng = np.random.default_rng([seed, index, 23])
    for _ in range(2):
        add("clean", altrender.clean_variant(fit._variant(photo, arng, retone), arng))
    for fn in altrender.SCENES.values():
        out, cat = fn(fit._variant(photo, arng, retone), arng)
        if cat is not None:
            add(cat, out)
    return np.stack(xs), np.asarray(ys, dtype=np.int8)


def render(seeds: int, first: int, jobs: int, user: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Patches `X`, labels `Y` and photo names `photo` of every training photo (the built-in ones and
    `user`, absolute paths) and seed."""
    work = [(n, i, s) for s in range(first, first + seeds) for n, i in fit.training_photos(user)]
    with fit.render_pool(jobs) as pool:
        parts = list(pool.map(render_job, work))
    return {
        "X": np.concatenate([x for x, _ in parts]),
        "Y": np.concatenate([y for _, y in parts]),
        "photo": np.concatenate([np.full(len(y), w[0]) for (_, y), w in zip(parts, work, strict=True)]),
    }


def build_net() -> Any:
    """The torch module whose state dict `patchnet.PatchNet` reads (same names, same layout)."""
    import torch
    from torch import nn

    layers: list[nn.Module] = [nn.PixelUnshuffle(2)]
    for cin, cout, stride in ARCH:
        layers += [nn.Conv2d(cin, cout, 3, stride, 1), nn.ReLU(inplace=True)]

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.f = nn.Sequential(*layers)
            self.h = nn.Linear(2 * ARCH[-1][1], len(CATEGORIES))

        def forward(self, x: Any) -> Any:
            f = self.f(x - 0.5)
            return self.h(torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1))

    return Net()


def train(
    x: np.ndarray, y: np.ndarray, epochs: int, seed: int = 0, batch: int = 128, log: Any = print
) -> Any:
    """The fitted torch module."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    net = build_net()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    counts = np.bincount(y, minlength=len(CATEGORIES)).astype(np.float64)
    weight = torch.tensor(counts.sum() / np.maximum(counts, 1) / len(CATEGORIES), dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.05)
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    steps_per_epoch = max(1, len(yt) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * steps_per_epoch)
    for epoch in range(epochs):
        t0, total = time.time(), 0.0
        net.train()
        order = torch.randperm(len(yt))
        for k in range(steps_per_epoch):
            idx = order[k * batch : (k + 1) * batch]
            xb = xt[idx].permute(0, 3, 1, 2).float() / 255
            flip = torch.rand(len(idx)) < 0.5
            xb[flip] = xb[flip].flip(3)
            loss = loss_fn(net(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        log(f"epoch {epoch + 1}/{epochs}: loss {total / steps_per_epoch:.4f} ({time.time() - t0:.0f} s)")
    return net.eval()


def save(net: Any, path: Path) -> None:
    arrays = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    np.savez(path, **arrays)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=120)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for training")
    ap.add_argument("--cache", type=Path, help="rendered patches (.npz), written once and reused")
    ap.add_argument(
        "--photos",
        type=Path,
        nargs="+",
        default=[],
        help="your own clean photos (files or folders), as `ggt.analyze.fit --photos` takes them",
    )
    ap.add_argument("--exclude", nargs="*", default=[], choices=PHOTOS, metavar="PHOTO")
    ap.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    args = ap.parse_args(argv)
    if args.first_seed + args.seeds > 1000:
        ap.error("training seeds must stay below 1000 (the benchmark measures on 1000 and up)")
    seeds = np.arange(args.first_seed, args.first_seed + args.seeds)
    if args.photos and args.cache and args.cache.exists():
        ap.error("--photos renders new training patches: give a --cache file that does not exist yet")
    if args.cache and args.cache.exists():
        with np.load(args.cache) as d:
            data = {k: d[k] for k in d.files}
        if "seeds" in data and not np.array_equal(data["seeds"], seeds):
            ap.error(
                f"--cache {args.cache} holds seeds {data['seeds'][0]}-{data['seeds'][-1]}, not "
                f"{seeds[0]}-{seeds[-1]}: give those --first-seed/--seeds or another --cache"
            )
    else:
        t0 = time.time()
        try:
            user = fit.find_user_photos(args.photos) if args.photos else ()
        except ValueError as exc:
            ap.error(str(exc))
        data = {**render(args.seeds, args.first_seed, args.jobs, user), "seeds": seeds}
        print(f"rendered {len(data['Y'])} patches in {time.time() - t0:.0f} s", file=sys.stderr)
        if args.cache:
            np.savez(args.cache, **data)
    keep = ~np.isin(data["photo"], args.exclude)
    import torch

    torch.set_num_threads(args.threads)
    net = train(data["X"][keep], data["Y"][keep], args.epochs, log=lambda s: print(s, file=sys.stderr))
    save(net, args.out)
    print(f"wrote {args.out} ({int(keep.sum())} patches, {args.epochs} epochs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
