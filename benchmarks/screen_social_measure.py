"""Screen a candidate measure for the analyzer's weakest call, social_media against clean, on
training photos only, before any refit or held-out look.

    python benchmarks/screen_social_measure.py --photos DIR [--measure MODULE:FUNCTION] [--draws 8]
        [--jobs 2] [--cache rows.json] [--record]

Why a screen: every refit of the decision model costs an hour or more of render and fit, and each
held-out look spends some of the held-out photos' innocence. Most candidates so far separated the two
classes well on their own and still added nothing, because the measures already carried what they
saw. This reads, in minutes, whether a candidate tells the model something new where it fails.

Material: the eight tune photos, china, flower, grace_hopper and the user's `--photos` (the 42
`ggt.pypi_photos --fitted` scenes for the figures in docs/analyzer-accuracy.md). Per photo `--draws`
crops (`fit_enlargement.social_pairs` at seeds `[7_000_000, photo, draw]`, never a seed of the fit's
or the benchmark's): each gives a clean row (the crop, or on odd draws `fit._clean_like` of it) and a
social_media render.

Reported: a leave-one-photo-out logistic regression on the shipped model's features, with and
without the candidate (AUC of the pooled out-of-photo scores); the candidate alone on the social
renders the shipped analyzer calls clean against the clean rows (its sign set on all rows); and
the frontier: what share of social renders the regression catches at the clean error rates of 1, 2
and 5 %, beside what the shipped analyzer does. The candidate's sign and threshold are never fitted
to the held-out photos; a rule for what counts as a gain is to be written before the screen is run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from _common import record
from ggt.analyze import fit
from ggt.analyze.fit_enlargement import PHOTOS, SCREEN_SEED, social_pairs
from ggt.analyze.heuristic import HeuristicAnalyzer
from ggt.analyze.measures import center_crop, compute_measures, to_gray
from ggt.analyze.model import load_model

CLEAN_ERRORS = (0.01, 0.02, 0.05)


def flat_noise_tilt(img: np.ndarray) -> float:
    """Spectral tilt of the residual in the flattest quarter of 16 px blocks (the twenty-first
    session's candidate; rejected, see docs/analyzer-accuracy.md).

    An enlargement band-limits whatever texture its source carried (sensor noise, codec error), so in
    flat areas the residual keeps power at mid frequencies but only the flat 8-bit rounding floor at
    the top; a photo at its capture size, or downscaled, keeps roughly white noise to Nyquist. Per block
    the least-squares plane is removed; the Hann-windowed power spectra of the kept blocks are averaged;
    the result is log10 of the mean power at r >= 0.35 over that at 0.1 <= r < 0.25 cycles/px.
    """
    g = np.round(to_gray(center_crop(img, 512)) * 255).astype(np.float64)
    b = 16
    h, w = g.shape[0] // b * b, g.shape[1] // b * b
    n = (h // b) * (w // b)
    if n < 16:
        return 0.0
    blocks = g[:h, :w].reshape(h // b, b, w // b, b).transpose(0, 2, 1, 3).reshape(n, b * b)
    yy, xx = np.mgrid[0:b, 0:b].astype(np.float64)
    plane = np.stack([np.ones(b * b), xx.ravel(), yy.ravel()], 1)
    coef, *_ = np.linalg.lstsq(plane, blocks.T, rcond=None)
    res = blocks - (plane @ coef).T
    k = max(16, n // 4)
    keep = res[np.argsort(res.var(axis=1), kind="stable")[:k]].reshape(k, b, b)
    power = (np.abs(np.fft.fft2(keep * np.outer(np.hanning(b), np.hanning(b)))) ** 2).mean(axis=0)
    f = np.fft.fftfreq(b)
    r = np.hypot(f[:, None], f[None, :])
    high, mid = power[r >= 0.35].mean(), power[(r >= 0.1) & (r < 0.25)].mean()
    return float(np.log10(high + 1e-3) - np.log10(mid + 1e-3))


def load_measure(spec: str) -> Callable[[np.ndarray], float]:
    """`module:function` (a float RGB image in, one number out); a bare name is a function here."""
    module, _, name = spec.rpartition(":")
    try:
        fn = getattr(importlib.import_module(module), name) if module else globals()[name]
    except (ImportError, AttributeError, KeyError) as exc:
        raise ValueError(f"--measure {spec!r}: not found ({exc!r}); give MODULE:FUNCTION") from None
    if not callable(fn):
        raise ValueError(f"--measure {spec!r} is not a function")
    return fn


def _job(args: tuple[str, int], draws: int, measure: str) -> list[dict[str, Any]]:
    import cv2

    cv2.setNumThreads(1)
    name, index = args
    candidate = load_measure(measure)
    analyzer = HeuristicAnalyzer()
    return [
        {
            "photo": fit._photo_label(name),
            "y": y,
            "m": compute_measures(im),
            "candidate": candidate(im),
            "pred": analyzer.analyze(im).category,
        }
        for y, im in social_pairs(fit._photo(name), index, draws, SCREEN_SEED)
    ]


def render(photos: list[str], draws: int, measure: str, jobs: int) -> list[dict[str, Any]]:
    work = [(name, i) for i, name in enumerate(photos)]
    with fit.render_pool(jobs) as ex:
        out: list[dict[str, Any]] = []
        for i, rows in enumerate(ex.map(partial(_job, draws=draws, measure=measure), work), 1):
            out += rows
            print(f"\r{i}/{len(work)} photos", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return out


def out_of_photo_scores(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    scores = np.zeros(len(y))
    for g in np.unique(groups):
        test = groups == g
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
        clf.fit(x[~test], y[~test])
        scores[test] = clf.decision_function(x[test])
    return scores


def caught_at(scores: np.ndarray, y: np.ndarray, clean_error: float) -> float:
    """Share of social rows scored above the threshold that misreads `clean_error` of clean rows."""
    return float(np.mean(scores[y == 1] > np.quantile(scores[y == 0], 1 - clean_error)))


def screen(rows: list[dict[str, Any]]) -> dict[str, Any]:
    model = load_model()
    x = np.array([model.features(r["m"]) for r in rows])
    c = np.array([r["candidate"] for r in rows], dtype=np.float64)
    y = np.array([r["y"] for r in rows])
    groups = np.array([r["photo"] for r in rows])
    pred = np.array([r["pred"] for r in rows])
    base = out_of_photo_scores(x, y, groups)
    cand = out_of_photo_scores(np.column_stack([x, c]), y, groups)
    sign = 1.0 if c[y == 1].mean() > c[y == 0].mean() else -1.0
    missed = (y == 1) & (pred == "clean")
    subset = missed | (y == 0)
    return {
        "rows": len(y),
        "photos": len(np.unique(groups)),
        "auc_measures": float(roc_auc_score(y, base)),
        "auc_with_candidate": float(roc_auc_score(y, cand)),
        "auc_candidate_alone": float(roc_auc_score(y, sign * c)),
        "auc_candidate_on_misses": float(roc_auc_score(y[subset], sign * c[subset])),
        "sign": sign,
        "missed": int(missed.sum()),
        "social": int((y == 1).sum()),
        "analyzer_clean_error": float(np.mean(pred[y == 0] != "clean")),
        "analyzer_caught": float(np.mean(pred[y == 1] != "clean")),
        "frontier": {e: (caught_at(base, y, e), caught_at(cand, y, e)) for e in CLEAN_ERRORS},
    }


def table(name: str, s: dict[str, Any]) -> str:
    lines = [
        f"Candidate `{name}`: {s['rows']} rows of {s['photos']} training photos; the shipped analyzer "
        f"calls {s['missed']} of {s['social']} social_media renders clean and "
        f"{s['analyzer_clean_error']:.3f} of the clean rows degraded.",
        "",
        "| leave-photos-out logistic regression | measures | measures + candidate |",
        "|---|---|---|",
        f"| AUC, social_media vs clean | {s['auc_measures']:.4f} | {s['auc_with_candidate']:.4f} |",
    ]
    for e, (a, b) in s["frontier"].items():
        lines.append(f"| social_media caught at clean error {e:.2f} | {a:.3f} | {b:.3f} |")
    lines += [
        "",
        f"Candidate alone (sign {s['sign']:+.0f}): AUC {s['auc_candidate_alone']:.4f} on all rows, "
        f"{s['auc_candidate_on_misses']:.4f} on the analyzer's misses against the clean rows. "
        f"The shipped analyzer catches {s['analyzer_caught']:.3f} of the social_media renders.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, help="more clean training photos (the --fitted PyPI scenes)")
    ap.add_argument("--measure", default="flat_noise_tilt", help="MODULE:FUNCTION, image -> float")
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cache", type=Path, help="rows rendered by an earlier run with the same arguments")
    ap.add_argument("--record", action="store_true", help="write the table into docs/benchmarks.md")
    a = ap.parse_args(argv)
    if a.cache and a.cache.is_file():
        rows = json.loads(a.cache.read_text())
    else:
        try:
            load_measure(a.measure)
        except ValueError as exc:
            ap.error(str(exc))
        photos = list(PHOTOS)
        if a.photos:
            try:
                photos += fit.find_user_photos([a.photos])
            except ValueError as exc:
                ap.error(str(exc))
        rows = render(photos, a.draws, a.measure, a.jobs)
        if a.cache:
            a.cache.write_text(json.dumps(rows))
    text = table(a.measure, screen(rows))
    print(text)
    if a.record:
        record(f"Screening a candidate measure: social_media against clean ({a.measure})", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
