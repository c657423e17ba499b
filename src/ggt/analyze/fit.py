"""Re-fit the analyzer's decision model (`heuristic_model.json`) from rendered training material.

    python -m ggt.analyze.fit [--seeds 32] [--jobs 2] [--parts base extra alt] [--cache FILE ...]

Renders the training material (slow: about an hour of one core per 32 seeds of `base`; cached as JSON
at --cache and reused from there; several caches may be given, each rendered with its own --first-seed,
--seeds and --parts, and `--render-only` renders without fitting), then fits and writes
`heuristic_model.json`. `--add-measures` completes caches rendered before a measure existed
(`ADDED_MEASURES`): it re-renders their rows and computes only the new measures. Seeded per photo and
seed: the same seeds and parts give the same rows, however they are split into caches; the same rows
give the same classifier, while the regressors' L-BFGS fits were seen to differ slightly between runs
on a loaded machine (see docs/analyzer-accuracy.md, with the shipped model's exact commands).

Training photos: the TUNE photos of scikit-image (astronaut, camera, chelsea, coins, brick, grass, page,
rocket) and the EXTRA photos other installed packages ship (scikit-learn's china and flower, matplotlib's
grace_hopper, scikit-image's ihc and cell micrographs), at random crops, scales, turns and tone curves;
training seeds below 1000. The benchmark measures on seeds 1000 and up and on the held-out scikit-image
photos (coffee, hubble_deep_field, retina, moon, text, gravel, motorcycle, clock), never opened here.
`--photos DIR ...` adds the user's own clean photos (files or folders) to the `extra` and `alt` parts:
thirteen scenes teach "clean" as "looks like one of these", so a model refitted on photos of the user's
own domain (`--out FILE`, then `analyze.heuristic.model: FILE`) keeps that domain's clean scenes clean.
They must be clean: every one is rendered as clean variants and as each degradation. The patch
classifier (`fit_patchnet`) is not refitted by this.

Parts (each per photo and seed):
- `base` (`_job`, TUNE photos; `extra`: the same on EXTRA photos): clean variants (as is, a q 90-97
  OpenCV JPEG, a mild bilateral denoise, a resize); the simulator's six category presets and single
  simulator primitives with parameters drawn over their whole range; the independent renderers of
  `ggt.analyze.calibration`, whole scenes and single degradations;
- `alt` (`_alt_job`, all photos): the Pillow/scikit-image renderers of `ggt.analyze.altrender` (other
  encoders incl. WebP, other noise models, drawn rain and snow, other fog and toning) and their clean
  variants (Pillow JPEG/WebP at high quality, sharpening, Lanczos resizes, mild tone edits).

What is fitted (numpy + scipy + scikit-learn at fit time; inference in `model.py` is numpy only):
a feature transform (log of heavy-tailed measures, standardisation), a 32-unit perceptron for the
scene category, per severity key a 16-unit perceptron regressor (noise: the noise estimate alone)
followed by an isotonic (monotone, piecewise-linear) calibration onto the simulator's physical
severity scale, and the decision rule: a logit offset for `clean` and per degraded category an
evidence gate (the least severity one of its own degradations must show, `model.EVIDENCE`), both
chosen on out-of-photo (GroupKFold by photo) predictions. `--members K` fits every perceptron K times
(seeds 0..K-1) and averages them: the fit seed alone moved a refit's gates and its clean rate on
unseen photos by several points (docs/analyzer-accuracy.md, fourteenth session). The patch classifier
whose opinion joins this model's at decision time (`heuristic.PATCH_WEIGHT`) is fitted apart, by
`fit_patchnet`; its probabilities never enter this model's features.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console

from ggt.analyze import calibration
from ggt.analyze.measures import compute_measures, jpeg_grid_spectrum, noise_sigma, rain_lines, vignetting
from ggt.analyze.model import AnalyzerModel, raw_features
from ggt.progress import ProgressFn, progress_bar

TUNE = ("astronaut", "camera", "chelsea", "coins", "brick", "grass", "page", "rocket")
# More scenes for the fit, from files other installed packages ship (none is a scikit-image photo the
# benchmark holds out): a landscape, a flower close-up, a portrait, a stained tissue micrograph and a
# flat grey fluorescence micrograph. Eight scenes teach "clean" as "looks like one of these eight".
EXTRA = {
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "ihc": ("skimage", "data/ihc.png"),
    "cell": ("skimage", "data/cell.png"),
}
CATEGORIES = ("clean", "social_media", "old_photo", "rain", "snow", "haze", "low_light")
SEVERITY_KEYS = ("noise", "blur", "jpeg", "haze", "low_light")
MODEL_PATH = Path(__file__).with_name("heuristic_model.json")
PLAIN_SEEDS = 16
USER_PHOTO_MAX_SIDE = 1536
# Single steps below the lower bound look clean to a person, above the upper bound they are a
# degraded (shared, re-compressed) photo; in between the label is a matter of taste, so such samples
# train the severities but not the category.
_CLEAN_BELOW = {"noise": 0.06, "blur": 0.12, "jpeg": 0.08, "haze": 0.08, "low_light": 0.1}
_DEGRADED_ABOVE = {"noise": 0.2, "blur": 0.25, "jpeg": 0.3, "haze": 0.2, "low_light": 0.2}
_STEP_CATEGORY = {
    "noise": "social_media",
    "blur": "social_media",
    "jpeg": "social_media",
    "haze": "haze",
    "low_light": "low_light",
}


def _photo_label(name: str) -> str:
    """How a training photo is named in the model file: a user's photo (`--photos`) by its file name
    alone, since a model file is shared and its folders are nobody else's business."""
    return Path(name).stem if os.path.isabs(name) else name


def _photo(name: str) -> np.ndarray:
    if os.path.isabs(name):  # a user's photo (`--photos`)
        from ggt.analyze.measures import resize_max
        from ggt.imaging import read_image

        # Capped at the size of the largest built-in photos: a 24 MP original would make each render
        # ten times slower, and the measures read at most 1024 px crops.
        return resize_max(read_image(name), USER_PHOTO_MAX_SIDE)
    if name in EXTRA:
        import importlib

        pkg, rel = EXTRA[name]
        root = Path(importlib.import_module(pkg).__file__ or "").parent
        img = cv2.imread(str(root / rel), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(root / rel)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    from ggt.photos import load_photo

    return load_photo(name).astype(np.float32) / 255.0


def _variant(img: np.ndarray, rng: np.random.Generator, retone: bool) -> np.ndarray:
    """A random crop, sometimes area-downscaled: the same scene at another framing and resolution;
    with `retone`, also turned by a multiple of 90 degrees and often re-toned (`_retone`)."""
    h, w = img.shape[:2]
    f = float(rng.uniform(0.5, 1.0))
    ch, cw = max(96, int(h * f)), max(96, int(w * f))
    ch, cw = min(ch, h), min(cw, w)
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = img[y : y + ch, x : x + cw]
    if rng.uniform() < 0.35:
        s = float(rng.uniform(0.5, 0.95))
        out = cv2.resize(out, (max(64, round(cw * s)), max(64, round(ch * s))), interpolation=cv2.INTER_AREA)
    if retone:
        out = np.rot90(out, int(rng.integers(4)))
        if rng.uniform() < 0.6:
            out = _retone(out, rng)
    return np.ascontiguousarray(out, dtype=np.float32)


def _retone(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another clean scene from the same photo: a different tone curve, contrast and colourfulness.

    Eight tune photos are few scenes; without this, "clean" is learnt as "looks like one of these
    eight" and any new scene that is darker, flatter or greyer than them reads as degraded. The ranges
    stay within what a well-exposed photo shows (no lifted blacks, no crushed range)."""
    out = np.power(np.clip(img, 0, 1), float(rng.uniform(0.75, 1.35)))
    mean = float(out.mean())
    out = mean + (out - mean) * float(rng.uniform(0.85, 1.2))
    grey = out.mean(axis=2, keepdims=True)
    sat = 0.0 if rng.uniform() < 0.2 else float(rng.uniform(0.4, 1.3))
    out = grey + (out - grey) * sat
    return np.clip(out, 0, 1).astype(np.float32)


def _clean_like(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a clean photo from a camera or a stock library carries: high-quality JPEG, mild denoise."""
    kind = int(rng.integers(3))
    if kind == 0:
        q = int(rng.integers(90, 98))
        u8 = cv2.cvtColor((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
        _, enc = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, q])
        return cv2.cvtColor(cv2.imdecode(enc, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    if kind == 1:
        return cv2.bilateralFilter(img, 5, float(rng.uniform(0.02, 0.06)), float(rng.uniform(1.0, 3.0)))
    h, w = img.shape[:2]
    s = float(rng.uniform(0.6, 0.9))
    return cv2.resize(img, (max(64, round(w * s)), max(64, round(h * s))), interpolation=cv2.INTER_AREA)


def sim_step(key: str, rng: np.random.Generator) -> Any:
    """One simulator primitive for `key`, parameters drawn over the whole range a photo may show."""
    from ggt.degrade import create_primitive as P

    u = rng.uniform
    if key == "noise":
        if u() < 0.5:
            return P("gaussian_noise", sigma=round(u(0.5, 45) / 255, 5), gray=bool(u() < 0.4))
        return P(
            "poisson_gaussian_noise",
            a=round(u(1e-5, 6e-3), 6),
            b=round(u(0.0, 0.03), 4),
            gray=bool(u() < 0.4),
        )
    if key == "blur":
        if u() < 0.5:
            return P("gaussian_blur", sigma=round(u(0.2, 5.0), 3))
        return P("defocus_blur", radius=round(u(0.5, 10.0), 3))
    if key == "jpeg":
        return P("jpeg", qualities=[int(rng.integers(5, 99))])
    if key == "haze":
        grey = u(0.65, 1.0)
        tint = u(-0.05, 0.05)
        return P(
            "haze",
            beta=round(u(0.05, 3.2), 3),
            airlight=(min(1.0, grey - tint), grey, min(1.0, grey + tint)),
            w_vertical=round(u(0.0, 0.8), 3),
            w_luminance=round(u(0.0, 0.6), 3),
            w_random=round(u(0.0, 0.6), 3),
            depth_min=round(u(0.05, 0.5), 3),
        )
    if key == "low_light":
        return P(
            "low_light",
            stops=round(u(0.2, 5.5), 3),
            gamma=round(u(0.6, 1.1), 3),
            a=round(u(0.0, 5e-4), 6),
            b=round(u(0.0, 4e-3), 5),
        )
    raise ValueError(key)


def own_step_physical(key: str, s: float) -> float:
    """An independent renderer's severity on the simulator's physical scale (`ggt.degrade.severity`),
    where the renderer's parameter maps onto it exactly; None-like -1 where it does not."""
    if key == "noise":  # sigma = 0.15 s, full scale 50/255
        return 0.15 * s / (50 / 255)
    if key == "blur":  # sigma-equivalent 0.4 + 5.6 s px, full scale 4 px
        return (0.4 + 5.6 * s) / 4.0
    if key == "jpeg":  # quality 95 - 90 s, severity (95 - q) / 85
        return (95 - round(95 - 90 * s)) / 85
    return -1.0


_OWN_STEP = {
    "noise": calibration.add_noise,
    "blur": calibration.add_blur,
    "jpeg": calibration.jpeg,
    "haze": calibration.add_haze,
    "low_light": calibration.low_light,
}


def _step_category(key: str, sev: float) -> str | None:
    if sev < _CLEAN_BELOW[key]:
        return "clean"
    if sev > _DEGRADED_ABOVE[key]:
        return _STEP_CATEGORY[key]
    return None


# Measures added after a cache was rendered: `--add-measures` re-renders the cached rows (cheap) and
# computes only these on them (with the noise estimate, which all of them take and which must equal
# the cached one: the check that the re-rendered image is the cached row's image).
ADDED_MEASURES = (rain_lines, vignetting, jpeg_grid_spectrum)
_measure = compute_measures


def _added_measures(img: np.ndarray) -> dict[str, float]:
    sigma = noise_sigma(img)
    out = {"noise_sigma": sigma}
    for fn in ADDED_MEASURES:
        out.update(fn(img, noise=sigma))
    return out


def lacks_added_measures(rows: list[dict[str, Any]]) -> bool:
    """Whether any cached row misses one of the `ADDED_MEASURES`."""
    probe = set(_added_measures(np.full((64, 64, 3), 0.5, np.float32)))
    return any(not probe <= set(r["m"]) for r in rows)


def _partial_job(fn: Any, args: tuple[str, int, int]) -> list[dict[str, Any]]:
    """`fn(args)` with only `_added_measures` computed."""
    global _measure
    _measure = _added_measures
    try:
        return fn(args)
    finally:
        _measure = compute_measures


def _job(args: tuple[str, int, int]) -> list[dict[str, Any]]:
    """All training samples of one tune photo and one training seed."""
    from ggt.degrade import apply_pipeline, apply_preset

    cv2.setNumThreads(1)
    name, index, seed = args
    photo = _photo(name)
    rows: list[dict[str, Any]] = []

    def add(src: str, cat: str | None, out: np.ndarray, targets: dict[str, float]) -> None:
        rows.append({"photo": name, "seed": seed, "src": src, "cat": cat, "t": targets, "m": _measure(out)})

    rng = np.random.default_rng([seed, index, 11])
    # The first PLAIN_SEEDS seeds show the photos as shipped; later seeds also re-tone them.
    retone = seed >= PLAIN_SEEDS
    zero = dict.fromkeys(SEVERITY_KEYS, 0.0)
    for _ in range(2):
        img = _variant(photo, rng, retone)
        add("clean", "clean", img, dict(zero))
        add("clean", "clean", _clean_like(img, rng), dict(zero))
    img = _variant(photo, rng, retone)
    for preset in CATEGORIES[1:]:
        res = apply_preset(img, preset, seed=seed * 1000 + index)
        # Whole-preset labels are kept only where they are what the photo shows (see the benchmark
        # notes: social_media's noise and blur are labelled before a downscale removes them).
        t = {k: float(res.severity.get(k, 0.0)) for k in ("haze", "low_light")}
        add("sim", preset, res.image, t)
    img = _variant(photo, rng, retone)
    for c, cat in enumerate(CATEGORIES[1:]):
        out, _ = calibration.scene(img, cat, np.random.default_rng([seed, index, c, 11]))
        add("own", cat, out, {})
    for k, key in enumerate(SEVERITY_KEYS):
        for rep in range(2):
            srng = np.random.default_rng([seed, index, k, rep, 11])
            img = _variant(photo, srng, retone)
            res = apply_pipeline(img, [sim_step(key, srng)], seed=int(srng.integers(2**31)))
            sev = min(1.0, float(res.severity.get(key, 0.0)))
            t = dict(zero)
            t[key] = sev
            if key == "low_light":  # the sensor noise it adds is labelled too
                t["noise"] = min(1.0, float(res.severity.get("noise", 0.0)))
            add("sim_step", _step_category(key, sev), res.image, t)
        out, s = _OWN_STEP[key](img, srng)
        phys = own_step_physical(key, s)
        if phys >= 0:
            t = dict(zero)
            t[key] = min(1.0, phys)
            add("own_step", _step_category(key, t[key]), out, t)
        else:  # haze and low light: the renderers' scales are not physical; category only
            add("own_step", _STEP_CATEGORY[key] if s >= 0.3 else None, out, {})
    return rows


# ------------------------------------------------------------------------------------------ fitting


def feature_names() -> list[str]:
    """The model inputs this code computes, whatever a cache's rows hold."""
    # A textured probe: on a flat one the blur profile finds no edges and reports no widths.
    probe = np.random.default_rng(0).random((128, 128, 3), dtype=np.float32)
    return sorted(raw_features(compute_measures(probe)))


def fit_transform(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per feature: log for non-negative heavy-tailed ones (densities, energies, sigmas), then z-score."""
    feats = [raw_features(r["m"]) for r in rows]
    # The names this code computes, not the first row's keys: caches rendered by other code can hold a
    # measure tried and dropped since, which newer caches lack. Zero-filled like an absent optional
    # measure (no edges, no blur width), it would tell the perceptron which cache a row came from and
    # be zero at every inference.
    names = feature_names()
    x = np.array([[f.get(n, 0.0) for n in names] for f in feats], dtype=np.float64)
    log, offset, mean, std = [], [], [], []
    for j in range(x.shape[1]):
        col = x[:, j]
        q50, q99 = np.quantile(col, [0.5, 0.99])
        use_log = bool(col.min() >= 0 and q99 > 8 * q50 + 1e-9)
        pos = col[col > 0]
        off = float(max(np.quantile(pos, 0.05) if pos.size else 1e-6, 1e-6)) if use_log else 0.0
        t = np.log(np.maximum(col, 0) + off) if use_log else col
        log.append(use_log)
        offset.append(off)
        mean.append(float(t.mean()))
        std.append(float(max(t.std(), 1e-6)))
    return {"names": names, "log": log, "offset": offset, "mean": mean, "std": std}


def _layers(coefs: list[np.ndarray], intercepts: list[np.ndarray]) -> list[dict[str, Any]]:
    def r(a: np.ndarray) -> Any:
        return np.round(a.astype(np.float64), 6).tolist()

    return [{"W": r(w), "b": r(b)} for w, b in zip(coefs, intercepts, strict=True)]


def _matrix(model: AnalyzerModel, rows: list[dict[str, Any]]) -> np.ndarray:
    return np.stack([model.features(r["m"]) for r in rows])


# Chosen by leave-photos-out CV on the training photos: a linear model reached 0.69 top-1, this
# perceptron 0.73 (8 tune photos, 4 folds). The L2 penalty by the same CV on all 13 training photos
# (5 folds, with the evidence gates): alpha 3 -> clean 0.80 / degraded 0.75, 30 -> 0.83 / 0.78,
# 100 -> 0.83 / 0.79: strong smoothing generalises better to new scenes.
CLASSIFIER_HIDDEN = (32,)
CLASSIFIER_ALPHA = 100.0
REGRESSOR_HIDDEN = (16,)
REGRESSOR_ALPHA = 1.0
# The clean class is the least diverse (eight scenes), so a new clean scene falls out of it more often
# than a degraded photo falls into it: a logit offset for `clean`, chosen on out-of-photo predictions
# together with the evidence gates (`fit_gates`).
# Capped: larger offsets (e^2 ~ 7x prior odds) overrode plain evidence on tune photos, such as a
# downscaled q 23 JPEG or a fully toned print read as clean.
MAX_CLEAN_OFFSET = 2.0
SINGLE_MEASURE = {"noise": "noise_sigma"}
# Perceptrons per classifier and regressor (seeds 0..MEMBERS-1, averaged). One by default, for a quick
# refit; the shipped model was fitted with `--members 5` (docs/analyzer-accuracy.md has the command):
# on the fourteenth session's 31-photo refit two single seeds read an unseen set's clean rate 0.923 and
# 0.969, five averaged 0.938 (fits later found to carry three stale inputs, `fit_transform`), at five
# times the fit time.
MEMBERS = 1
MAX_ITER = 1500  # L-BFGS iterations of every perceptron fit


def fit_classifier(x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    """One-hidden-layer perceptron, classes balanced (clean and social_media have more samples)."""
    from sklearn.neural_network import MLPClassifier

    counts = {c: int((y == c).sum()) for c in set(y)}
    w = np.array([len(y) / (len(counts) * counts[c]) for c in y])
    clf = MLPClassifier(
        hidden_layer_sizes=CLASSIFIER_HIDDEN,
        activation="tanh",
        alpha=CLASSIFIER_ALPHA,
        solver="lbfgs",
        max_iter=MAX_ITER,
        random_state=seed,
    )
    return clf.fit(x, y, sample_weight=w)


def _logits(clf: Any, x: np.ndarray) -> np.ndarray:
    """Log-probabilities in CATEGORIES order (softmax logits up to a constant)."""
    order = [list(clf.classes_).index(c) for c in CATEGORIES]
    return np.log(clf.predict_proba(x)[:, order] + 1e-12)


# Gates start at 0.05: a category needs a trace of its own degradation above measurement noise (on
# clean training photos the snow, haze and low-light evidence stays under 0.01 at the 95th
# percentile). With a 0.02 step the fit chose a snow gate of 0.02, and a clean garden photo came out
# `snow` at snow severity 0.023; the floor cost 0.0001 of the CV score.
GATE_GRID = (0.05, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)


def gated_predictions(logits: np.ndarray, ev: np.ndarray, offset: float, gates: np.ndarray) -> np.ndarray:
    """Predicted category indices: the most probable category (clean logit raised by `offset`) among
    those whose evidence `ev[:, j - 1]` reaches `gates[j - 1]`; clean always qualifies."""
    z = logits.copy()
    z[:, 0] += offset
    z[:, 1:] = np.where(ev >= gates[None, :], z[:, 1:], -np.inf)
    return z.argmax(1)


def _gate_score(pred: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """The worse of (clean rate / 0.9) and (degraded accuracy / 0.85): the two goals, equally."""
    yi = np.array([CATEGORIES.index(c) for c in y])
    clean = yi == 0
    a = float(np.mean(pred[clean] == 0))
    b = float(np.mean(pred[~clean] == yi[~clean]))
    return min(a / 0.9, b / 0.85), a, b


# Coordinate ascent is started from each of these (all gates equal): the score has local optima, and
# a start from the most open gates stopped in a worse one (0.928 vs 0.944 on the 2026-11-30 material).
GATE_STARTS = (0.05, 0.2, 0.4)
# A refit keeps the decision it replaces unless a new one scores at least this much better: the rain
# and snow gates are near-ties that moved whenever any evidence changed (adding the lens fall-off
# companion moved both for a CV gain of 0.0014, and cost the independent renderers a rain photo), a
# gain of the order of what refitting the same rows twice changes (docs/analyzer-accuracy.md).
GATE_MARGIN = 0.002


def _ascend(
    logits: np.ndarray, y: np.ndarray, ev: np.ndarray, off: float, gates: np.ndarray, margin: float
) -> tuple[tuple, np.ndarray]:
    """Coordinate ascent of `_gate_score` from `gates`, taking a step only if it gains over `margin`."""
    cur = _gate_score(gated_predictions(logits, ev, off, gates), y)
    for _ in range(3):
        for j in range(ev.shape[1]):
            for t in GATE_GRID:
                trial = gates.copy()
                trial[j] = t
                sc = _gate_score(gated_predictions(logits, ev, off, trial), y)
                if sc[0] > cur[0] + margin:
                    cur, gates = sc, trial
    return cur, gates


def fit_gates(
    logits: np.ndarray,
    y: np.ndarray,
    ev: np.ndarray,
    prior: tuple[float, dict[str, float]] | None = None,
) -> tuple[float, dict[str, float], tuple]:
    """Clean logit offset and per-category evidence gates, by coordinate ascent of `_gate_score` on
    out-of-photo predictions, from several starts (GATE_STARTS). Offsets stay at or under
    MAX_CLEAN_OFFSET (see there). With `prior` (the offset and gates of the model being replaced), the
    ascent also starts there, stepping only for gains over GATE_MARGIN, and the free optimum replaces
    that result only if it scores GATE_MARGIN better."""
    best: tuple[float, float, np.ndarray, tuple] = (-1.0, 0.0, np.zeros(ev.shape[1]), ())
    for off in np.arange(0.0, MAX_CLEAN_OFFSET + 1e-9, 0.5):
        for start in GATE_STARTS:
            cur, gates = _ascend(logits, y, ev, float(off), np.full(ev.shape[1], start), 1e-4)
            if cur[0] > best[0] + 1e-4:
                best = (cur[0], float(off), gates, cur)
    if prior is not None:
        off = prior[0]
        start_gates = np.array([prior[1].get(c, GATE_GRID[0]) for c in CATEGORIES[1:]])
        cur, gates = _ascend(logits, y, ev, off, start_gates, GATE_MARGIN)
        if best[0] < cur[0] + GATE_MARGIN:
            best = (cur[0], off, gates, cur)
    _, off, gates, sc = best
    return round(off, 2), {c: float(g) for c, g in zip(CATEGORIES[1:], gates, strict=True)}, sc


def fit_regressor(x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    from sklearn.neural_network import MLPRegressor

    reg = MLPRegressor(
        hidden_layer_sizes=REGRESSOR_HIDDEN,
        activation="tanh",
        alpha=REGRESSOR_ALPHA,
        solver="lbfgs",
        max_iter=MAX_ITER,
        random_state=seed,
    )
    reg.fit(x, y)
    return reg


def _calibration(pred: np.ndarray, y: np.ndarray, knots: int = 32) -> tuple[list[float], list[float]]:
    """Monotone (isotonic) map from the regressor's output to the physical severity, as knots of a
    piecewise-linear curve: the regressor ranks, the curve puts the rank on the physical scale."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(pred, y)
    qs = np.unique(np.quantile(pred, np.linspace(0, 1, knots)))
    ys = iso.predict(qs)
    # Strictly increasing where possible, so that ranks survive the calibration (ties lose them).
    ys = np.maximum.accumulate(ys + np.linspace(0, 1e-3, len(ys)))
    return np.round(qs, 6).tolist(), np.round(np.clip(ys, 0, 1), 6).tolist()


def _fit_member(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    sev: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    folds: int,
    seed: int,
) -> dict[str, Any]:
    """One ensemble member, all perceptrons at `seed`: the classifier's out-of-photo probabilities and
    final layers (CATEGORIES order), and per severity key `sev` (features, targets, photos) the
    regressor's out-of-photo predictions and final layers."""
    from sklearn.model_selection import GroupKFold

    clf_oof = np.zeros((len(y), len(CATEGORIES)))
    for tr, te in GroupKFold(folds).split(x, y, groups):
        clf_oof[te] = np.exp(_logits(fit_classifier(x[tr], y[tr], seed), x[te]))
    clf = fit_classifier(x, y, seed)
    order = [list(clf.classes_).index(c) for c in CATEGORIES]
    out: dict[str, Any] = {
        "clf_oof": clf_oof,
        "clf": _layers(
            [*clf.coefs_[:-1], clf.coefs_[-1][:, order]], [*clf.intercepts_[:-1], clf.intercepts_[-1][order]]
        ),
        "sev": {},
    }
    for key, (xs, ys, gs) in sev.items():
        oof = np.zeros_like(ys)
        for tr, te in GroupKFold(folds).split(xs, ys, gs):
            oof[te] = fit_regressor(xs[tr], ys[tr], seed).predict(xs[te])
        reg = fit_regressor(xs, ys, seed)
        out["sev"][key] = (oof, _layers(reg.coefs_, reg.intercepts_))
    return out


def fit_all(
    rows: list[dict[str, Any]],
    seeds: tuple[int, ...] = (0,),
    prior: tuple[float, dict[str, float]] | None = None,
    jobs: int = 1,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """The whole model fitted on `rows`, an ensemble of one member per seed (`_fit_member`; `jobs`
    members at a time, `progress(done, total)` after each); `prior`: the clean offset and gates of the
    model it replaces (see `fit_gates`).
    The members' probabilities and severity outputs are averaged, and the calibrations, offset and
    gates are fitted once, on the averaged out-of-photo predictions."""
    params: dict[str, Any] = {
        "version": 1,
        "fitted_on": {
            "photos": sorted({_photo_label(r["photo"]) for r in rows}),
            "samples": len(rows),
            "seeds": sorted({r["seed"] for r in rows}),
            "member_seeds": list(seeds),
        },
        "transform": fit_transform(rows),
        "classifier": {"classes": list(CATEGORIES), "activation": "tanh", "members": []},
        "severity": {},
    }
    model = AnalyzerModel(params)
    lab = [r for r in rows if r["cat"] is not None]
    x = _matrix(model, lab)
    y = np.array([r["cat"] for r in lab])
    groups = np.array([r["photo"] for r in lab])
    n_photos = len(set(groups.tolist()))
    folds = min(5, n_photos // 2)
    if folds < 2:
        raise ValueError(f"rows from {n_photos} photos: the out-of-photo fit needs at least 4")
    sev: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for key in SEVERITY_KEYS:
        sub = [r for r in rows if key in r["t"]]
        photos, need = len({r["photo"] for r in sub}), 1 if key in SINGLE_MEASURE else folds
        if photos < need:
            # Only `_job` (the `base` and `extra` parts) renders degradations with severity targets.
            raise ValueError(
                f"{len(sub)} rows from {photos} photos carry a {key} severity target; its calibration needs "
                f"rows from {need}: render the `base` or `extra` part too (`--parts`), not `alt` alone"
            )
        ys = np.array([r["t"][key] for r in sub])
        if key in SINGLE_MEASURE:
            # On leave-photos-out CV the regressor ranked noise no better than the Immerkaer estimate
            # alone (Spearman 0.88 vs 0.87 simulator steps, 0.90 vs 0.94 independent renderers), and a
            # first benchmark run showed it worse on new scenes (it learns the tune photos' texture):
            # noise keeps its estimator, calibrated.
            raw = np.array([r["m"][SINGLE_MEASURE[key]] for r in sub])
            cx, cy = _calibration(raw, ys)
            params["severity"][key] = {"measure": SINGLE_MEASURE[key], "calib_x": cx, "calib_y": cy}
        else:
            sev[key] = (_matrix(model, sub), ys, np.array([r["photo"] for r in sub]))
    args = [(x, y, groups, sev, folds, s) for s in seeds]
    if jobs > 1 and len(seeds) > 1:
        with render_pool(min(jobs, len(seeds))) as pool:
            members = _collect([pool.submit(_fit_member, *a) for a in args], progress)
    else:
        members = []
        if progress:
            progress(0, len(args))
        for a in args:
            members.append(_fit_member(*a))
            if progress:
                progress(len(members), len(args))
    for key, (_, ys, _) in sev.items():
        # The calibration is fitted on out-of-photo predictions, as the model will see new photos.
        cx, cy = _calibration(np.mean([m["sev"][key][0] for m in members], axis=0), ys)
        params["severity"][key] = {
            "activation": "tanh",
            "members": [m["sev"][key][1] for m in members],
            "calib_x": cx,
            "calib_y": cy,
        }
    params["classifier"]["members"] = [m["clf"] for m in members]
    clf_oof = np.log(np.mean([m["clf_oof"] for m in members], axis=0) + 1e-12)
    _fit_decision(params, y, lab, clf_oof, prior)
    return params


def _fit_decision(
    params: dict[str, Any],
    y: np.ndarray,
    lab: list[dict[str, Any]],
    oof: np.ndarray,
    prior: tuple[float, dict[str, float]] | None = None,
) -> None:
    """The clean offset and evidence gates, chosen on out-of-photo log-probabilities `oof` and the
    fitted severities (so that the gates see what the analyzer will compute)."""
    from ggt.analyze.heuristic import severities
    from ggt.analyze.model import evidence, strong_evidence

    sev_model = AnalyzerModel(params)
    sevs = [severities(r["m"], sev_model) for r in lab]
    ev = np.array([[evidence(s, c) for c in CATEGORIES[1:]] for s in sevs])
    offset, gates, score = fit_gates(oof, y, ev, prior)
    params["classifier"]["clean_offset"] = offset
    params["classifier"]["gates"] = gates
    pred_i = gated_predictions(oof, ev, offset, np.array([gates[c] for c in CATEGORIES[1:]]))
    pred = np.array(CATEGORIES)[pred_i]
    for i, (r, s) in enumerate(zip(lab, sevs, strict=True)):  # as the analyzer decides (`_category`)
        strong = strong_evidence(s, r["m"]) if pred[i] == "clean" else None
        if strong is not None:
            pred[i] = strong
    score = (
        score[0],
        float(np.mean(pred[y == "clean"] == "clean")),
        float(np.mean(pred[y != "clean"] == y[y != "clean"])),
    )
    params["classifier"]["cv"] = {
        "accuracy": round(float(np.mean(pred == y)), 4),
        "clean_rate": round(score[1], 4),
        "degraded_accuracy": round(score[2], 4),
        "photos": sorted({_photo_label(r["photo"]) for r in lab}),
    }
    print(f"classifier (leave-photos-out CV, gated): {params['classifier']['cv']}", file=sys.stderr)


def _alt_job(args: tuple[str, int, int]) -> list[dict[str, Any]]:
    """Training samples of one photo and seed from the Pillow-first renderers (`altrender`), plus
    clean variants of the kinds they produce (Pillow JPEG/WebP at high quality, sharpening, resizes)."""
    from ggt.analyze import altrender

    cv2.setNumThreads(1)
    name, index, seed = args
    photo = _photo(name)
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng([seed, index, 23])
    retone = seed >= PLAIN_SEEDS
    for _ in range(2):
        img = _variant(photo, rng, retone)
        rows.append({"photo": name, "seed": seed, "src": "alt_clean", "cat": "clean", "t": {},
                     "m": _measure(altrender.clean_variant(img, rng))})  # fmt: skip
    for kind, fn in altrender.SCENES.items():
        img = _variant(photo, rng, retone)
        out, cat = fn(img, rng)
        rows.append({"photo": name, "seed": seed, "src": f"alt_{kind}", "cat": cat, "t": {},
                     "m": _measure(out)})  # fmt: skip
    return rows


PARTS = ("base", "extra", "alt")


def training_photos(user: tuple[str, ...] = ()) -> list[tuple[str, int]]:
    """Each training photo with the index its renders are seeded by: tune photos 0.., extra ones 100..,
    the user's (`--photos`, absolute paths, in sorted order) 1000.. (`fit_patchnet` renders the
    built-in ones by the same keys, so both fits see the same images)."""
    return (
        [(n, i) for i, n in enumerate(TUNE)]
        + [(n, 100 + i) for i, n in enumerate(EXTRA)]
        + [(n, 1000 + i) for i, n in enumerate(sorted(user))]
    )


def find_user_photos(paths: list[Path]) -> tuple[str, ...]:
    """The decodable photos under `paths` (files or folders), as absolute paths. A file that does not
    decode is reported on stderr and left out; none at all is an error."""
    from ggt.config import IMAGE_EXTENSIONS
    from ggt.imaging import ImageDecodeError, decode_image
    from ggt.ingest.discover import discover

    found = discover(paths, list(IMAGE_EXTENSIONS), category="clean")
    for f in found.failures:
        print(f"--photos: skipped {f.path}: {f.message}", file=sys.stderr)
    photos = []
    for src in found.sources:
        try:
            decode_image(src.path)
        except (ImageDecodeError, OSError) as exc:
            print(f"--photos: skipped {src.path}: {exc}", file=sys.stderr)
            continue
        photos.append(str(src.path.resolve()))
    if not photos:
        raise ValueError(f"--photos: no decodable photo under {', '.join(map(str, paths))}")
    return tuple(sorted(set(photos)))


def render_pool(jobs: int) -> ProcessPoolExecutor:
    # Not `fork`: a parent that already ran OpenMP/BLAS threads (scikit-learn, OpenCV; e.g. a test
    # session) can deadlock its forked children; a forkserver starts them from a clean process.
    ctx = multiprocessing.get_context("forkserver" if sys.platform.startswith("linux") else "spawn")
    return ProcessPoolExecutor(jobs, mp_context=ctx)


def _work(
    seeds: int, first: int, parts: tuple[str, ...], user: tuple[str, ...] = ()
) -> list[tuple[Any, tuple[str, int, int]]]:
    photos = training_photos(user)
    tune, extra = photos[: len(TUNE)], photos[len(TUNE) :]
    work: list[tuple[Any, tuple[str, int, int]]] = []
    for s in range(first, first + seeds):
        if "base" in parts:
            work += [(_job, (n, i, s)) for n, i in tune]
        if "extra" in parts:
            work += [(_job, (n, i, s)) for n, i in extra]
        if "alt" in parts:
            work += [(_alt_job, (n, i, s)) for n, i in tune + extra]
    return work


def generate(
    seeds: int,
    jobs: int,
    first: int = 0,
    parts: tuple[str, ...] = PARTS,
    partial: bool = False,
    user: tuple[str, ...] = (),
    progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """Render the training material: `base` = `_job` on the tune photos, `extra` = `_job` on the
    EXTRA photos and the `user` ones, `alt` = `_alt_job` on all. Every job is seeded on its own, so
    parts rendered separately (and cached) give the same rows as one run. With `partial`, rows carry
    only `_added_measures`. `progress(done, total)` after each photo and seed."""
    work = _work(seeds, first, parts, user)
    with render_pool(jobs) as pool:
        if partial:
            futures = [pool.submit(_partial_job, fn, a) for fn, a in work]
        else:
            futures = [pool.submit(fn, a) for fn, a in work]
        return [r for chunk in _collect(futures, progress) for r in chunk]


def unique_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with exact repeats dropped (the first kept), saying how many: caches rendered with
    `--photos` re-render the built-in `extra`/`alt` photos too, so a fit over several such caches would
    otherwise weigh those photos twice or more. Rendering is seeded, so a repeat is the whole row."""
    seen: set[str] = set()
    out = []
    for r in rows:
        key = json.dumps(r, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(r)
    if len(out) < len(rows):
        print(f"dropped {len(rows) - len(out)} rows repeated across the caches", file=sys.stderr)
    return out


def _collect(futures: list[Future], progress: ProgressFn | None) -> list[Any]:
    """The futures' results in submission order, reporting `progress(done, total)` as they finish."""
    if progress:
        progress(0, len(futures))
        for done, _ in enumerate(as_completed(futures), 1):
            progress(done, len(futures))
    return [f.result() for f in futures]


def add_measures(rows: list[dict[str, Any]], jobs: int) -> int:
    """Add `ADDED_MEASURES` to cached rows that lack them, in place, by re-rendering their images
    (seeded, so the same images; checked by the noise estimate) and measuring only those. The rows
    then equal a full render's. Returns the number of rows updated."""
    if not lacks_added_measures(rows):
        return 0
    seeds = sorted({r["seed"] for r in rows})
    user = tuple(sorted({r["photo"] for r in rows if os.path.isabs(r["photo"])}))
    parts = tuple(
        p
        for p, present in (
            ("base", any(r["photo"] in TUNE and r["src"] == "sim" for r in rows)),
            ("extra", any(r["photo"] not in TUNE and r["src"] == "sim" for r in rows)),
            ("alt", any(r["src"].startswith("alt") for r in rows)),
        )
        if present
    )
    if seeds != list(range(seeds[0], seeds[-1] + 1)):
        raise ValueError("cache seeds are not consecutive; re-render it instead")
    merge_added(rows, generate(len(seeds), jobs, seeds[0], parts, partial=True, user=user))
    return len(rows)


def merge_added(rows: list[dict[str, Any]], fresh: list[dict[str, Any]]) -> None:
    """Add re-rendered rows' new measures to cached `rows`, refusing rows that are not the same renders
    (a different photo, seed or source, or another noise estimate: the render code changed)."""
    if len(fresh) != len(rows):
        raise ValueError(f"re-rendered {len(fresh)} rows for a cache of {len(rows)}; re-render it instead")
    for old, new in zip(rows, fresh, strict=True):
        same = (old["photo"], old["seed"], old["src"]) == (new["photo"], new["seed"], new["src"])
        if not same or abs(old["m"]["noise_sigma"] - new["m"]["noise_sigma"]) > 1e-9:
            raise ValueError(
                f"re-rendered row differs from the cache: {old['photo']} {old['seed']} {old['src']}"
            )
        old["m"].update(new["m"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=32)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, nargs="+", default=[Path("/tmp/ggt-analyzer-fit.json")])
    ap.add_argument("--out", type=Path, default=MODEL_PATH)
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument(
        "--photos",
        type=Path,
        nargs="+",
        default=[],
        help="your own clean photos (files or folders), rendered with the `extra` and `alt` parts",
    )
    ap.add_argument("--render-only", action="store_true", help="render into --cache, do not fit")
    ap.add_argument(
        "--add-measures",
        action="store_true",
        help="add measures newer than a cache (ADDED_MEASURES) to its rows by re-rendering and rewrite it",
    )
    ap.add_argument(
        "--prior",
        type=Path,
        default=MODEL_PATH,
        help="the model being replaced: its offset and gates stay unless the fit finds clearly better ones",
    )
    ap.add_argument(
        "--fresh-gates", action="store_true", help="choose the offset and gates afresh (no --prior)"
    )
    ap.add_argument(
        "--members",
        type=int,
        default=MEMBERS,
        help="perceptrons per classifier and regressor, at seeds 0.. (averaged: see MEMBERS)",
    )
    args = ap.parse_args(argv)
    console = Console(stderr=True)
    if args.photos and all(c.exists() for c in args.cache):
        ap.error("--photos renders new training material: give a --cache file that does not exist yet")
    if args.photos and not {"extra", "alt"} & set(args.parts):
        ap.error("--photos are rendered by the `extra` and `alt` parts: include one of them in --parts")
    # Rendering is the slow part (~15 min on two cores for 32 seeds): it is cached, and may be split
    # over several caches (`--first-seed 0 --seeds 16 --cache a.json`, then 16/16/b.json, then both).
    if all(c.exists() for c in args.cache):
        rows = []
        for c in args.cache:
            part = json.loads(c.read_text())
            if args.add_measures:
                t0 = time.time()
                if add_measures(part, args.jobs):
                    c.write_text(json.dumps(part))
                    print(f"added measures to {c} in {time.time() - t0:.0f} s", file=sys.stderr)
            rows += part
        rows = unique_rows(rows)
    else:
        t0 = time.time()
        try:
            user = find_user_photos(args.photos) if args.photos else ()
        except ValueError as exc:
            ap.error(str(exc))
        if user:
            print(f"--photos: {len(user)} photos join the training photos", file=sys.stderr)
        with progress_bar("rendering (photo x seed)", console) as update:
            rows = generate(
                args.seeds, args.jobs, args.first_seed, tuple(args.parts), user=user, progress=update
            )
        args.cache[0].write_text(json.dumps(rows))
        print(f"rendered {len(rows)} samples in {time.time() - t0:.0f} s", file=sys.stderr)
    if args.render_only:
        return 0
    prior = None
    if args.prior.exists() and not args.fresh_gates:
        old = json.loads(args.prior.read_text())["classifier"]
        prior = (float(old.get("clean_offset", 0.0)), dict(old.get("gates", {})))
    with progress_bar(f"fitting ({len(rows)} rows, members)", console) as update:
        try:
            model = fit_all(rows, tuple(range(args.members)), prior, args.jobs, update)
        except ValueError as exc:
            raise SystemExit(f"fit: {exc}") from None
    args.out.write_text(json.dumps(model, separators=(",", ":")) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
