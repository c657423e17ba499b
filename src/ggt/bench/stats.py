"""Statistics for the generator benchmark: bootstrap confidence intervals and Bradley-Terry scores.

Every resampling unit is the *image*: the outputs of all generators on one photo are correlated (a hard
photo is hard for everyone), so resampling images keeps that pairing intact, where resampling single
scores would understate the uncertainty of differences between generators.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# Virtual tie games spread over every pair: keeps a generator that won (or lost) every game at a finite
# strength instead of running off to infinity, the usual regularisation of the MM algorithm.
PRIOR_GAMES = 0.1


def percentile_ci(samples: np.ndarray, estimate: float, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap `samples`, widened to hold `estimate`.

    With few images and skewed values a percentile interval can miss its own point estimate; a table
    whose interval excludes the number beside it reads as a bug, so the interval is stretched to it.
    """
    s = samples[np.isfinite(samples)]
    if not math.isfinite(estimate) or s.size == 0:
        return (math.nan, math.nan)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(s, [alpha, 1.0 - alpha])
    return (float(min(lo, estimate)), float(max(hi, estimate)))


def bootstrap_mean(
    values: Sequence[float], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean, lo, hi) of the finite values, with a seeded percentile bootstrap CI over them."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(v.mean())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_boot, v.size))
    lo, hi = percentile_ci(v[idx].mean(axis=1), mean, level)
    return (mean, lo, hi)


def bradley_terry(wins: np.ndarray, iters: int = 5000, tol: float = 1e-8) -> np.ndarray:
    """Bradley-Terry log-strengths (mean 0) from a wins matrix by Hunter's (2004) MM algorithm.

    `wins[..., i, j]` counts the games i won against j (a tie counts half to each); leading axes are
    independent problems solved together (the bootstrap's resamples), which is what makes the bootstrap
    cheap. The result is natural-log strength: 1 / (1 + exp(s_j - s_i)) is the modelled chance that i
    beats j.
    """
    w = np.asarray(wins, dtype=np.float64)
    k = w.shape[-1]
    if k < 2:  # nobody to play against: every strength is the reference level
        return np.zeros(w.shape[:-1])
    w = w + PRIOR_GAMES / 2.0 * (1.0 - np.eye(k))
    games = w + np.swapaxes(w, -1, -2)
    total_wins = w.sum(axis=-1)
    log_p = np.zeros(w.shape[:-1])
    for _ in range(iters):
        p = np.exp(log_p)
        denom = (games / (p[..., :, None] + p[..., None, :])).sum(axis=-1)
        new = np.log(total_wins / denom)
        new -= new.mean(axis=-1, keepdims=True)  # fix the scale: strengths are defined up to a factor
        step = float(np.abs(new - log_p).max())
        log_p = new
        if step < tol:
            break
    return log_p


def wins_matrix(games: np.ndarray, k: int) -> np.ndarray:
    """Sum per-image games `(image, i, j, outcome for i in {0, 0.5, 1})` into a k x k wins matrix."""
    w = np.zeros((k, k))
    for _, i, j, o in games:
        w[int(i), int(j)] += o
        w[int(j), int(i)] += 1.0 - o
    return w


def bt_with_ci(
    games: list[tuple[int, int, int, float]], k: int, n_images: int, n_boot: int = 200, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT scores plus bootstrap CIs, resampling images (all games of a drawn image come along)."""
    arr = np.asarray(games, dtype=np.float64).reshape(-1, 4)
    est = bradley_terry(wins_matrix(arr, k))
    per_image = np.stack([wins_matrix(arr[arr[:, 0] == m], k) for m in range(n_images)] or [np.zeros((k, k))])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(per_image), size=(n_boot, max(n_images, 1)))
    boots = bradley_terry(per_image[picks].sum(axis=1))
    lo = np.empty(k)
    hi = np.empty(k)
    for i in range(k):
        lo[i], hi[i] = percentile_ci(boots[:, i], float(est[i]))
    return est, lo, hi
