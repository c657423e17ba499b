"""Accuracy and speed of the heuristic analyzer (measures + fitted decision model).

    python benchmarks/bench_analyze.py [--seeds 3] [--jobs 2] [--out docs/analyzer-accuracy.md]

Material: the 16 scikit-image photos (grey ones stacked to RGB), degraded two ways:
- `sim`: the simulator's category presets (`ggt.degrade.apply_preset`), plus `realesrgan` (no scene
  category: used for the severity correlations only);
- `own`: `ggt.analyze.calibration.scene`, degradation code written independently of the simulator
  (other kernels, encoders, depth maps, streak and flake renderers, parameter ranges).
Clean material: each photo as shipped, plus random crops and area-downscales of it.

Split. The analyzer's decision model (`ggt.analyze.model`, `heuristic_model.json`) is fitted by
`python -m ggt.analyze.fit` on the TUNE photos only, with training seeds 0-31 (sim seeds
`seed * 1000 + photo index`, so below 32000). This benchmark measures on seeds from 1000 on (sim seeds
from 1 000 000), and reports the HELD-OUT photos (never rendered for fitting) separately from all
photos; numbers over "all photos" include the tune photos and are optimistic.

Numbers reported: top-1 category accuracy with a confusion matrix, the rate at which clean photos are
called clean, Spearman's rank correlation between applied and measured severity per degradation,
and the time to analyse a 1024x1024 photo on one core.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
import numpy as np
from scipy.stats import spearmanr

from _common import machine
from ggt.analyze import calibration
from ggt.analyze.heuristic import HeuristicAnalyzer, category_scores, severities
from ggt.analyze.measures import compute_measures
from ggt.photos import GENUINELY_DEGRADED, PHOTO_NAMES, load_photo

TUNE = ("astronaut", "camera", "chelsea", "coins", "brick", "grass", "page", "rocket")
HELD_OUT = tuple(p for p in PHOTO_NAMES if p not in TUNE)
CATEGORIES = ("clean", "social_media", "old_photo", "rain", "snow", "haze", "low_light")
SIM_PRESETS = ("social_media", "old_photo", "rain", "snow", "haze", "low_light", "realesrgan")
SPEARMAN_KEYS = ("noise", "blur", "jpeg", "haze", "low_light")
SEED0 = 1000  # measure seeds start here; tuning used 0-2
SWEEP_REPEATS = 2  # single-degradation samples per photo, seed and degradation
# Held-out photos that are not pristine as shipped, with the measured reason. The clean rate is reported
# with and without them; they stay in every other number.
NOT_PRISTINE = {
    "moon": "a heavily compressed JPEG: 8x8 blockiness 2.35 (every other photo 1.0-1.3), with lifted "
    "blacks (1st percentile 0.23, dynamic range 0.33)",
    "text": "a low-contrast, small (172x448) grey capture: dynamic range 0.41 with blacks at 0.20, "
    "which is what fading or haze also produce",
}


NOTES = """### How to read these numbers

- **Split.** The decision model is fitted (`python -m ggt.analyze.fit`, seeded) on the eight tune
  photos only, seeds 0-31 (16-31 also turned and re-toned), at random crops and scales: clean
  variants (as shipped, q 90-97 JPEG, mild bilateral denoise, downscale), the six simulator presets,
  single simulator primitives with random parameters, and the independent renderers' scenes and
  single steps. The held-out photos and seeds 1000+ are never rendered by the fit. Before the model,
  hand thresholds had been set looking at the tune photos, and two generic measure flaws
  (muted-brown sepia, snow needing a lit background) were fixed after a look at held-out failures;
  those measures are model inputs, so the held-out photos are not perfectly unseen by the measures,
  but the fit has never seen them. Two choices were informed by a benchmark run: noise severity
  uses the noise estimator alone (a regressor ranked it worse on held-out photos, 0.66 vs 0.92), and
  the classifier moved from logistic regression to a perceptron (chosen by tune-photo CV, 0.69 vs
  0.73 top-1, after a held-out run of the logistic model: 0.70 top-1, clean rate 0.75).
- **Decision model.** Measures -> engineered features (log of heavy-tailed measures, z-scores clipped
  at 6) -> a 32-unit perceptron for the category, with a logit offset for `clean` chosen on
  out-of-photo predictions of the tune photos; per severity key (noise, blur, JPEG, haze, low light)
  a 16-unit perceptron regressor then an isotonic, piecewise-linear calibration onto the physical
  scale of `ggt.degrade.severity` (noise sigma / (50/255), blur sigma / 4 px, (95 - q) / 85,
  1 - mean transmission, stops / 5). Other severities keep their direct measure mappings.
  The clean logit offset is capped at 2.0 (`fit.MAX_CLEAN_OFFSET`): the fit's criterion (worse of
  clean rate / 0.9 and degraded accuracy / 0.85 on out-of-photo CV) ran to its first cap, 4.0, which
  made the analyzer call a q 23 JPEG and a fully toned print of a tune photo clean. The cap was set
  from those tune-photo cases before the held-out run at 4.0 was read; that run gave held-out top-1
  0.721 (sim) / 0.814 (own), clean rate 0.536.
- **Clean photos are the weak point.** Eight tune photos are eight scenes; a new scene that is
  darker, flatter, greyer or more textured than all of them is read as degraded. Re-toned copies of
  the tune photos widen the clean class but do not replace scene diversity. Held out, the clean
  errors are almost all `old_photo`: a cup of coffee (warm, brown, muted), the Hubble deep field
  (near-black with faint colour) and the moon look like toned or faded prints to these measures.
  The non-pristine photos (listed above) are kept in every number; only the second clean rate leaves
  them out. The goals (clean rate 0.9, top-1 0.85 held out) are not met; see the numbers above.
- **Whole-preset severities are not what a photo shows.** The simulator labels each degradation with
  the strength of the step that applied it, before later steps: `social_media` adds noise and blur and
  then downscales by 0.25-0.8 and recompresses, which removes most of both; its `jpeg` label is the
  worst of several rounds, most at a reduced size that is then upscaled (the 8x8 grid is gone). No
  no-reference measure can recover those labels, hence the low whole-preset correlations for noise,
  blur and JPEG. The single-step table is the measure of whether each estimator ranks its degradation.
- **own_step haze and low light rank poorly (0.45, 0.33 held out)** because those renderers'
  severities are not physical: haze's is a scattering coefficient over four different depth maps
  (the same beta gives very different mean transmission), low light's mixes a stops family and a
  gamma-curve family on one axis. The simulator's labels (1 - mean transmission, stops / 5) are the
  physical scale the analyzer reports on.
- **Before the fitted model** (hand thresholds on single measures, same benchmark, seeds 1000-1002):
  held-out top-1 accuracy 0.581 (sim) and 0.692 (own), clean rate 0.357; single-step Spearman on
  held-out photos, sim_step: noise 0.92, blur 0.70, JPEG 0.65, haze 0.81, low light 0.82; own_step:
  0.96, 0.56, 0.63, 0.47, 0.54; 223 ms per 1024x1024 photo.
- **Speed** is the whole `HeuristicAnalyzer.analyze` call, measures included. Noise and JPEG are
  measured on a full-resolution 512 px centre crop, blur at up to 768 px, structure (rain, snow,
  scratches, dust) at 512 px, global appearance (exposure, colour, haze) at 256 px.
"""


def _photo(name: str) -> np.ndarray:
    return load_photo(name).astype(np.float32) / 255.0


def _clean_variant(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    f = float(rng.uniform(0.6, 1.0))
    ch, cw = max(64, int(h * f)), max(64, int(w * f))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = img[y : y + ch, x : x + cw]
    if rng.uniform() < 0.5:
        s = float(rng.uniform(0.5, 0.9))
        out = cv2.resize(out, (max(32, round(cw * s)), max(32, round(ch * s))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out)


def _sim_step(key: str, rng: np.random.Generator) -> Any:
    """One simulator primitive for `key`, parameters drawn over the whole range a photo may show."""
    from ggt.degrade import create_primitive as P

    u = rng.uniform
    if key == "noise":
        if u() < 0.5:
            return P("gaussian_noise", sigma=round(u(1, 45) / 255, 5), gray=bool(u() < 0.4))
        return P(
            "poisson_gaussian_noise",
            a=round(u(1e-4, 6e-3), 6),
            b=round(u(0.0, 0.03), 4),
            gray=bool(u() < 0.4),
        )
    if key == "blur":
        if u() < 0.5:
            return P("gaussian_blur", sigma=round(u(0.3, 4.5), 3))
        return P("defocus_blur", radius=round(u(0.6, 9.0), 3))
    if key == "jpeg":
        return P("jpeg", qualities=[int(rng.integers(8, 96))])
    if key == "haze":
        grey = u(0.7, 0.98)
        return P(
            "haze",
            beta=round(u(0.2, 3.0), 3),
            airlight=(grey, grey, grey),
            w_vertical=round(u(0.2, 0.7), 3),
            w_luminance=round(u(0.0, 0.5), 3),
            w_random=round(u(0.1, 0.5), 3),
            depth_min=round(u(0.1, 0.4), 3),
        )
    if key == "low_light":
        return P(
            "low_light",
            stops=round(u(0.5, 5.0), 3),
            gamma=round(u(0.7, 1.0), 3),
            a=round(u(2e-5, 4e-4), 6),
            b=round(u(5e-4, 3e-3), 5),
        )
    raise ValueError(key)


_OWN_STEP = {
    "noise": calibration.add_noise,
    "blur": calibration.add_blur,
    "jpeg": calibration.jpeg,
    "haze": calibration.add_haze,
    "low_light": calibration.low_light,
}


def _job(args: tuple[str, int, int]) -> list[dict[str, Any]]:
    """All samples of one photo and one seed: clean, simulator presets, own scenes."""
    from ggt.degrade import apply_preset

    cv2.setNumThreads(1)
    name, index, seed = args
    img = _photo(name)
    rows: list[dict[str, Any]] = []

    def add(src: str, cat: str, out: np.ndarray, applied: dict[str, float]) -> None:
        m = compute_measures(out)
        sev = severities(m)
        rows.append(
            {
                "photo": name,
                "src": src,
                "cat": cat,
                "seed": seed,
                "applied": applied,
                "sev": sev,
                "scores": category_scores(sev, m),
                "m": m,
            }
        )

    rng = np.random.default_rng([seed, index, 7])
    # Photos with a real degradation are not clean material; they are reported on their own.
    clean_src = "real" if name in GENUINELY_DEGRADED else "clean"
    if seed == SEED0:
        add(clean_src, "clean", img, {})
    add(clean_src, "clean", _clean_variant(img, rng), {})
    for preset in SIM_PRESETS:
        res = apply_preset(img, preset, seed=seed * 1000 + index)
        add("sim", preset, res.image, dict(res.severity))
    for c, cat in enumerate(CATEGORIES[1:]):
        out, applied = calibration.scene(img, cat, np.random.default_rng([seed, index, c]))
        add("own", cat, out, applied)
    # Single-step sweeps: one degradation alone, so the applied severity is what the photo shows.
    from ggt.degrade import apply_pipeline

    for k, key in enumerate(SPEARMAN_KEYS):
        for rep in range(SWEEP_REPEATS):
            srng = np.random.default_rng([seed, index, k, rep])
            res = apply_pipeline(img, [_sim_step(key, srng)], seed=int(srng.integers(2**31)))
            add("sim_step", key, res.image, {key: res.severity.get(key, 0.0)})
            out, sev = _OWN_STEP[key](img, srng)
            add("own_step", key, out, {key: sev})
    return rows


def _confusion(rows: list[dict[str, Any]], analyzer: HeuristicAnalyzer) -> dict[str, dict[str, int]]:
    conf: dict[str, dict[str, int]] = {c: dict.fromkeys(CATEGORIES, 0) for c in (*CATEGORIES, "realesrgan")}
    for r in rows:
        if r["src"] in ("sim", "own", "clean"):
            conf[r["cat"]][analyzer._category(r["scores"])] += 1
    return conf


def _accuracy(conf: dict[str, dict[str, int]]) -> tuple[float, int]:
    n = sum(sum(conf[c].values()) for c in CATEGORIES)
    ok = sum(conf[c][c] for c in CATEGORIES)
    return (ok / n if n else float("nan")), n


def _spearman(rows: list[dict[str, Any]]) -> dict[str, tuple[float, int]]:
    pairs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        for k, v in r["applied"].items():
            key = "noise" if k == "film_grain" else k
            if key in r["sev"] and v > 0:
                pairs[key].append((v, r["sev"][key]))
    out = {}
    for k, v in pairs.items():
        a = np.asarray(v)
        if len(a) >= 8 and np.ptp(a[:, 1]) > 0:
            out[k] = (float(spearmanr(a[:, 0], a[:, 1])[0]), len(a))
    return out


def _speed(repeats: int = 7) -> float:
    cv2.setNumThreads(1)
    img = cv2.resize(_photo("astronaut"), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    an = HeuristicAnalyzer()
    an.analyze(img)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        an.analyze(img)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _table(conf: dict[str, dict[str, int]]) -> list[str]:
    head = "| true \\ predicted | " + " | ".join(CATEGORIES) + " | accuracy |"
    lines = [head, "|" + "---|" * (len(CATEGORIES) + 2)]
    for c, row in conf.items():
        n = sum(row.values())
        if not n:
            continue
        acc = f"{row[c] / n:.2f}" if c in CATEGORIES else "-"
        lines.append(f"| {c} | " + " | ".join(str(row[p]) for p in CATEGORIES) + f" | {acc} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="measure seeds per photo (from 1000)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=Path("docs/analyzer-accuracy.md"))
    args = ap.parse_args(argv)

    jobs = [(n, i, SEED0 + s) for i, n in enumerate(PHOTO_NAMES) for s in range(args.seeds)]
    t0 = time.time()
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = [r for chunk in pool.map(_job, jobs) for r in chunk]
    elapsed = time.time() - t0
    an = HeuristicAnalyzer()
    speed = _speed()

    md: list[str] = []
    say = md.append
    say("## Heuristic analyzer accuracy\n")
    say(
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {machine()}; "
        f"`python benchmarks/bench_analyze.py --seeds {args.seeds}` ({len(rows)} images, {elapsed:.0f} s).\n"
    )
    say(f"Tune photos (the decision model is fitted on these only, seeds 0-31): {', '.join(TUNE)}.  ")
    say(f"Held-out photos (never rendered for fitting; see the notes on the split): {', '.join(HELD_OUT)}.  ")
    say(
        f"Measure seeds: {SEED0}-{SEED0 + args.seeds - 1}; simulator seed `seed * 1000 + photo index`. "
        "`sim` = `ggt.degrade` presets; `own` = `ggt.analyze.calibration` scenes (independent code); "
        "clean = each photo as shipped plus one random crop/downscale per seed, except `clock`, which is "
        "genuinely motion-blurred and reported on its own.\n"
    )
    summary: list[str] = []
    for label, photos in (("held-out photos", HELD_OUT), ("all photos", PHOTO_NAMES)):
        sub = [r for r in rows if r["photo"] in photos]
        for src in ("sim", "own"):
            part = [r for r in sub if r["src"] in (src, "clean")]
            conf = _confusion(part, an)
            acc, n = _accuracy(conf)
            clean = conf["clean"]
            clean_rate = clean["clean"] / max(1, sum(clean.values()))
            say(
                f"### {label}, {src} degradations: top-1 accuracy {acc:.3f} (n={n}), clean rate {clean_rate:.3f}\n"
            )
            if src == "sim":
                pristine = [r for r in sub if r["src"] == "clean" and r["photo"] not in NOT_PRISTINE]
                rate_p = sum(an._category(r["scores"]) == "clean" for r in pristine) / max(1, len(pristine))
                say(
                    f"Clean rate excluding the non-pristine photos ({', '.join(NOT_PRISTINE)}; see the notes): "
                    f"{rate_p:.3f} (n={len(pristine)}).\n"
                )
                summary.append(
                    f"{label:16s} clean rate excluding non-pristine {rate_p:.3f} (n={len(pristine)})"
                )
            md.extend(_table(conf))
            say("")
            rho = _spearman([r for r in part if r["src"] == src])
            say(
                "Spearman (applied vs measured severity, whole presets/scenes): "
                + ", ".join(f"{k} {rho[k][0]:.2f} (n={rho[k][1]})" for k in sorted(rho))
                + "\n"
            )
            summary.append(
                f"{label:16s} {src:4s} acc={acc:.3f} clean={clean_rate:.3f} "
                + " ".join(f"{k}={rho[k][0]:.2f}" for k in SPEARMAN_KEYS if k in rho)
            )
    say("### Severity correlation, one degradation at a time\n")
    say(
        "Each photo degraded by a single step with parameters drawn over the full range: `sim_step` uses "
        "the simulator's primitives (`gaussian_noise`/`poisson_gaussian_noise`, `gaussian_blur`/`defocus_blur`, "
        "`jpeg`, `haze`, `low_light`) and its severity labels; `own_step` the independent renderers of "
        "`ggt.analyze.calibration` and their severities. Spearman's rho between applied and measured severity:\n"
    )
    say("| photos | source | " + " | ".join(SPEARMAN_KEYS) + " |")
    say("|---|---|" + "---|" * len(SPEARMAN_KEYS))
    for label, photos in (("held-out", HELD_OUT), ("all", PHOTO_NAMES)):
        for src in ("sim_step", "own_step"):
            rho = _spearman([r for r in rows if r["src"] == src and r["photo"] in photos])
            say(
                f"| {label} | {src} | "
                + " | ".join(f"{rho[k][0]:.2f} (n={rho[k][1]})" if k in rho else "-" for k in SPEARMAN_KEYS)
                + " |"
            )
            summary.append(
                f"{label:16s} {src:8s} " + " ".join(f"{k}={rho[k][0]:.2f}" for k in SPEARMAN_KEYS if k in rho)
            )
    say("")
    say(
        "Clean material per held-out photo (as shipped, plus one crop/downscale per seed): predicted categories.\n"
    )
    say("| photo | predicted |")
    say("|---|---|")
    for name in HELD_OUT:
        got = [
            an._category(r["scores"]) for r in rows if r["photo"] == name and r["src"] in ("clean", "real")
        ]
        counts = {c: got.count(c) for c in CATEGORIES if got.count(c)}
        say(f"| {name} | " + ", ".join(f"{c} {k}" for c, k in counts.items()) + " |")
    say("")
    say("Photos not counted as pristine in the second clean rate:\n")
    for name, why in NOT_PRISTINE.items():
        say(f"- `{name}`: {why}.")
    say("")
    clock = next(r for r in rows if r["photo"] == "clock" and r["src"] == "real" and r["seed"] == SEED0)
    say(
        f"Genuinely motion-blurred `clock` photo (as shipped): category `{an._category(clock['scores'])}`, "
        f"motion_blur severity {clock['sev']['motion_blur']:.2f}, blur anisotropy "
        f"{clock['m']['blur_anisotropy']:.1f}, direction {clock['m']['blur_direction_deg']:.0f} deg.\n"
    )
    say(
        f"Speed: {speed * 1000:.0f} ms per 1024x1024 photo (median of 7, one core, `cv2.setNumThreads(1)`).\n"
    )

    md.append(NOTES)
    print("\n".join(summary))
    print(f"speed {speed * 1000:.0f} ms / 1024x1024")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(md) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
